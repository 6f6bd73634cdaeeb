"""Layers of the network, in the textbook's shape: ``forward(x, train)`` and ``backward(dout)``.

Gradients are kept on the layer (``dW``, ``db``, ``dgamma``, ``dbeta``). Arrays are used in the
dtype they come in (float32 or float64); scalars are Python floats so nothing is upcast.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Affine", "BatchNorm", "Dropout", "ReLU", "SoftmaxCrossEntropy"]

_ONES: dict[tuple[int, np.dtype], np.ndarray] = {}


def _colsum(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Column sums as a BLAS product ``ones @ x``: about twice as fast as ``x.sum(axis=0)``."""
    key = (x.shape[0], x.dtype)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = np.ones(x.shape[0], dtype=x.dtype)
    return np.matmul(ones, x, out=out)


class Affine:
    """``x @ W + b``. ``b`` may be None (before BatchNorm a bias is redundant: BN subtracts it).

    ``weight_decay`` adds ``lambda * W`` to ``dW`` and ``penalty()`` gives ``0.5 * lambda * |W|^2``.
    ``input_grad=False`` skips ``dx`` (the first layer needs none: a third of its cost).
    ``dW``/``db`` may be passed in to have gradients written into preallocated (flat) storage.
    """

    def __init__(
        self,
        W: np.ndarray,
        b: np.ndarray | None = None,
        *,
        weight_decay: float = 0.0,
        input_grad: bool = True,
        dW: np.ndarray | None = None,
        db: np.ndarray | None = None,
    ) -> None:
        self.W, self.b = W, b
        self.weight_decay = float(weight_decay)
        self.input_grad = input_grad
        self.dW = np.zeros_like(W) if dW is None else dW
        self.db = None if b is None else (np.zeros_like(b) if db is None else db)
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.x = x
        out = x @ self.W
        if self.b is not None:
            out += self.b
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        np.matmul(self.x.T, dout, out=self.dW)
        if self.weight_decay:
            self.dW += self.weight_decay * self.W
        if self.db is not None:
            _colsum(dout, out=self.db)
        return dout @ self.W.T if self.input_grad else None

    def penalty(self) -> float:
        """The weight-decay term this layer adds to the loss."""
        if not self.weight_decay:
            return 0.0
        W = self.W.ravel()
        return 0.5 * self.weight_decay * float(W @ W)


class ReLU:
    """``max(x, 0)``. With ``inplace=True`` it overwrites its input (safe inside the network)."""

    def __init__(self, *, inplace: bool = False) -> None:
        self.inplace = inplace
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.out = np.maximum(x, 0, out=x if self.inplace else None)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.multiply(dout, self.out > 0, out=dout if self.inplace else None)


class BatchNorm:
    """Batch normalisation over the rows of a mini-batch, then ``gamma * x_hat + beta``.

    Training uses the batch mean and biased variance; inference uses running statistics
    updated as ``running = momentum * running + (1 - momentum) * batch`` (momentum 0.9).
    """

    def __init__(
        self,
        gamma: np.ndarray,
        beta: np.ndarray,
        *,
        momentum: float = 0.9,
        eps: float = 1e-6,
        dgamma: np.ndarray | None = None,
        dbeta: np.ndarray | None = None,
    ) -> None:
        self.gamma, self.beta = gamma, beta
        self.momentum, self.eps = float(momentum), float(eps)
        self.running_mean = np.zeros_like(gamma)
        self.running_var = np.ones_like(gamma)
        self.dgamma = np.zeros_like(gamma) if dgamma is None else dgamma
        self.dbeta = np.zeros_like(beta) if dbeta is None else dbeta
        self.xc: np.ndarray | None = None  # centred input
        self.inv_std: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        if not train:
            scale = self.gamma / np.sqrt(self.running_var + self.eps)
            out = x * scale
            out += self.beta - self.running_mean * scale
            return out
        m = x.shape[0]
        mean = _colsum(x)
        mean *= 1.0 / m
        xc = x - mean
        var = _colsum(np.square(xc))
        var *= 1.0 / m
        inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xc, self.inv_std = xc, inv_std
        self.scale = self.gamma * inv_std
        out = xc * self.scale
        out += self.beta
        mom = self.momentum
        self.running_mean *= mom
        self.running_mean += (1.0 - mom) * mean
        self.running_var *= mom
        self.running_var += (1.0 - mom) * var
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        m = dout.shape[0]
        xc, inv_std, scale = self.xc, self.inv_std, self.scale
        _colsum(dout, out=self.dbeta)
        s = _colsum(dout * xc)  # = dgamma / inv_std
        np.multiply(s, inv_std, out=self.dgamma)
        # dx = scale * (dout - dbeta/m - x_hat * dgamma/m), with x_hat = xc * inv_std
        k = scale * inv_std * inv_std * s
        k *= -1.0 / m
        dx = dout * scale
        dx += xc * k
        dx -= self.dbeta * scale * (1.0 / m)
        return dx


class Dropout:
    """Drops each unit with probability ``ratio`` while training.

    ``mode="inverted"`` (default) scales kept units by ``1/(1-ratio)`` while training, so
    inference is a plain pass; ``mode="textbook"`` keeps them as they are and multiplies by
    ``1 - ratio`` at inference. The expected activation is identical in both modes.
    Set ``fixed_mask`` (boolean, True = keep) to use the same mask every call (gradient checks).
    Masks come from 16-bit slices of the Generator's raw output (3x faster than ``random()``),
    so the drop probability is ``ratio`` rounded to a multiple of 1/65536.
    """

    def __init__(
        self,
        ratio: float,
        rng: np.random.Generator,
        *,
        mode: str = "inverted",
        inplace: bool = False,
    ) -> None:
        if mode not in ("inverted", "textbook"):
            raise ValueError(f"dropout_mode: must be 'inverted' or 'textbook', got {mode!r}")
        self.ratio, self.rng, self.mode, self.inplace = float(ratio), rng, mode, inplace
        self.fixed_mask: np.ndarray | None = None
        self.mask: np.ndarray | None = None  # float multiplier used in the last training pass

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        out = x if self.inplace else None
        if not train:
            if self.mode == "textbook":
                return np.multiply(x, 1.0 - self.ratio, out=out)
            return x
        keep = self.fixed_mask
        if keep is None:
            size = x.size
            bits = self.rng.bit_generator.random_raw((size + 3) // 4).view(np.uint16)
            keep = bits[:size].reshape(x.shape) >= round(self.ratio * 65536)
        scale = 1.0 / (1.0 - self.ratio) if self.mode == "inverted" else 1.0
        self.mask = np.multiply(keep, scale, dtype=x.dtype)
        return np.multiply(x, self.mask, out=out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.multiply(dout, self.mask, out=dout if self.inplace else None)


class SoftmaxCrossEntropy:
    """Softmax and mean cross-entropy against integer labels: ``forward(x, t)`` gives the loss."""

    def __init__(self) -> None:
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        shifted = x - x.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = np.add.reduce(e, axis=1, keepdims=True)
        e /= s
        self.y, self.t = e, t
        rows = np.arange(x.shape[0])
        logp = shifted[rows, t] - np.log(s[:, 0])
        return -float(np.add.reduce(logp)) / x.shape[0]

    def backward(self, dout: float = 1.0) -> np.ndarray:
        n = self.y.shape[0]
        dx = self.y.copy()
        dx[np.arange(n), self.t] -= 1.0
        dx *= dout / n
        return dx
