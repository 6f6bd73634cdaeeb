"""How often narrowing finds evidence in pure noise: studies of a noise-only objective (N(0, 0.05),
seeded by the trial) over the *far* space of studies.hard_spaces, one worker, stopping on
unchanged ranges off; counts the narrowings after which some parameter showed evidence.

    python -m studies.false_leads [--sampler tpe|random] [--studies 25]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hpo import StopPolicy, Study
from studies.hard_spaces import TASKS


def noise(params: dict, ctx: Any) -> float:
    return float(np.random.default_rng(ctx.seed).normal(0.0, 0.05))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m studies.false_leads")
    ap.add_argument("--sampler", default="tpe", choices=("tpe", "random"))
    ap.add_argument("--studies", type=int, default=25)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hpo-false-leads-"))
    leads = narrowings = 0
    try:
        for seed in range(args.studies):
            study = Study(
                f"noise-{seed}",
                TASKS["far"].space,
                noise,
                seed=seed,
                workers=1,
                rounds=4,
                trials=30,
                sampler=args.sampler,
                out=tmp,
                tracking=False,
                storage=str(tmp / f"noise-{seed}.journal"),
                stop=StopPolicy(when_unchanged=False),
            )
            for record in study.run().rounds[1:]:
                narrowings += 1
                found = [n for n, c in record.changes.items() if c.evidence]
                leads += bool(found)
                if found:
                    print(f"seed {seed}, before round {record.round}: evidence for {found}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"sampler {args.sampler}: evidence after {leads} of {narrowings} narrowings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
