"""studies.paired: two studies.hard_spaces record files compared seed by seed."""

from __future__ import annotations

import json

import pytest

from studies import paired


def _records(path, scores):
    runs = [
        {"task": t, "strategy": s, "seed": seed, "score": v, "believed": v}
        for (t, s, seed), v in scores.items()
    ]
    path.write_text(json.dumps({"meta": {}, "runs": runs}))
    return path


def test_rows_are_paired_by_seed_over_the_seeds_both_ran(tmp_path, capsys):
    before = _records(
        tmp_path / "a.json",
        {("far", "narrowing", 0): 0.9, ("far", "narrowing", 1): 0.5, ("far", "narrowing", 2): 0.7,
         ("far", "narrowing", 3): 0.1, ("inside", "narrowing", 0): 1.0},
    )  # fmt: skip
    after = _records(
        tmp_path / "b.json",
        {("far", "narrowing", 0): 0.95, ("far", "narrowing", 1): 0.5, ("far", "narrowing", 2): 0.2,
         ("inside", "tpe-limits", 0): 1.0},
    )  # seed 3 and the inside rows are in one file only  # fmt: skip
    rows = paired.paired(paired.load(before), paired.load(after))
    assert len(rows) == 1
    (row,) = rows
    assert (row["task"], row["strategy"], row["seeds"]) == ("far", "narrowing", 3)
    assert row["before"] == (0.7, pytest.approx(0.7), 0.5, 1)  # 0.9, 0.5, 0.7: one below 0.6
    assert row["after"] == (0.5, pytest.approx(0.55), 0.2, 2)  # 0.95, 0.5, 0.2
    assert (row["up"], row["down"]) == (1, 1)  # seed 1 unchanged
    assert paired.main([str(before), str(after)]) == 0
    out = capsys.readouterr().out
    row = "| far | narrowing | 3 | 0.700 | 0.700 | 0.500 | 1 | 0.500 | 0.550 | 0.200 | 2 | 1 / 1 |"
    assert row in out
    assert "1 scores rose and 1 fell." in out


def test_a_bad_record_file_is_a_usage_error(tmp_path, capsys):
    good = _records(tmp_path / "a.json", {("far", "narrowing", 0): 0.9})
    (tmp_path / "bad.json").write_text('{"runs": [{"task": "far"}]}')
    missing, bad = str(tmp_path / "missing.json"), str(tmp_path / "bad.json")
    for args in ([missing, str(good)], [str(good), bad]):
        with pytest.raises(SystemExit) as exc:
            paired.main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "not a studies.hard_spaces record file" in err and len(err.strip().splitlines()) == 2
    other = _records(tmp_path / "c.json", {("far", "tpe-limits", 0): 0.9})
    with pytest.raises(SystemExit) as exc:
        paired.main([str(good), str(other)])
    assert exc.value.code == 2
    assert "no (task, strategy, seed) is in both record files" in capsys.readouterr().err


def test_per_seed_sums_each_seeds_changes_and_bootstraps_their_mean(tmp_path, capsys):
    before, after = {}, {}
    for seed in range(6):
        for task in ("far", "inside"):
            before[(task, "narrowing", seed)] = 0.5
            after[(task, "narrowing", seed)] = 0.5 + (0.1 if seed < 4 else -0.05)
    after[("far", "narrowing", 9)] = 1.0  # in one file only: left out
    got = paired.per_seed(before, after)
    assert got["seeds"] == 6 and (got["up"], got["down"]) == (4, 2)
    assert got["mean"] == pytest.approx((4 * 0.2 - 2 * 0.1) / 6)  # two tasks a seed
    low, high = got["interval"]
    assert -0.1 <= low < got["mean"] < high <= 0.2  # within the seeds' smallest and largest
    assert paired.per_seed(before, after) == got  # a fixed-seed bootstrap
    same = paired.per_seed(before, before)
    assert same["mean"] == 0 and same["interval"] == (0, 0) and same["up"] == same["down"] == 0
    a = _records(tmp_path / "a.json", before)
    b = _records(tmp_path / "b.json", after)
    assert paired.main([str(a), str(b)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("Per seed, the change summed over the tasks: mean +0.100 (95% bootstrap")
    assert line.endswith("4 of 6 seeds rose, 2 fell.")
