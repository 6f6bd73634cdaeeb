"""Build fashion_mnist_small.npz: a class-balanced, seeded subset of Fashion-MNIST.

Run once from the project root: ``python -m models.data.make_subset``. Reads the Debian files
in /usr/share/datasets/fashion-mnist/ (package dataset-fashion-mnist); not run at import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.idx import read_idx

SOURCE = Path("/usr/share/datasets/fashion-mnist")
OUT = Path(__file__).with_name("fashion_mnist_small.npz")
SEED = 20170825  # Fashion-MNIST's release date; any fixed value would do
PER_CLASS = {"train": 300, "t10k": 100}


def take(prefix: str, per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` random images of each class, in a seeded shuffled order."""
    X = read_idx(SOURCE / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(SOURCE / f"{prefix}-labels-idx1-ubyte.gz")
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
    )
    idx = rng.permutation(idx)  # mixed classes, so "the first n" is roughly balanced too
    return X[idx].astype(np.uint8), y[idx].astype(np.uint8)


def main() -> None:
    rng = np.random.default_rng(SEED)
    X_train, y_train = take("train", PER_CLASS["train"], rng)
    X_test, y_test = take("t10k", PER_CLASS["t10k"], rng)
    np.savez_compressed(OUT, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
