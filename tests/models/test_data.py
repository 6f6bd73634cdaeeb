"""IDX reading, where full data is looked for, the checked download, splits, the bundled set."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from models import datasets, find, load, read_idx, split, subset, write_idx


def _tiny(folder: Path, gz: bool = True, n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four IDX files of a tiny MNIST-like dataset into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    for stem, a in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), a)
    return arrays


@pytest.fixture(autouse=True)
def _no_real_places(monkeypatch, tmp_path):
    """Keep the machine's Debian folder and home cache out of these tests."""
    monkeypatch.delenv("HPO_DATA_DIR", raising=False)
    real = datasets._candidates  # noqa: SLF001

    def candidates(name, path, cache_dir):
        return [d for d in real(name, path, cache_dir) if not str(d).startswith("/usr/share")]

    monkeypatch.setattr(datasets, "_candidates", candidates)
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_gzip_and_raw(tmp_path, gz):
    arrays = _tiny(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    got = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert np.array_equal(got, arrays["train-images-idx3-ubyte"]) and got.dtype == np.uint8


def test_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # says 5, has 3
    with pytest.raises(ValueError, match="IDX header says"):
        read_idx(tmp_path / "bad")
    (tmp_path / "junk").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_path(tmp_path, gz):
    arrays = _tiny(tmp_path / "d", gz=gz)
    d = load("mnist", path=tmp_path / "d")
    assert d.X_train.shape == (6, 784) and d.X_train.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.X_train.min() >= 0 and d.X_train.max() <= 1
    np.testing.assert_allclose(d.X_test * 255, arrays["t10k-images-idx3-ubyte"].reshape(3, -1),
                               atol=1e-4)  # fmt: skip


@pytest.mark.parametrize("sub", ["fashion-mnist", ""])
def test_load_from_env_folder(tmp_path, monkeypatch, sub):
    _tiny(tmp_path / "data" / sub)
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path / "data"))
    assert find("fashion-mnist") == tmp_path / "data" / sub
    assert load("fashion-mnist").X_train.shape == (6, 784)


def test_missing_data_error_says_where_and_how(tmp_path):
    assert find("mnist", cache_dir=tmp_path / "c") is None
    with pytest.raises(FileNotFoundError, match=r"not found in: .*c; pass path=.*HPO_DATA_DIR"):
        load("mnist", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="name: must be one of"):
        load("cifar")


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 with python's ThreadingHTTPServer."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _md5s(folder: Path) -> dict[str, set[str]]:
    return {p.name: {hashlib.md5(p.read_bytes()).hexdigest()} for p in sorted(folder.glob("*.gz"))}


def test_download_into_cache_is_checked(tmp_path, monkeypatch, server):
    root, url = server
    _tiny(root)
    monkeypatch.setitem(datasets.KNOWN_MD5, "mnist", _md5s(root))
    cache = tmp_path / "cache"
    d = load("mnist", url=url, cache_dir=cache)
    assert d.X_train.shape == (6, 784) and d.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(_md5s(root))
    assert find("mnist", cache_dir=cache) == cache


def test_download_with_wrong_hash_is_rejected(tmp_path, monkeypatch, server):
    root, url = server
    _tiny(root)
    known = _md5s(root)
    _tiny(root, seed=1)  # the server now has other files than the table expects
    monkeypatch.setitem(datasets.KNOWN_MD5, "mnist", known)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"download: .* has md5 .*expected one of"):
        load("mnist", url=url, cache_dir=cache)
    assert not list(cache.glob("*.gz*"))
    assert find("mnist", cache_dir=cache) is None


def _xy(n=100, classes=4):
    return np.arange(n * 2).reshape(n, 2), np.arange(n) % classes


@pytest.mark.parametrize(("val", "n_val"), [(0.2, 20), (0.25, 25), (30, 30)])
def test_split_by_fraction_and_count_without_overlap(val, n_val):
    X, y = _xy()
    Xtr, ytr, Xv, yv = split(X, y, val=val, seed=1)
    assert len(Xv) == len(yv) == n_val and len(Xtr) == 100 - n_val
    ids = np.concatenate([Xtr[:, 0], Xv[:, 0]])
    assert sorted(ids) == list(range(0, 200, 2))  # each row exactly once
    assert np.array_equal(Xv[:, 0] // 2 % 4, yv)  # rows keep their labels


def test_split_is_seeded():
    X, y = _xy()
    a, b, c = split(X, y, seed=3), split(X, y, seed=3), split(X, y, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])


def test_split_stratified_keeps_class_balance():
    X = np.arange(120)[:, None]
    y = np.repeat([0, 1, 2], [60, 40, 20])
    _, ytr, _, yv = split(X, y, val=0.25, seed=0, stratify=True)
    assert np.bincount(yv).tolist() == [15, 10, 5]
    assert np.bincount(ytr).tolist() == [45, 30, 15]
    _, _, _, yv = split(X, y, val=7, seed=0, stratify=True)
    assert len(yv) == 7 and set(np.bincount(yv, minlength=3)) <= {1, 2, 3, 4}


@pytest.mark.parametrize("val", [0, 1.0, 100, -3, "a"])
def test_split_rejects_bad_sizes(val):
    with pytest.raises(ValueError, match="val:"):
        split(*_xy(), val=val)


def test_subset_first_n_or_seeded():
    X, y = _xy()
    assert np.array_equal(subset(X, y, 5)[1], y[:5])
    a, b = subset(X, y, 10, seed=1), subset(X, y, 10, seed=1)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], X[:10])


def test_bundled_data_shape_dtype_range_balance():
    d = load("bundled")
    assert d.X_train.shape == (3000, 784) and d.X_test.shape == (1000, 784)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert d.X_train.min() == 0 and d.X_train.max() == 1
    assert np.bincount(d.y_train).tolist() == [300] * 10
    assert np.bincount(d.y_test).tolist() == [100] * 10
    assert datasets._BUNDLED.stat().st_size < 2_200_000  # noqa: SLF001


def test_digits():
    d = load("digits")
    assert d.X_train.shape[1] == 64 and len(d.X_train) + len(d.X_test) == 1797
    assert d.X_train.dtype == np.float32 and d.X_train.max() <= 1
