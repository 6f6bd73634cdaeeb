"""`make bench`: run every benchmark section, print the tables, write them to bench/results.md."""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path

SECTIONS = ["bench.network", "bench.study", "bench.tracking", "bench.peers"]


def _blas() -> str:
    from threadpoolctl import threadpool_info

    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return (
        ", ".join(f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in info)
        or "unknown"
    )


def main(argv: list[str]) -> int:
    import numpy as np

    wanted = argv or SECTIONS
    header = (
        f"# Benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, BLAS: {_blas()}\n"
    )
    parts = [header]
    print(header, flush=True)
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        text = module.run()
        print(text, flush=True)
        parts.append(text)
    out = Path(__file__).with_name("results.md")
    out.write_text("\n".join(parts))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
