"""Two runs of studies.hard_spaces compared seed by seed: the paired tables of docs/results.md.

Each record file (``--json`` of studies.hard_spaces) holds one score per (task, strategy, seed).
For each task and strategy the two runs share, over the seeds both ran: median, mean, worst and
runs below 0.6 of the optimum, before and after, and how many seeds rose or fell. With one worker
(``--study workers=1``) a run repeats exactly, so every difference is the change's.

    python -m studies.paired runs/before.json runs/after.json

The last line sums each seed's changes over the tasks and gives their mean with a 95% bootstrap
interval. After any change the runs of a noisy task diverge and move by chance, so the up / down
counts are no test of a change; an interval that excludes 0 is.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

FLOOR = 0.6  # the issue's worst-seed floor (studies.hard_spaces' checks use it too)


def load(path: str | Path) -> dict[tuple[str, str, int], float]:
    """(task, strategy, seed): score, from a studies.hard_spaces record file."""
    try:
        runs = json.loads(Path(path).read_text())["runs"]
        return {(r["task"], r["strategy"], int(r["seed"])): float(r["score"]) for r in runs}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a studies.hard_spaces record file ({exc!r})") from None


def summary(scores: list[float]) -> tuple[float, float, float, int]:
    """Median, mean, worst and runs below the floor."""
    below = sum(s < FLOOR for s in scores)
    return statistics.median(scores), statistics.mean(scores), min(scores), below


def _shared(before: dict, after: dict, group) -> dict:
    """The (task, strategy, seed) keys both runs hold, grouped by ``group(key)``, in before's
    order."""
    groups: dict = {}
    for key in before:
        if key in after:
            groups.setdefault(group(key), []).append(key)
    return groups


def paired(before: dict, after: dict) -> list[dict]:
    """One row per (task, strategy) both runs hold, over the seeds both ran, in before's order."""
    rows = []
    for (task, strategy), keys in _shared(before, after, lambda k: k[:2]).items():
        x, y = [before[k] for k in keys], [after[k] for k in keys]
        rows.append({
            "task": task, "strategy": strategy, "seeds": len(keys),
            "before": summary(x), "after": summary(y),
            "up": sum(b > a + 1e-9 for a, b in zip(x, y, strict=True)),
            "down": sum(b < a - 1e-9 for a, b in zip(x, y, strict=True)),
        })  # fmt: skip
    return rows


def per_seed(before: dict, after: dict, resamples: int = 2000) -> dict:
    """Each seed's change summed over the (task, strategy) pairs both runs hold for it, and the
    mean of those sums with a 95% bootstrap interval (a fixed-seed generator: the same files give
    the same interval). After any change the runs of a noisy task diverge, so single rows move by
    chance; an interval that holds 0 is no evidence of a gain or a loss."""
    by_seed = _shared(before, after, lambda k: k[2])
    x = np.array([sum(after[k] - before[k] for k in by_seed[s]) for s in sorted(by_seed)])
    rng = np.random.default_rng(0)
    means = rng.choice(x, size=(resamples, len(x))).mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "seeds": len(x),
        "mean": float(x.mean()),
        "interval": (float(low), float(high)),
        "up": int(np.sum(x > 1e-9)),
        "down": int(np.sum(x < -1e-9)),
    }


def markdown(rows: list[dict]) -> str:
    head = (
        "| task | strategy | seeds | before: median | mean | worst | below 0.6 "
        "| after: median | mean | worst | below 0.6 | up / down |\n" + "|---" * 12 + "|"
    )

    def cells(s):
        return f"{s[0]:.3f} | {s[1]:.3f} | {s[2]:.3f} | {s[3]}"

    lines = [
        f"| {r['task']} | {r['strategy']} | {r['seeds']} | {cells(r['before'])} "
        f"| {cells(r['after'])} | {r['up']} / {r['down']} |"
        for r in rows
    ]
    up, down = sum(r["up"] for r in rows), sum(r["down"] for r in rows)
    return "\n".join([head, *lines]) + f"\n\n{up} scores rose and {down} fell."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.paired")
    ap.add_argument("before")
    ap.add_argument("after")
    args = ap.parse_args(argv)
    try:
        before, after = load(args.before), load(args.after)
    except ValueError as exc:
        ap.error(str(exc))  # exit code 2
    rows = paired(before, after)
    if not rows:
        ap.error("before, after: no (task, strategy, seed) is in both record files")
    seeds = per_seed(before, after)
    low, high = seeds["interval"]
    print(markdown(rows))
    print(
        f"Per seed, the change summed over the tasks: mean {seeds['mean']:+.3f} (95% bootstrap "
        f"interval {low:+.3f} .. {high:+.3f}); {seeds['up']} of {seeds['seeds']} seeds rose, "
        f"{seeds['down']} fell."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
