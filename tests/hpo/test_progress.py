"""What the live progress line is fed (Driver.emit) and what it shows (ProgressDisplay)."""

from __future__ import annotations

import io

from hpo import LogUniform, SearchSpace, Study, Uniform
from hpo.console import ProgressDisplay
from hpo.driver import Progress
from hpo.records import TrialStatus


def later_is_better(params, ctx):
    """Every round beats the one before: the case where the stored best lags behind."""
    return ctx.round + params["y"]


def test_best_so_far_covers_the_whole_study_as_soon_as_a_round_ends(tmp_path):
    seen: list[Progress] = []
    space = SearchSpace(lr=LogUniform(1e-6, 1e-2), y=Uniform(0.0, 1.0))
    study = Study(
        "p", space, later_is_better, rounds=3, trials=6, workers=1, seed=0,
        out=tmp_path / "runs", tracking=False,
    )  # fmt: skip
    result = study.run(progress=seen.append)

    shown = [p.best for p in seen if p.best is not None]
    assert shown == sorted(shown)  # a maximize study's best never goes down
    ok = result.trials[result.trials["status"] == TrialStatus.FINISHED]
    ends = [p for p in seen if p.event == "round_end"]
    assert [p.round for p in ends] == [1, 2, 3]
    for p in ends:  # the round's own trials count before the stored best is updated
        assert p.best == ok[ok["round"] <= p.round]["value"].max()
    assert all(p.left is not None and p.left > 0 for p in ends[:-1])
    assert ends[-1].left == 0


def snapshot(**kw) -> Progress:
    base = dict(round=1, rounds=2, done=0, total=4, running=0, failed=0, best=None, elapsed=0.0)
    return Progress(**{**base, **kw})


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_line_shows_best_so_far_and_time_left():
    out = Tty()
    show = ProgressDisplay(out)
    for p in [
        snapshot(event="round_start"),
        snapshot(running=1, elapsed=0.4),  # no trial ended yet: no estimate
        snapshot(done=1, running=1, best=0.72, elapsed=2.0, left=21.0),
        snapshot(done=4, best=0.83, elapsed=85.0, left=80.0, event="round_end"),
    ]:
        show(p)
    show.close()
    lines = [line for line in out.getvalue().replace("\r", "\n").split("\n") if line]
    assert lines[0] == "round 1/2 starts"
    assert lines[1].rstrip() == (
        "round 1/2: 0/4 trials done, 1 running, 0 failed, best -, 0:00"
    )  # fmt: skip
    assert lines[2].endswith("best 0.7200, 0:02, ~0:21 left")
    assert lines[3].endswith("best 0.8300, 1:25, ~1:20 left")


def test_plain_lines_off_a_terminal_without_an_estimate_until_known():
    out = io.StringIO()
    show = ProgressDisplay(out)
    show(snapshot(done=4, best=0.5, elapsed=61.0, event="round_end"))
    show(snapshot(round=2, done=4, best=0.6, elapsed=130.0, left=0.0, event="round_end"))
    assert out.getvalue().splitlines() == [
        "round 1/2: 4/4 trials done, 0 running, 0 failed, best 0.5000, 1:01",
        "round 2/2: 4/4 trials done, 0 running, 0 failed, best 0.6000, 2:10, ~0:00 left",
    ]
