"""Datasets: the bundled Fashion-MNIST subset, full MNIST / Fashion-MNIST from IDX files, digits.

Full data is looked for, in order, in ``path``, ``$HPO_DATA_DIR`` (``<name>/`` or directly),
``/usr/share/datasets/<name>/`` (Debian) and the cache (``cache_dir`` or ``~/.cache/hpo/<name>``);
with ``url`` it is downloaded into the cache and checked against known MD5 digests.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.idx import read_idx
from models.splits import split

__all__ = ["KNOWN_MD5", "NAMES", "Dataset", "find", "load"]

NAMES = ("bundled", "fashion-mnist", "mnist", "digits")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")  # fmt: skip
# MD5 of the published .gz files; Fashion-MNIST also as repacked by Debian (dataset-fashion-mnist).
KNOWN_MD5: dict[str, dict[str, set[str]]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": {"f68b3c2dcbeaaa9fbdd348bbdeb94873"},
        "train-labels-idx1-ubyte.gz": {"d53e105ee54ea40749a09fcbcd1e9432"},
        "t10k-images-idx3-ubyte.gz": {"9fb629c4189551a2d022fa330f9573f3"},
        "t10k-labels-idx1-ubyte.gz": {"ec29112dd5afa0611ce80d1b7f02629c"},
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": {
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "cf8536b0aa1a6ac5fa3f23001093305c"},
        "train-labels-idx1-ubyte.gz": {
            "25c81989df183df01b3e8a0aad5dffbe", "10bea18fdb374794d4bb42e356e600c9"},
        "t10k-images-idx3-ubyte.gz": {
            "bef4ecab320f06d8554ea6380940ec79", "f78720b4224f21cce2f2ccf2d7a94c9a"},
        "t10k-labels-idx1-ubyte.gz": {
            "bb300cfdad3c16e7a12a480ee83cd310", "0d30e22e447f3c33dab9ed536400ac01"},
    },
}  # fmt: skip
_BUNDLED = Path(__file__).with_name("data") / "fashion_mnist_small.npz"


@dataclass(frozen=True)
class Dataset:
    """Images as float32 rows in [0, 1], labels int64; ``source`` says where they came from."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str


def _check_name(name: str, full_only: bool = False) -> None:
    names = NAMES[1:3] if full_only else NAMES
    if name not in names:
        raise ValueError(f"name: must be one of {list(names)}, got {name!r}")


def _candidates(name: str, path: str | Path | None, cache_dir: str | Path | None) -> list[Path]:
    dirs = [Path(path)] if path is not None else []
    env = os.environ.get("HPO_DATA_DIR")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs.append(Path("/usr/share/datasets") / name)
    dirs.append(_cache(name, cache_dir))
    return dirs


def _cache(name: str, cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "hpo" / name


def _files_in(folder: Path) -> list[Path] | None:
    """The four IDX files in ``folder`` (gzip or raw), or None if any is missing."""
    found = []
    for stem in FILES:
        options = [folder / f"{stem}.gz", folder / stem]
        hit = next((p for p in options if p.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def find(
    name: str, *, path: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """The folder holding the full data ("mnist" or "fashion-mnist"), or None; loads nothing."""
    _check_name(name, full_only=True)
    return next((d for d in _candidates(name, path, cache_dir) if _files_in(d)), None)


def _download(name: str, url: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, digests in KNOWN_MD5[name].items():
        target = folder / fname
        if target.is_file():
            continue
        part = folder / (fname + ".part")
        with urllib.request.urlopen(f"{url.rstrip('/')}/{fname}", timeout=60) as r:
            part.write_bytes(r.read())
        md5 = hashlib.md5(part.read_bytes()).hexdigest()
        if md5 not in digests:
            size = part.stat().st_size
            part.unlink()
            raise ValueError(
                f"download: {fname} from {url} has md5 {md5} ({size} bytes), "
                f"expected one of {sorted(digests)}; file removed"
            )
        read_idx(part)  # header must match the contents
        part.rename(target)


def _load_idx(name: str, folder: Path) -> Dataset:
    Xtr, ytr, Xte, yte = (read_idx(p) for p in _files_in(folder))
    return Dataset(_images(Xtr), ytr.astype(np.int64), _images(Xte), yte.astype(np.int64), name,
                   str(folder))  # fmt: skip


def _images(X: np.ndarray) -> np.ndarray:
    out = X.reshape(len(X), -1).astype(np.float32)
    out *= 1.0 / 255.0
    return out


def load(
    name: str = "bundled",
    *,
    path: str | Path | None = None,
    url: str | None = None,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Load a dataset: "bundled" (3000/1000 Fashion-MNIST), "fashion-mnist", "mnist", "digits".

    >>> d = load("bundled")
    >>> d.X_train.shape, d.X_train.dtype.name, d.y_train.dtype.name
    ((3000, 784), 'float32', 'int64')
    """
    _check_name(name)
    if name == "bundled":
        with np.load(_BUNDLED) as z:
            return Dataset(_images(z["X_train"]), z["y_train"].astype(np.int64),
                           _images(z["X_test"]), z["y_test"].astype(np.int64), name,
                           f"bundled Fashion-MNIST subset ({_BUNDLED.name})")  # fmt: skip
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X.astype(np.float32) / 16.0
        Xtr, ytr, Xte, yte = split(X, y.astype(np.int64), val=0.2, seed=0, stratify=True)
        return Dataset(Xtr, ytr, Xte, yte, name, "scikit-learn load_digits, 80/20 seeded split")
    folder = find(name, path=path, cache_dir=cache_dir)
    if folder is None and url is not None:
        folder = _cache(name, cache_dir)
        _download(name, url, folder)
    if folder is None:
        looked = ", ".join(str(d) for d in _candidates(name, path, cache_dir))
        raise FileNotFoundError(
            f"{name}: the four IDX files ({FILES[0]}[.gz], ...) were not found in: {looked}; "
            f"pass path=..., set HPO_DATA_DIR, or pass url=... to download into the cache"
        )
    return _load_idx(name, folder)
