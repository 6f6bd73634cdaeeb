"""The multilayer network (``Net``) and its scikit-learn-style classifier (``MLP``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from models.layers import Affine, BatchNorm, Dropout, ReLU, SoftmaxCrossEntropy
from models.optimizers import OPTIMIZERS, make_optimizer
from models.training import train

__all__ = ["MLP", "Net"]


def _init_std(init: str | float, n_in: int) -> float:
    if init == "he":  # suits ReLU
        return math.sqrt(2.0 / n_in)
    if init == "xavier":
        return math.sqrt(1.0 / n_in)
    return float(init)


class Net:
    """Affine [-> BatchNorm] -> ReLU [-> Dropout] per hidden layer, then an output Affine.

    Parameters live in one flat array (``flat_params``) and ``params`` holds named views into it
    (``W1``, ``b1`` or ``gamma1``/``beta1``, ...), likewise gradients (``flat_grads``/``grads``),
    so an optimizer updates everything in a few array operations. A hidden Affine followed by
    BatchNorm has no bias: BN subtracts the batch mean, so that bias would have zero gradient.
    """

    def __init__(
        self,
        n_in: int,
        hidden: tuple[int, ...],
        n_out: int,
        *,
        rng: np.random.Generator,
        batchnorm: bool = False,
        dropout: float = 0.0,
        dropout_mode: str = "inverted",
        weight_decay: float = 0.0,
        init: str | float = "he",
        dtype: str | np.dtype = "float32",
    ) -> None:
        dtype = np.dtype(dtype)
        sizes = [n_in, *hidden, n_out]
        n_layers = len(sizes) - 1
        shapes: dict[str, tuple[int, ...]] = {}
        for i in range(1, n_layers + 1):
            shapes[f"W{i}"] = (sizes[i - 1], sizes[i])
            if i < n_layers and batchnorm:
                shapes[f"gamma{i}"] = shapes[f"beta{i}"] = (sizes[i],)
            else:
                shapes[f"b{i}"] = (sizes[i],)
        total = sum(math.prod(s) for s in shapes.values())
        self.flat_params = np.zeros(total, dtype=dtype)
        self.flat_grads = np.zeros(total, dtype=dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        start = 0
        for key, shape in shapes.items():
            stop = start + math.prod(shape)
            self.params[key] = self.flat_params[start:stop].reshape(shape)
            self.grads[key] = self.flat_grads[start:stop].reshape(shape)
            start = stop

        p, g = self.params, self.grads
        self.layers: list = []
        for i in range(1, n_layers + 1):
            # Drawn in float64 then cast: float32 and float64 nets start from the same weights.
            p[f"W{i}"][...] = rng.standard_normal(shapes[f"W{i}"]) * _init_std(init, sizes[i - 1])
            bias = f"b{i}" in p
            self.layers.append(
                Affine(
                    p[f"W{i}"],
                    p[f"b{i}"] if bias else None,
                    weight_decay=weight_decay,
                    input_grad=i > 1,
                    dW=g[f"W{i}"],
                    db=g[f"b{i}"] if bias else None,
                )
            )
            if i == n_layers:
                break
            if batchnorm:
                p[f"gamma{i}"][...] = 1.0
                self.layers.append(
                    BatchNorm(
                        p[f"gamma{i}"],
                        p[f"beta{i}"],
                        dgamma=g[f"gamma{i}"],
                        dbeta=g[f"beta{i}"],
                    )
                )
            self.layers.append(ReLU(inplace=True))
            if dropout > 0:
                self.layers.append(Dropout(dropout, rng, mode=dropout_mode, inplace=True))
        self.affines = [layer for layer in self.layers if isinstance(layer, Affine)]
        self.loss_layer = SoftmaxCrossEntropy()
        self.weight_decay = float(weight_decay)
        self.dtype = dtype

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        """Class scores (logits) for a batch."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def penalty(self) -> float:
        """The weight-decay term of the loss, ``0.5 * lambda * sum(W**2)`` over all weights."""
        return sum(a.penalty() for a in self.affines) if self.weight_decay else 0.0

    def gradient(self, x: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        """One training pass: returns (loss, scores) and leaves the gradients in ``grads``."""
        scores = self.forward(x, True)
        loss = self.loss_layer.forward(scores, t) + self.penalty()
        dout = self.loss_layer.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return loss, scores

    def scores(self, X: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """Inference-mode scores for any number of rows, computed in chunks."""
        if len(X) <= chunk:
            return self.forward(X, False)
        return np.concatenate(
            [self.forward(X[i : i + chunk], False) for i in range(0, len(X), chunk)]
        )

    def evaluate(self, X: np.ndarray, t: np.ndarray) -> tuple[float, float]:
        """(loss, accuracy) in inference mode; the loss includes the weight-decay term."""
        s = self.scores(X)
        loss = self.loss_layer.forward(s, t) + self.penalty()
        return loss, float(np.mean(s.argmax(axis=1) == t))


def _check(ok: bool, field: str, accepted: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{field}: must be {accepted}, got {value!r}")


def _is_num(v: object) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


class MLP:
    """A multilayer perceptron classifier in NumPy, with the habits of a scikit-learn estimator.

    ``init`` is "he", "xavier" or a positive number used as the weight std of every layer.
    Losses (``loss``, ``history_``) include the weight-decay term, as the textbook does.

    >>> from models import MLP, load
    >>> d = load("bundled")
    >>> m = MLP(hidden=(50,), lr=0.1, epochs=3, random_state=0)
    >>> m = m.fit(d.X_train[:500], d.y_train[:500], X_val=d.X_test, y_val=d.y_test)
    >>> len(m.history_["val_acc"]), m.score(d.X_test, d.y_test) > 0.4, m.predict(d.X_test[:3]).shape
    (3, True, (3,))
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (100,) * 6,
        *,
        batchnorm: bool = False,
        dropout: float = 0.0,
        dropout_mode: str = "inverted",
        weight_decay: float = 0.0,
        init: str | float = "he",
        optimizer: str = "sgd",
        lr: float = 0.01,
        optimizer_params: dict | None = None,
        batch_size: int = 100,
        epochs: int = 20,
        dtype: str = "float32",
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.hidden = hidden
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.dropout_mode = dropout_mode
        self.weight_decay = weight_decay
        self.init = init
        self.optimizer = optimizer
        self.lr = lr
        self.optimizer_params = optimizer_params
        self.batch_size = batch_size
        self.epochs = epochs
        self.dtype = dtype
        self.random_state = random_state

    def _validate(self) -> None:
        h = self.hidden
        _check(
            isinstance(h, tuple | list)
            and all(isinstance(n, int | np.integer) and n > 0 for n in h),
            "hidden",
            "a tuple of positive ints",
            h,
        )
        _check(isinstance(self.batchnorm, bool), "batchnorm", "True or False", self.batchnorm)
        d = self.dropout
        _check(_is_num(d) and 0 <= d < 1, "dropout", "in [0, 1)", d)
        mode = self.dropout_mode
        _check(mode in ("inverted", "textbook"), "dropout_mode", "'inverted' or 'textbook'", mode)
        wd = self.weight_decay
        _check(_is_num(wd) and math.isfinite(wd) and wd >= 0, "weight_decay", "a number >= 0", wd)
        i = self.init
        ok = i in ("he", "xavier") or (_is_num(i) and math.isfinite(i) and i > 0)
        _check(ok, "init", "'he', 'xavier' or a positive number (std)", i)
        opt = self.optimizer
        _check(opt in OPTIMIZERS, "optimizer", f"one of {sorted(OPTIMIZERS)}", opt)
        lr = self.lr
        _check(_is_num(lr) and math.isfinite(lr) and lr > 0, "lr", "a positive number", lr)
        op = self.optimizer_params
        _check(op is None or isinstance(op, dict), "optimizer_params", "a dict or None", op)
        bs = self.batch_size
        _check(isinstance(bs, int | np.integer) and bs > 0, "batch_size", "a positive int", bs)
        dt = self.dtype
        _check(str(dt) in ("float32", "float64"), "dtype", "'float32' or 'float64'", dt)
        rs = self.random_state
        ok = (
            rs is None
            or isinstance(rs, np.random.Generator)
            or (isinstance(rs, int | np.integer) and not isinstance(rs, bool) and rs >= 0)
        )
        _check(ok, "random_state", "None, an int >= 0 or a numpy Generator", rs)

    def _labels(self, y: np.ndarray, field: str) -> np.ndarray:
        t = np.searchsorted(self.classes_, y)
        t = np.minimum(t, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[t], y):
            unknown = sorted(set(np.asarray(y).tolist()) - set(self.classes_.tolist()))[:5]
            raise ValueError(f"{field}: labels not seen in y: {unknown}")
        return t

    def _inputs(self, X: np.ndarray, field: str = "X") -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=self.net_.dtype if hasattr(self, "net_") else None)
        _check(X.ndim == 2, field, "a 2-D array (n_samples, n_features)", X.shape)
        return X

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        epochs: int | None = None,
        on_epoch: Callable[[int, dict], bool | None] | None = None,
        eval_train: bool = False,
    ) -> MLP:
        """Train from scratch; see ``models.training.train`` for the callback and divergence."""
        self._validate()
        epochs = self.epochs if epochs is None else epochs
        _check(
            isinstance(epochs, int | np.integer) and epochs >= 0, "epochs", "an int >= 0", epochs
        )
        _check((X_val is None) == (y_val is None), "X_val/y_val", "given together", "one of them")
        dtype = np.dtype(str(self.dtype))
        X = np.ascontiguousarray(X, dtype=dtype)
        y = np.asarray(y)
        _check(X.ndim == 2, "X", "a 2-D array (n_samples, n_features)", X.shape)
        _check(y.shape == (len(X),), "y", f"a 1-D array of {len(X)} labels", y.shape)
        self.classes_ = np.unique(y)
        t = self._labels(y, "y")
        val = None
        if X_val is not None:
            X_val = np.ascontiguousarray(X_val, dtype=dtype)
            _check(
                X_val.shape[1:] == X.shape[1:], "X_val", f"shaped (n, {X.shape[1]})", X_val.shape
            )
            val = (X_val, self._labels(np.asarray(y_val), "y_val"))
        rng = np.random.default_rng(self.random_state)
        self.n_features_in_ = X.shape[1]
        self.net_ = Net(
            X.shape[1],
            tuple(int(n) for n in self.hidden),
            len(self.classes_),
            rng=rng,
            batchnorm=self.batchnorm,
            dropout=float(self.dropout),
            dropout_mode=self.dropout_mode,
            weight_decay=float(self.weight_decay),
            init=self.init,
            dtype=dtype,
        )
        self.params_ = self.net_.params
        self.optimizer_ = make_optimizer(self.optimizer, self.lr, **(self.optimizer_params or {}))
        result = train(
            self.net_,
            self.optimizer_,
            X,
            t,
            rng=rng,
            batch_size=int(self.batch_size),
            epochs=int(epochs),
            val=val,
            on_epoch=on_epoch,
            eval_train=eval_train,
        )
        self.history_ = result.history
        self.n_epochs_ = result.n_epochs
        self.stopped_early_ = result.stopped_early
        self.diverged_ = result.diverged
        self.divergence_reason_ = result.reason
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax class probabilities, columns ordered as ``classes_``."""
        s = self.net_.scores(self._inputs(X))
        s -= s.max(axis=1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=1, keepdims=True)
        return s

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.net_.scores(self._inputs(X)).argmax(axis=1)]

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy plus the weight-decay term, in inference mode."""
        return self.net_.evaluate(self._inputs(X), self._labels(np.asarray(y), "y"))[0]
