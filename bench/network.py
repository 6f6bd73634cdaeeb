"""Time per training epoch of the 784-[100 x 6]-10 net with BN and dropout 0.2, one BLAS thread.

Compares ``models.MLP`` (float32 and float64) with a textbook-style float64 NumPy baseline
(bench/textbook.py) and, when importable, PyTorch on CPU. ``run()`` returns a Markdown table.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from bench import textbook
from models import MLP

N, BATCH, HIDDEN, REPEATS = 10_000, 100, (100,) * 6, 3


def _data(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((N, 784)).astype(dtype), rng.integers(0, 10, N)


def _ours(dtype: str) -> Callable[[], None]:
    X, y = _data(dtype)
    model = MLP(HIDDEN, batchnorm=True, dropout=0.2, epochs=1, dtype=dtype, random_state=0)
    return lambda: model.fit(X, y)


def _textbook() -> Callable[[], None]:
    X, y = _data("float64")
    rng = np.random.default_rng(0)
    net = textbook.MultiLayerNetExtend(784, list(HIDDEN), 10, rng=rng, use_dropout=True,
                                       dropout_ratio=0.2, use_batchnorm=True)  # fmt: skip
    opt = textbook.SGD(lr=0.01)

    def epoch() -> None:
        order = rng.permutation(N)
        for i in range(0, N, BATCH):
            idx = order[i : i + BATCH]
            opt.update(net.params, net.gradient(X[idx], y[idx]))

    return epoch


def _torch() -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers, n_in = [], 784
    for n in HIDDEN:
        layers += [torch.nn.Linear(n_in, n), torch.nn.BatchNorm1d(n), torch.nn.ReLU(),
                   torch.nn.Dropout(0.2)]  # fmt: skip
        n_in = n
    model = torch.nn.Sequential(*layers, torch.nn.Linear(n_in, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xn, yn = _data("float32")
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    model.train()

    def epoch() -> None:
        order = torch.randperm(N)
        for i in range(0, N, BATCH):
            idx = order[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()

    return epoch


def _best(fn: Callable[[], None]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run() -> str:
    rows = [("textbook NumPy (bench/textbook.py)", "float64", _textbook),
            ("models.MLP", "float32", lambda: _ours("float32")),
            ("models.MLP", "float64", lambda: _ours("float64"))]  # fmt: skip
    with threadpool_limits(1):
        results = [(name, dt, _best(make())) for name, dt, make in rows]
        torch_epoch = _torch()
        if torch_epoch is not None:
            import torch

            results.append((f"PyTorch {torch.__version__} CPU", "float32", _best(torch_epoch)))
    base = results[0][2]
    steps = N // BATCH
    lines = [
        "## Network: one training epoch, 784-[100 x 6]-10 with BN + dropout 0.2",
        "",
        f"{N:,} synthetic images, batch {BATCH} ({steps} SGD steps), one BLAS thread, "
        f"best of {REPEATS}.",
        "",
        "| implementation | dtype | s / epoch | ms / step | speed-up vs textbook |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, dt, t in results:
        lines.append(f"| {name} | {dt} | {t:.3f} | {1000 * t / steps:.2f} | {base / t:.2f}x |")
    if torch_epoch is not None:
        ours, torch_t = results[1][2], results[-1][2]
        lines += ["", f"models.MLP float32 vs PyTorch: {torch_t / ours:.2f}x (above 1 = faster)."]
    return "\n".join(lines) + "\n"
