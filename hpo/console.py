"""What the CLI shows a person: the live progress line and the printed result of a study.

Only :mod:`hpo.cli` uses this module; nothing else in hpo prints.
"""

from __future__ import annotations

import time

from hpo.records import FINISHED, TrialStatus, explored_only

__all__ = ["ProgressDisplay", "print_result"]


class ProgressDisplay:
    """One progress line for the whole study: a live line on a terminal, plain lines otherwise."""

    def __init__(self, stream):
        self.stream, self.tty = stream, stream.isatty()
        self.last_line, self.last_print, self.live = "", 0.0, False

    def __call__(self, p) -> None:
        best = "-" if p.best is None else f"{p.best:.4f}"
        left = "" if p.left is None else f", ~{_clock(p.left)} left"
        where = "confirmation" if p.confirm else f"round {p.round}/{p.rounds}"
        line = (
            f"{where}: {p.done}/{p.total} trials done, {p.running} running,"
            f" {p.failed} failed, best {best}, {_clock(p.elapsed)}{left}"
        )
        if p.event in ("narrowed", "round_start") and p.done == 0:
            self._end_live()
            print(f"{where} starts", file=self.stream, flush=True)
            return
        if p.event == "final":
            self._end_live()
            print(
                "retraining the best configuration and scoring it on the test split",
                file=self.stream,
                flush=True,
            )
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last_line)))
            self.stream.flush()
            self.live = True
            if p.event == "round_end":
                self._end_live()
        elif line != self.last_line and (
            p.event == "round_end" or time.monotonic() - self.last_print > 5
        ):
            print(line, file=self.stream, flush=True)
            self.last_print = time.monotonic()
        self.last_line = line

    def _end_live(self):
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
            self.live = False

    def close(self):
        self._end_live()


def print_result(result) -> None:
    print(f"\nstudy {result.name}: {result.status}")
    frame = result.trials
    survey = bool(len(frame)) and explored_only(frame[frame["round"] == 1])
    for r in result.rounds:
        if r.confirm:
            print(f"confirmation: the best {len(r.candidates)} configurations evaluated again")
            continue
        note = " a survey: every trial drawn from the hard limits" if r.round == 1 else ""
        print(f"round {r.round}:{note if survey else ''}")
        for name, param in r.space.items():
            change = r.changes.get(name)
            why = "starting range"
            if change:
                detail = change.detail
                why = detail if detail.startswith(change.reason) else f"{change.reason}: {detail}"
            print(f"  {name:<14} {param.short():<32} {why}")
    done = frame["status"].isin(FINISHED).sum() if len(frame) else 0
    print(
        f"trials: {len(frame)} recorded, {done} finished"
        + _counts(frame, (*FINISHED[1:], TrialStatus.FAILED, TrialStatus.INTERRUPTED))
    )
    if result.best_params:
        params = ", ".join(f"{k}={_num(v)}" for k, v in result.best_params.items())
        print(f"best configuration: {params}")
        print(_score_line(result))
    if result.test_score is not None:
        n, sd = len(result.test_scores), result.test_sd
        how = f"mean of {n} retrains" if n > 1 else "retrained once"
        spread = f" ± {sd:.4f}" if sd is not None else ""
        print(f"test score of the best configuration ({how}): {result.test_score:.4f}{spread}")
    if result.optimism is not None:
        print(f"optimism (validation - test): {result.optimism:+.4f}")
    for note in result.fragile:
        print(f"fragile: {note}")
    if result.files:
        print(f"tables and figures in {result.out}/: {', '.join(sorted(result.files))}")
    print("inspect the trials: make ui   (MLflow, runs table under the study's experiment)")


def _score_line(result) -> str:
    """``validation score (val_acc, mean_last:5, 3 confirmation repeats): 0.8400 ± 0.0100``."""
    how = [result.metric, result.score] if result.score != "returned" else [result.metric]
    if len(result.best_repeats or ()) > 1:
        kind = "confirmation " if result.confirmed else ""
        how.append(f"mean of {len(result.best_repeats)} {kind}repeats")
    sd = f" ± {result.best_sd:.4f}" if result.best_sd is not None else ""
    return f"validation score ({', '.join(how)}): {result.best_value:.4f}{sd}"


def _counts(frame, statuses) -> str:
    if not len(frame):
        return ""
    parts = [
        f"{(frame['status'] == s).sum()} {s}" for s in statuses if (frame["status"] == s).any()
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _clock(seconds: float) -> str:
    """``m:ss``, minutes past 59 included (``75:00``)."""
    mins, secs = divmod(int(seconds), 60)
    return f"{mins}:{secs:02d}"


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
