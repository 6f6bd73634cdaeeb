"""A choice you can trust: the 6-5 study before (the textbook's scoring) and after (the study's
defaults: a noise-aware score, a confirmation round), over 5 study seeds. For each, the reported
validation score, the test accuracy of the chosen configuration retrained, and the optimism
(validation - test). Written into docs/results.md, section ``trust``.

    python -m studies.trust                        # bundled data, seeds 0-4
    HPO_DATASET=fashion-mnist python -m studies.trust
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from studies import six_five
from studies.datasets import pick_dataset
from studies.reproduce import update_section

SETTINGS = {"before": six_five.TEXTBOOK, "after": six_five.TRUST}


def measure(dataset, options: dict, seed: int, workers: int) -> dict:
    study = six_five.build(dataset, options)
    with tempfile.TemporaryDirectory() as tmp:
        study = study.with_options(seed=seed, workers=workers, tracking=False, out=tmp)
        t0 = time.perf_counter()
        r = study.run()
        seconds = time.perf_counter() - t0
    return {
        "seed": seed,
        "validation": r.best_value,
        "sd": r.best_sd,
        "test": r.test_score,
        "optimism": r.optimism,
        "params": r.best_params,
        "fragile": r.fragile,
        "evaluations": sum(study.settings.budget()),
        "seconds": round(seconds, 1),
    }


def summary(rows: list[dict]) -> dict:
    tests = [r["test"] for r in rows]
    opt = [r["optimism"] for r in rows]
    return {
        "median_optimism": statistics.median(opt),
        "worst_optimism": max(opt),
        "median_test": statistics.median(tests),
        "test_spread": max(tests) - min(tests),
    }


def table(data: str, runs: dict[str, list[dict]]) -> str:
    lines = [
        f"Data: {data}. Each row: one study seed; val = the reported validation score "
        "(± the sd of its repeats), test = the chosen configuration retrained on the 500 images "
        "and scored on the test split (before: once; after: the mean of 3 retrains with their "
        "own seeds), opt = val - test.",
        "",
        "| seed | before: val | test | opt | after: val | test | opt | after: chosen lr, wd |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for b, a in zip(runs["before"], runs["after"], strict=True):
        sd = f" ± {a['sd']:.3f}" if a["sd"] is not None else ""
        fr = " (fragile)" if a["fragile"] else ""
        p = a["params"]
        lines.append(
            f"| {b['seed']} | {b['validation']:.3f} | {b['test']:.3f} | {b['optimism']:+.3f} "
            f"| {a['validation']:.3f}{sd} | {a['test']:.3f} | {a['optimism']:+.3f}{fr} "
            f"| {p['lr']:.3g}, {p['weight_decay']:.2g} |"
        )
    sb, sa = summary(runs["before"]), summary(runs["after"])
    for label, key in (
        ("median optimism", "median_optimism"),
        ("worst optimism", "worst_optimism"),
        ("median test", "median_test"),
        ("test spread (max - min)", "test_spread"),
    ):
        f = "+.3f" if "optimism" in key else ".3f"
        lines.append(f"| {label} | | | {sb[key]:{f}} | | | {sa[key]:{f}} | |")
    eb, ea = runs["before"][0]["evaluations"], runs["after"][0]["evaluations"]
    sec_b = sum(r["seconds"] for r in runs["before"]) / len(runs["before"])
    sec_a = sum(r["seconds"] for r in runs["after"]) / len(runs["after"])
    lines += [
        "",
        f"Budget: before {eb} evaluations ({sec_b:.0f} s a study), after {ea} evaluations at "
        f"most ({sec_a:.0f} s a study). Before: studies/six_five.py TEXTBOOK (last epoch, "
        "4 rounds x 40); after: its defaults, TRUST (mean of the last 5 epochs, 5 folds, "
        "4 rounds x 36 + confirmation of the top 3 on all 5 folds with fresh seeds).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.trust")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--only", choices=tuple(SETTINGS), help="run one side (kept in trust.json)")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the json")
    args = ap.parse_args(argv)
    dataset = pick_dataset(default="bundled")
    key = "trust" if dataset.name == "bundled" else f"trust-{dataset.name}"
    store = Path(args.docs) / f"{key}.json"
    store.parent.mkdir(parents=True, exist_ok=True)  # a new --docs folder
    runs = json.loads(store.read_text()) if store.exists() else {}
    for side in [] if args.table else [args.only] if args.only else list(SETTINGS):
        runs[side] = []
        for seed in range(args.seeds):
            row = measure(dataset, SETTINGS[side], seed, args.workers)
            print(side, json.dumps(row), flush=True)
            runs[side].append(row)
        store.write_text(json.dumps(runs, indent=1) + "\n")
    if set(SETTINGS) <= set(runs):
        text = table(dataset.name, runs)
        update_section(Path(args.docs) / "results.md", key, text)
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
