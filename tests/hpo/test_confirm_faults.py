"""The confirmation round under faults: Ctrl-C mid-confirmation, then `hpo resume`. Real `hpo`
subprocesses, a real journal and a real MLflow store (helpers of tests/hpo/test_faults.py)."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from hpo.records import ATTR, FINISHED
from tests.hpo.test_faults import empty_store, hpo_cmd, lines, mlflow_trials, stored, uri

__all__ = ["empty_store", "hpo_cmd", "uri"]  # fixtures used by name

mlflow = pytest.importorskip("mlflow")


def _gated_study(tmp_path, uri, hpo_cmd, log, gate, extra: str):
    """`hpo run` of a 2 x 5 study confirming its top 3 twice each; confirmation trials 1 and up
    wait for ``gate`` (``extra``: more Study options, e.g. "repeats=2, ")."""
    (tmp_path / "study.py").write_text(
        "import hpo\nfrom tests.hpo import objectives\n\n"
        "study = hpo.Study('s', hpo.SearchSpace(x=hpo.Uniform(0.0, 1.0)), "
        f"objectives.ConfirmGated({str(log)!r}, {str(gate)!r}, free=1), rounds=2, trials=5, "
        f"{extra}confirm=3, confirm_repeats=2, workers=2)\n"
    )
    return hpo_cmd(tmp_path, "run", "study.py", "--tracking-uri", uri)


def test_ctrl_c_mid_confirmation_resumes_it_exactly_once(tmp_path, uri, hpo_cmd):
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    cmd = _gated_study(tmp_path, uri, hpo_cmd, log, gate, "repeats=2, ")

    def first_done_two_in_flight() -> bool:  # confirmation trial 0 ended, 1 and 2 started
        starts = {tuple(x.split()[2:]) for x in lines(log, "start") if x.endswith(" 1")}
        return ("0", "1", "1") in {tuple(x.split()[2:]) for x in lines(log, "end")} and {
            ("1", "0", "1"),
            ("2", "0", "1"),
        } <= starts

    cmd.wait_until(first_done_two_in_flight, "two confirmation trials in flight")
    os.killpg(cmd.proc.pid, signal.SIGINT)
    rc, out, err = cmd.finish(timeout=30)
    assert rc == 130, out + err
    assert "+ confirmation 3 x 2 = 26 evaluations at most" in out

    storage, frame = stored(tmp_path)
    assert (frame[frame["round"] <= 2]["status"] == "finished").sum() == 10
    confirm = frame[frame["round"] == 3]
    assert (confirm["status"] == "finished").sum() == 1
    assert (confirm["status"] == "interrupted").sum() == 2

    gate.touch()
    rc, out2, err2 = hpo_cmd(tmp_path, "resume", "s").finish()
    assert rc == 0, out2 + err2
    assert "confirmation: the best 3 configurations evaluated again" in out2

    storage, frame = stored(tmp_path)
    done = frame[frame["status"].isin(FINISHED)]
    assert done.groupby("round").size().to_dict() == {1: 5, 2: 5, 3: 3}  # the exact budget
    confirmed = Counter(c["index"] for c in done[done["round"] == 3]["candidate"])
    assert confirmed == {0: 1, 1: 1, 2: 1}  # each candidate once
    ends = [tuple(line.split()[1:]) for line in lines(log, "end")]
    search_ends = [e for e in ends if e[3] == "0"]
    assert len(search_ends) == len(set(search_ends)) == 2 * 5 * 2  # no search trial reran
    # MLflow: every stored trial exactly once, with its status, under a round run named confirm
    runs = mlflow_trials(uri)
    keys = Counter(r.data.tags["hpo.key"] for r in runs)
    assert max(keys.values()) == 1
    assert {r.data.tags["hpo.key"]: r.data.tags["hpo.status"] for r in runs} == {
        f"s/{r}/{n}": s for r, n, s in frame[["round", "number", "status"]].values
    }
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("s")
    rounds = client.search_runs([exp.experiment_id], "tags.`hpo.kind` = 'round'")
    assert sorted(r.info.run_name for r in rounds) == ["confirm", "round-1", "round-2"]
    [study_run] = client.search_runs([exp.experiment_id], "tags.`hpo.kind` = 'study'")
    best = storage.get_study_user_attrs(storage.get_study_id_from_name("s"))[ATTR["best"]]
    assert best["candidate"]["index"] in (0, 1, 2) and best["round"] == 3
    assert study_run.data.metrics["best_score"] == best["value"]
    assert study_run.data.metrics["best_score_sd"] == pytest.approx(best["sd"])
    assert study_run.data.params["confirm"] == "3" and study_run.data.params["repeats"] == "2"


def test_sigkill_mid_confirmation_then_resume_runs_each_candidate_once(tmp_path, uri, hpo_cmd):
    """The driver and its workers killed outright (no handler runs) with two confirmation trials
    in flight: resume takes over the dead driver's lease, fails and replaces the orphans, and
    ends with the exact budget and one MLflow run per trial."""
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    cmd = _gated_study(tmp_path, uri, hpo_cmd, log, gate, "")

    def two_confirmations_in_flight() -> bool:
        starts = {tuple(x.split()[2:]) for x in lines(log, "start") if x.endswith(" 1")}
        return {("1", "0", "1"), ("2", "0", "1")} <= starts

    cmd.wait_until(two_confirmations_in_flight, "two confirmation trials in flight")
    os.killpg(cmd.proc.pid, signal.SIGKILL)
    cmd.finish(timeout=30)
    storage, frame = stored(tmp_path)
    assert (frame[frame["round"] <= 2]["status"] == "finished").sum() == 10
    assert (frame[frame["round"] == 3]["status"] == "running").sum() >= 2  # left by the kill

    gate.touch()
    rc, out, err = hpo_cmd(tmp_path, "resume", "s").finish()
    assert rc == 0, out + err
    storage, frame = stored(tmp_path)
    done = frame[frame["status"].isin(FINISHED)]
    assert done.groupby("round").size().to_dict() == {1: 5, 2: 5, 3: 3}  # the exact budget
    confirmed = Counter(c["index"] for c in done[done["round"] == 3]["candidate"])
    assert confirmed == {0: 1, 1: 1, 2: 1}  # each candidate confirmed once
    assert not (frame["status"] == "running").any()
    runs = mlflow_trials(uri)
    keys = Counter(r.data.tags["hpo.key"] for r in runs)
    assert max(keys.values()) == 1
    finished_keys = {f"s/{r}/{n}" for r, n in done[["round", "number"]].values}
    assert finished_keys <= set(keys)
