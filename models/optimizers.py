"""Optimizers: ``update(params, grads)`` changes each parameter array in place.

State (velocity, moments) is created on the first update with the parameter's dtype and is
keyed by parameter name. Scalars stay Python floats so float32 arrays are never upcast.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "RMSprop", "OPTIMIZERS", "make_optimizer"]

Arrays = dict[str, np.ndarray]


class SGD:
    """Plain gradient descent: ``p -= lr * g``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = float(lr)

    def update(self, params: Arrays, grads: Arrays) -> None:
        for key, p in params.items():
            p -= self.lr * grads[key]


class Momentum:
    """``v = momentum * v - lr * g; p += v``."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr, self.momentum = float(lr), float(momentum)
        self.v: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        for key, p in params.items():
            v = self.v.get(key)
            if v is None:
                v = self.v[key] = np.zeros_like(p)
            v *= self.momentum
            v -= self.lr * grads[key]
            p += v


class AdaGrad:
    """Per-weight step ``lr / sqrt(sum g^2)``: rarely updated weights keep larger steps."""

    def __init__(self, lr: float = 0.01, eps: float = 1e-7) -> None:
        self.lr, self.eps = float(lr), float(eps)
        self.h: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        for key, p in params.items():
            g = grads[key]
            h = self.h.get(key)
            if h is None:
                h = self.h[key] = np.zeros_like(p)
            h += g * g
            p -= self.lr * g / (np.sqrt(h) + self.eps)


class RMSprop:
    """AdaGrad with an exponential moving average of ``g^2`` (``decay_rate``) instead of a sum."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, eps: float = 1e-7) -> None:
        self.lr, self.decay_rate, self.eps = float(lr), float(decay_rate), float(eps)
        self.h: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        for key, p in params.items():
            g = grads[key]
            h = self.h.get(key)
            if h is None:
                h = self.h[key] = np.zeros_like(p)
            h *= self.decay_rate
            h += (1.0 - self.decay_rate) * g * g
            p -= self.lr * g / (np.sqrt(h) + self.eps)


class Adam:
    """Adam (Kingma & Ba) with bias correction folded into the step size."""

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7
    ) -> None:
        self.lr, self.beta1, self.beta2 = float(lr), float(beta1), float(beta2)
        self.eps = float(eps)
        self.t = 0
        self.m: Arrays = {}
        self.v: Arrays = {}

    def update(self, params: Arrays, grads: Arrays) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * math.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        for key, p in params.items():
            g = grads[key]
            if key not in self.m:
                self.m[key], self.v[key] = np.zeros_like(p), np.zeros_like(p)
            m, v = self.m[key], self.v[key]
            m += (1.0 - b1) * (g - m)
            v += (1.0 - b2) * (g * g - v)
            p -= lr_t * m / (np.sqrt(v) + self.eps)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}
_SETTINGS = {
    "sgd": (),
    "momentum": ("momentum",),
    "adagrad": ("eps",),
    "rmsprop": ("decay_rate", "eps"),
    "adam": ("beta1", "beta2", "eps"),
}


def make_optimizer(name: str, lr: float = 0.01, **settings: float):
    """Build an optimizer by name, e.g. ``make_optimizer("adam", lr=1e-3, beta1=0.9)``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: must be a positive finite number, got {lr!r}")
    for key, value in settings.items():
        accepted = _SETTINGS[name]
        if key not in accepted:
            raise ValueError(
                f"optimizer_params: {name!r} accepts {list(accepted) or 'no settings'}, got {key!r}"
            )
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"optimizer_params.{key}: must be a finite number >= 0, got {value!r}")
    return OPTIMIZERS[name](lr, **settings)
