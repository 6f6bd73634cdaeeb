"""`make reproduce`: run the seed's 6-3, 6-4 and 6-5 studies, write figures and results.

Full Fashion-MNIST when its IDX files are found (``models.find``), else the bundled subset; the
choice is printed and written into docs/results.md. Every study runs through the hpo engine
(journal storage in runs/, mirrored to MLflow at sqlite:///mlflow.db), then its figures go to
docs/figures/ and its measured numbers replace the generated sections of docs/results.md
(between ``<!-- BEGIN generated:KEY -->`` and ``<!-- END generated:KEY -->``); the hand-written
text around them is kept.

    python -m studies.reproduce                  # all three
    python -m studies.reproduce --only six-three # one of them
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import optuna

from hpo import Study
from hpo.figures import shrink_png
from hpo.records import ATTR, ranked
from hpo.report import curves_of
from hpo.storage import open_storage
from studies import six_five, six_four, six_three
from studies.datasets import pick_dataset

KEYS = ("six-three", "six-four", "six-five")
CHANCE = 0.10


# ---------------------------------------------------------------- building and running
def free_name(study: Study) -> Study:
    """The study under its own name, or NAME-2, NAME-3, ... when that is taken in the storage."""
    base, i, s = study.name, 2, study
    while s.exists():
        s = study.with_options(name=f"{base}-{i}")
        i += 1
    return s


def progress(p) -> None:
    """One line per round (the confirmation round by that name); the final event repeats the
    last round's figures, so it prints nothing."""
    if p.event == "round_end":
        best = "-" if p.best is None else f"{p.best:.4f}"
        where = "confirmation" if p.confirm else f"round {p.round}/{p.rounds}"
        print(f"  {where}: {p.done} done, best {best}, {p.elapsed:.0f} s")


def run(study: Study):
    study = free_name(study)
    print(f"{study.name}: {study.rounds} round(s) x {study.trials} trials, sampler {study.sampler}")
    t0 = time.perf_counter()
    result = study.run(progress=progress)
    seconds = time.perf_counter() - t0
    curves = curves_of(open_storage(study.storage), study.name)
    print(f"  {study.name}: {result.status} in {seconds:.0f} s")
    return study, result, curves, seconds


# ---------------------------------------------------------------- measured numbers
def numbers_six_three(result, curves) -> dict:
    rows = []
    t = result.trials.sort_values(["params_init", "params_batchnorm"], ascending=[False, True])
    for _, r in t.iterrows():
        c = curves.get((int(r["round"]), int(r["number"])), {})
        acc = [a for a in c.get("train_acc", []) if a is not None]
        rows.append(
            {
                "std": float(r["params_init"]),
                "bn": bool(r["params_batchnorm"]),
                "status": r["status"],
                "final": acc[-1] if acc else None,
                "best": max(acc) if acc else None,
                "epochs": len(acc),
                "seed": int(r["seed"]),
            }
        )
    return {"rows": rows}


def md_six_three(n: dict, head: str) -> str:
    by = {(r["std"], r["bn"]): r for r in n["rows"]}
    stds = sorted({r["std"] for r in n["rows"]}, reverse=True)

    def cell(r):
        if r is None:
            return "-"
        if r["status"] == "diverged":
            return f"diverged (epoch {r['epochs'] + 1})"
        return f"{r['final']:.3f} ({r['best']:.3f})"

    lines = [head, "", "Training accuracy after the last epoch (best epoch in brackets):", ""]
    lines += ["| weight std | no BN | BN |", "|---|---|---|"]
    for s in stds:
        lines.append(f"| {s:.3g} | {cell(by.get((s, False)))} | {cell(by.get((s, True)))} |")

    def learned(bn):  # clearly above chance after 20 epochs
        return [
            r for r in n["rows"] if r["bn"] == bn and r["final"] is not None and r["final"] >= 0.5
        ]

    plain_ok, bn_ok = learned(False), learned(True)
    stuck = [
        r
        for r in n["rows"]
        if not r["bn"] and (r["status"] == "diverged" or (r["final"] or 0) < CHANCE + 0.05)
    ]
    wins = sum(
        1 for s in stds if (by[(s, True)]["final"] or 0) > (by[(s, False)]["final"] or 0) + 0.05
    )
    ok_stds = ", ".join(f"{r['std']:.3g}" for r in sorted(plain_ok, key=lambda r: -r["std"]))
    lines += [
        "",
        f"- Training accuracy >= 0.5 after the last epoch: **BN at {len(bn_ok)} of {len(stds)}** "
        f"weight scales, **no BN at {len(plain_ok)} of {len(stds)}** ({ok_stds or 'none'}).",
        f"- Without BN, {len(stuck)} scale(s) stayed within 0.05 of chance (0.10) or diverged.",
        f"- BN beat no BN by more than 0.05 at {wins} of {len(stds)} scales.",
    ]
    return "\n".join(lines)


def numbers_six_four(result, curves) -> dict:
    per = six_four.gaps(result, curves)
    out = {}
    for v, d in per.items():
        rows = result.trials[result.trials["params_variant"] == v]
        tr = [curves[(int(r["round"]), int(r["number"]))]["train_acc"] for _, r in rows.iterrows()]
        first_100 = [next((i + 1 for i, a in enumerate(c) if a >= 0.999), None) for c in tr]
        out[v] = d | {
            "max_train": float(max(max(c) for c in tr)),
            "epoch_100": first_100,
            "seeds": [int(s) for s in rows["seed"]],
            "gap_min": float(
                min(c["train_acc"][-1] - c["test_acc"][-1] for c in _curves(rows, curves))
            ),
            "gap_max": float(
                max(c["train_acc"][-1] - c["test_acc"][-1] for c in _curves(rows, curves))
            ),
        }
    return out


def _curves(rows, curves):
    return [curves[(int(r["round"]), int(r["number"]))] for _, r in rows.iterrows()]


LABELS = {
    "none": "none (plain 7-layer net)",
    "weight_decay": "weight decay, lambda = 0.1",
    "dropout_textbook": "dropout 0.2, textbook form (scale at test time)",
    "dropout_inverted": "dropout 0.2, inverted form (scale while training)",
}


def md_six_four(n: dict, head: str) -> str:
    lines = [
        head,
        "",
        "| variant | train acc | test acc | gap: mean (min-max) | epoch train acc hit 100% |",
        "|---|---|---|---|---|",
    ]
    for v in ("none", "weight_decay", "dropout_textbook", "dropout_inverted"):
        if v not in n:
            continue
        d = n[v]
        hit = ", ".join("never" if e is None else str(e) for e in d["epoch_100"])
        lines.append(
            f"| {LABELS[v]} | {d['train']:.3f} | {d['test']:.3f} | "
            f"{d['gap']:.3f} ({d['gap_min']:.3f}-{d['gap_max']:.3f}) | {hit} |"
        )
    base = n.get("none", {}).get("gap")
    if base is not None:
        lines.append("")
        for v in ("weight_decay", "dropout_textbook", "dropout_inverted"):
            if v in n:
                d = n[v]
                lines.append(
                    f"- {LABELS[v]}: gap {base:.3f} -> {d['gap']:.3f} "
                    f"({d['gap'] - base:+.3f}); train {n['none']['train']:.3f} -> "
                    f"{d['train']:.3f}, test {n['none']['test']:.3f} -> {d['test']:.3f}."
                )
    return "\n".join(lines)


def importances(study: Study, result) -> list[dict]:
    """fANOVA importances of each round's Optuna study: its finished trials sampled from the
    round's own ranges (fANOVA needs one search space: exploration and local trials left out)."""
    storage = open_storage(study.storage)
    out = []
    for r in result.rounds:
        if r.confirm:  # fixed configurations: nothing to attribute
            continue
        k = r.round
        s = optuna.load_study(study_name=r.study_name, storage=storage)
        done = [
            t
            for t in s.trials
            if t.state == optuna.trial.TrialState.COMPLETE
            and not (t.user_attrs.get(ATTR["explore"]) or t.user_attrs.get(ATTR["local"]))
        ]
        if len(done) < 4:
            continue
        own = optuna.create_study(direction=s.direction)
        own.add_trials(done)
        imp = optuna.importance.get_param_importances(
            own, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
        out.append({"round": k, **{p: float(v) for p, v in imp.items()}})
    return out


def numbers_six_five(study: Study, result) -> dict:
    t = result.trials
    ok = ranked(t)  # scored trials, best first
    top = ok.head(20)
    r1 = ok[ok["round"] == 1]
    rho = float(
        np.corrcoef(
            np.argsort(np.argsort(np.log10(r1["params_weight_decay"]))),
            np.argsort(np.argsort(r1["value"])),
        )[0, 1]
    )
    return {
        "best": result.best_params,
        "best_value": result.best_value,
        "test_score": result.test_score,
        "retrains": len(result.test_scores) or 1,
        "rounds": [
            {
                "round": r.round,
                "space": r.space.to_dict(),
                "changes": {p: c.reason for p, c in r.changes.items()},
                "confirm": len(r.candidates) if r.confirm else 0,
                "best": float(ok[ok["round"] == r.round]["value"].max()),
                "n": int((t["round"] == r.round).sum()),
                "diverged": int(((t["round"] == r.round) & (t["status"] == "diverged")).sum()),
            }
            for r in result.rounds
        ],
        "top20_lr": [
            float(top["params_lr"].min()),
            float(top["params_lr"].median()),
            float(top["params_lr"].max()),
        ],  # fmt: skip
        "top20_wd": [
            float(top["params_weight_decay"].min()),
            float(top["params_weight_decay"].max()),
        ],  # fmt: skip
        "round1_top10_lr_in_top_decade": int((r1.head(10)["params_lr"] >= 1e-3).sum()),
        "round1_wd_rank_corr": rho,
        "importances": importances(study, result),
        "status": result.status,
    }


def _rng(p: dict) -> str:
    return f"[{p['low']:.3g}, {p['high']:.3g}]" if "low" in p else str(p)


def md_six_five(n: dict, head: str) -> str:
    lines = [head, "", "| round | lr range | weight decay range | why | trials | best val acc |"]
    lines.append("|---|---|---|---|---|---|")
    for r in n["rounds"]:
        why = ", ".join(f"{p}: {c}" for p, c in r["changes"].items()) or "start"
        if r.get("confirm"):
            why = f"confirmation of the top {r['confirm']} (fresh seeds and folds)"
        lines.append(
            f"| {r['round']} | {_rng(r['space']['lr'])} | {_rng(r['space']['weight_decay'])} | "
            f"{why} | {r['n']} ({r['diverged']} diverged) | {r['best']:.3f} |"
        )
    b = n["best"]
    lo, med, hi = n["top20_lr"]
    lines += [
        "",
        f"- Best configuration: lr = {b['lr']:.3g}, weight decay = {b['weight_decay']:.3g}, "
        f"validation accuracy {n['best_value']:.3f}; retrained on train + validation "
        f"({n['retrains']} seed(s)) and scored on the test set: **test accuracy "
        f"{n['test_score']:.3f}** (the mean of the retrains).",
        f"- The 20 best trials have lr in [{lo:.3g}, {hi:.3g}] (median {med:.3g}); the "
        f"textbook's good range is 1e-3 to 1e-2 and its starting range ends at 1e-2. "
        f"Best lr {'ABOVE' if b['lr'] > 1e-2 else 'inside'} the textbook's range.",
        f"- Round 1 (the textbook's own ranges): {n['round1_top10_lr_in_top_decade']} of its 10 "
        f"best trials have lr >= 1e-3 (the top decade of 10^U(-6, -2)); rank correlation of "
        f"validation accuracy with log weight decay: {n['round1_wd_rank_corr']:+.2f}.",
        "",
        "Parameter importances (fANOVA, Optuna, per round; 1.0 = all of the explained variance):",
        "",
        "| round | lr | weight decay |",
        "|---|---|---|",
    ]
    for imp in n["importances"]:
        lines.append(
            f"| {imp['round']} | {imp.get('lr', math.nan):.2f} | "
            f"{imp.get('weight_decay', math.nan):.2f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- docs
def update_section(path: Path, key: str, text: str) -> None:
    """Replace the generated block ``key`` of ``path`` (appended when missing)."""
    begin, end = f"<!-- BEGIN generated:{key} -->", f"<!-- END generated:{key} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    doc = path.read_text() if path.exists() else "# Results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    doc = (
        pattern.sub(lambda _: block, doc) if pattern.search(doc) else f"{doc.rstrip()}\n\n{block}\n"
    )
    path.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.reproduce")
    ap.add_argument("--only", choices=KEYS, action="append", help="run only these studies")
    ap.add_argument("--docs", default="docs", help="where results.md and figures/ go")
    args = ap.parse_args(argv)
    keys = args.only or list(KEYS)
    docs = Path(args.docs)
    figs = docs / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    results_md, results_json = docs / "results.md", docs / "results.json"
    stored = json.loads(results_json.read_text()) if results_json.exists() else {}

    t0 = time.perf_counter()
    dataset = pick_dataset()
    full = dataset.name != "bundled"
    print(
        f"data: {dataset.name} ({len(dataset.X_train)} train / {len(dataset.X_test)} test "
        f"images) from {dataset.source}"
        + ("" if full else " -- full Fashion-MNIST not found, using the bundled subset")
    )
    builders = {
        "six-three": lambda: six_three.build(dataset),
        "six-four": lambda: six_four.build(dataset),
        "six-five": lambda: six_five.build(dataset),
    }
    for key in keys:
        study, result, curves, seconds = run(builders[key]())
        head = (
            f"Measured by `make reproduce` on **{dataset.name}** ({dataset.source}); study "
            f"`{study.name}` (study seed {study.seed}; each trial's seed is "
            f"SeedSequence([{study.seed}, round, number]), listed in runs/{study.name}/"
            f"trials.csv), {len(result.trials)} trials, {seconds:.0f} s on {study.workers} "
            f"worker(s). Regenerate: `make reproduce` "
            f"(or `.venv/bin/python -m studies.reproduce --only {key}`)."
        )
        if key == "six-three":
            six_three.figures(result, curves, figs)
            numbers = numbers_six_three(result, curves)
            text = md_six_three(numbers, head)
        elif key == "six-four":
            six_four.figures(result, curves, figs)
            numbers = numbers_six_four(result, curves)
            text = md_six_four(numbers, head)
        else:
            for src, dst in (("curves", "curves"), ("scores", "scores"), ("ranges_fig", "ranges")):
                if src in (files := _report_files(result)):
                    shrink_png(shutil.copyfile(files[src], figs / f"six_five_{dst}.png"))
            numbers = numbers_six_five(study, result)
            text = md_six_five(numbers, head)
        stored[key] = {"study": study.name, "data": dataset.name, "seconds": seconds} | {
            "numbers": numbers
        }
        update_section(results_md, key, text)
        results_json.write_text(json.dumps(stored, indent=1, default=float) + "\n")
    total = time.perf_counter() - t0
    print(f"reproduce: {', '.join(keys)} on {dataset.name} in {total:.0f} s; see {results_md}")
    return 0


def _report_files(result) -> dict[str, Path]:
    names = {"curves": "curves.png", "scores": "scores.png", "ranges_fig": "ranges.png"}
    return {k: result.out / v for k, v in names.items() if (result.out / v).exists()}


if __name__ == "__main__":
    raise SystemExit(main())
