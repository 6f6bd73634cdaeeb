"""Tables (pandas) and figures (matplotlib, files) of a study, read back from its storage."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.records import ATTR, PARAM_PREFIX, RoundRecord, param_columns, ranked
from hpo.storage import parent_attrs, read_rounds, round_names, trials_frame

__all__ = ["curves_of", "preload", "ranges_frame", "write_report"]


def ranges_frame(storage, name: str) -> pd.DataFrame:
    """One row per (round, parameter): the range searched and why it was chosen."""
    rows = []
    for r in read_rounds(parent_attrs(storage, name)):
        for pname, param in r.space.items():
            change = r.changes.get(pname)
            row = {
                "round": r.round,
                "param": pname,
                "range": str(param),
                "low": getattr(param, "low", None),
                "high": getattr(param, "high", None),
                "reason": r.why(pname),
                "detail": change.detail if change else "",
            }
            rows.append(row)
    return pd.DataFrame(rows)


def curves_of(storage, name: str) -> dict[tuple[int, int], dict[str, list]]:
    """Per-epoch curves of every trial, keyed by (round, number)."""
    out = {}
    for k, rname in enumerate(round_names(storage, name), start=1):
        sid = storage.get_study_id_from_name(rname)
        for t in storage.get_all_trials(sid, deepcopy=False):
            curves = t.user_attrs.get(ATTR["curves"])
            if curves:
                out[(k, t.number)] = curves
    return out


def preload() -> threading.Thread:
    """Import matplotlib (file-only backend) in a thread while the rounds run: half a second
    less at the study's end, where the figures are drawn."""

    def load() -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401

    thread = threading.Thread(target=load, name="hpo-preload", daemon=True)
    thread.start()
    return thread


def write_report(storage, name: str, out: str | Path) -> dict[str, Path]:
    """Write trials.csv, ranges.csv, best.json and the figures to ``out/name``; return the paths."""
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    attrs = parent_attrs(storage, name) or {}
    config = attrs.get(ATTR["config"], {})
    trials = trials_frame(storage, name)
    ranges = ranges_frame(storage, name)
    files = {
        "trials": folder / "trials.csv",
        "ranges": folder / "ranges.csv",
        "best": folder / "best.json",
    }
    trials.to_csv(files["trials"], index=False)
    ranges.to_csv(files["ranges"], index=False)
    best = {
        "study": name,
        "best": attrs.get(ATTR["best"]),
        **_verdict(attrs),
        "status": attrs.get(ATTR["status"]),
        "score": config.get("score"),
        "repeats": config.get("repeats", 1),
        "fixed": config.get("fixed", {}),
    }
    files["best"].write_text(json.dumps(best, indent=2) + "\n")
    if trials.empty:
        return files
    import matplotlib

    matplotlib.use("Agg")
    direction = config.get("direction", "maximize")
    curves = curves_of(storage, name)
    rounds = read_rounds(attrs)
    if curves:
        files["curves"] = _curves_figure(trials, curves, direction, folder / "curves.png")
    files["scores"] = _scores_figure(trials, rounds, folder / "scores.png")
    files["ranges_fig"] = _ranges_figure(rounds, folder / "ranges.png")
    return files


def _verdict(attrs: dict[str, Any]) -> dict[str, Any]:
    """The reported validation score, its spread and the retrained test score side by side."""
    best, test = attrs.get(ATTR["best"]) or {}, attrs.get(ATTR["test_score"])
    value = best.get("value")
    finite = value is not None and test is not None and math.isfinite(test)
    return {
        "validation": value,
        "validation_sd": best.get("sd"),
        "test_score": test,
        "test_scores": attrs.get(ATTR["test_scores"]),  # one per retrain; test_score: their mean
        "optimism": value - test if finite else None,
        "fragile": attrs.get(ATTR["fragile"]),
    }


def _curves_figure(trials, curves, direction: str, path: Path) -> Path:
    """The textbook's grid: the best 20 trials, validation solid and training dashed."""
    import matplotlib.pyplot as plt

    best = ranked(trials, direction).head(20)
    fig, axes = plt.subplots(5, 4, figsize=(12, 13), sharex=True, sharey=True, squeeze=False)
    params = param_columns(trials)
    for ax, (_, row) in zip(axes.flat, best.iterrows(), strict=False):
        c = curves.get((int(row["round"]), int(row["number"])), {})
        for key, style in (("val_acc", "-"), ("train_acc", "--")):
            ys = c.get(key) or []
            ax.plot(range(1, len(ys) + 1), [math.nan if y is None else y for y in ys], style)
        label = ", ".join(f"{p[len(PARAM_PREFIX) :]}={_fmt(row[p])}" for p in params[:2])
        ax.set_title(
            f"r{int(row['round'])}#{int(row['number'])} {row['value']:.3f}\n{label}", fontsize=7
        )
    for ax in axes.flat[len(best) :]:
        ax.axis("off")
    fig.suptitle("Best trials: validation (solid) and training (dashed) accuracy per epoch")
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.04, top=0.92, hspace=0.45, wspace=0.1)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _scores_figure(trials, rounds: list[RoundRecord], path: Path) -> Path:
    """Score against each numeric parameter, coloured by round, with each round's range drawn;
    exploration trials (drawn from the hard limits) as crosses, local ones as triangles."""
    import matplotlib.pyplot as plt

    spaces = [r.space for r in rounds]
    names = [n for n, p in spaces[0].items() if hasattr(p, "low")] if spaces else []
    fig, axes = plt.subplots(
        1, max(len(names), 1), figsize=(5 * max(len(names), 1), 4), squeeze=False
    )
    ok = trials[trials["value"].notna()]
    cmap = plt.get_cmap("viridis", max(len(rounds), 2))
    for ax, pname in zip(axes[0], names, strict=False):
        for k, (space, r) in enumerate(zip(spaces, rounds, strict=True), start=1):
            sub = ok[ok["round"] == k]
            sd = sub.get("value_sd")
            color = "red" if r.confirm else cmap(k - 1)
            for kind, marker in (("round", "o"), ("explore", "x"), ("local", "^")):
                part = sub[_kind(sub) == kind]
                if part.empty:
                    continue
                label = None
                if kind == "round":
                    label = "confirm (mean ± sd)" if r.confirm else f"round {k}"
                ax.errorbar(
                    part[PARAM_PREFIX + pname],
                    part["value"],
                    yerr=None if sd is None else sd[part.index],
                    fmt="D" if r.confirm else marker,
                    ms=5 if r.confirm else 3.5,
                    color=color,
                    elinewidth=0.8,
                    label=label,
                )
            if not r.confirm:
                p = space[pname]
                ax.axvspan(p.low, p.high, color=color, alpha=0.08)
        if spaces[0][pname].log:
            ax.set_xscale("log")
        ax.set_xlabel(pname)
        ax.set_ylabel("score  (x: exploration, ^: local)")
        if ax.get_legend_handles_labels()[1]:  # none when no round trial scored (a survey)
            ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.95, wspace=0.25)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _kind(trials: pd.DataFrame) -> pd.Series:
    """round, explore or local for each trial (tables from before these columns: round)."""
    kind = pd.Series("round", index=trials.index)
    for column in ("local", "explore"):
        if column in trials.columns:
            kind[trials[column].fillna(False).astype(bool)] = column
    return kind


def _ranges_figure(rounds: list[RoundRecord], path: Path) -> Path:
    """Each numeric parameter's range per round, with the reason it was set."""
    import matplotlib.pyplot as plt

    spaces = [r.space for r in rounds]
    names = [n for n, p in spaces[0].items() if hasattr(p, "low")] if spaces else []
    fig, axes = plt.subplots(
        1, max(len(names), 1), figsize=(5 * max(len(names), 1), 3), squeeze=False
    )
    for ax, pname in zip(axes[0], names, strict=False):
        for k, (space, r) in enumerate(zip(spaces, rounds, strict=True), start=1):
            if r.confirm:  # fixed configurations, no range
                continue
            p = space[pname]
            ax.plot([p.low, p.high], [k, k], lw=6)
            reason = r.why(pname)
            ax.annotate(reason, (p.high, k), xytext=(4, -3), textcoords="offset points", fontsize=7)
        if spaces[0][pname].log:
            ax.set_xscale("log")
        ax.set_yticks(range(1, len(spaces) + 1))
        ax.set_ylabel("round")
        ax.set_xlabel(pname)
        ax.invert_yaxis()
    fig.subplots_adjust(left=0.08, right=0.95, bottom=0.2, top=0.95, wspace=0.25)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    return f"{v:.2g}" if isinstance(v, float) else str(v)
