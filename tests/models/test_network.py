"""The whole network: gradients against numerical ones, dtype, determinism, validation."""

from __future__ import annotations

import numpy as np
import pytest

from models import MLP, Net
from models.layers import Dropout
from tests.models.gradcheck import numerical_grad, rel_error


@pytest.mark.parametrize("batchnorm", [False, True])
def test_network_gradient_with_bn_dropout_and_weight_decay(batchnorm):
    rng = np.random.default_rng(1)
    net = Net(
        6,
        (5, 4),
        3,
        rng=rng,
        batchnorm=batchnorm,
        dropout=0.3,
        weight_decay=0.1,
        dtype="float64",
    )
    x, t = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    for key, p in net.params.items():  # nonzero biases: keep ReLU inputs off the kink at 0
        if key[0] == "b" or key.startswith("beta"):
            p[...] = rng.uniform(0.1, 0.5, p.shape)
    masks = iter([rng.random((7, 5)) >= 0.3, rng.random((7, 4)) >= 0.3])
    for layer in net.layers:
        if isinstance(layer, Dropout):
            layer.fixed_mask = next(masks)

    def f() -> float:
        return net.gradient(x, t)[0]

    net.gradient(x, t)
    analytic = {k: g.copy() for k, g in net.grads.items()}
    assert ("gamma1" in net.params) == batchnorm and ("b1" in net.params) != batchnorm
    for key, p in net.params.items():
        assert rel_error(analytic[key], numerical_grad(f, p)) < 1e-6, key


def test_weight_decay_term_covers_weights_only():
    rng = np.random.default_rng(0)
    net = Net(4, (3,), 2, rng=rng, batchnorm=True, weight_decay=0.5, dtype="float64")
    net.params["beta1"][...] = 7.0  # not part of the penalty
    expected = 0.25 * sum(np.sum(net.params[k] ** 2) for k in ("W1", "W2"))
    assert net.penalty() == pytest.approx(expected)


def test_init_scales():
    rng = np.random.default_rng(0)
    for init, std in [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400)), (0.01, 0.01)]:
        net = Net(400, (300,), 10, rng=rng, init=init)
        assert net.params["W1"].std() == pytest.approx(std, rel=0.02)
        if init == 0.01:
            assert net.params["W2"].std() == pytest.approx(0.01, rel=0.05)


def _data(n=200, d=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d)), rng.integers(0, 4, n)


def test_same_random_state_gives_bit_identical_results():
    X, y = _data()
    kw = dict(hidden=(16, 16), batchnorm=True, dropout=0.2, epochs=3, batch_size=32)
    a = MLP(**kw, random_state=3).fit(X, y, X_val=X[:50], y_val=y[:50])
    b = MLP(**kw, random_state=3).fit(X, y, X_val=X[:50], y_val=y[:50])
    c = MLP(**kw, random_state=4).fit(X, y)
    for key in a.params_:
        assert np.array_equal(a.params_[key], b.params_[key])
    assert a.history_ == b.history_
    assert not np.array_equal(a.params_["W1"], c.params_["W1"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept_through_training(dtype):
    X, y = _data()
    m = MLP(
        hidden=(16,),
        batchnorm=True,
        dropout=0.2,
        optimizer="adam",
        lr=1e-3,
        epochs=2,
        dtype=dtype,
        random_state=0,
    ).fit(X, y)
    assert all(p.dtype == np.dtype(dtype) for p in m.params_.values())
    assert all(s.dtype == np.dtype(dtype) for s in m.optimizer_.m.values())
    assert m.predict_proba(X).dtype == np.dtype(dtype)


def test_history_callback_and_early_stop():
    X, y = _data()
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 2

    m = MLP(hidden=(8,), epochs=5, random_state=0).fit(
        X, y, X_val=X[:20], y_val=y[:20], on_epoch=on_epoch
    )
    assert [e for e, _ in seen] == [1, 2]
    assert seen[0][1] == ["train_acc", "train_loss", "val_acc", "val_loss"]
    assert m.stopped_early_ and m.n_epochs_ == 2 and len(m.history_["val_acc"]) == 2


def test_eval_train_reports_an_inference_pass():
    X, y = _data()
    m = MLP(hidden=(8,), epochs=2, random_state=0).fit(X, y, eval_train=True)
    assert m.history_["train_acc"][-1] == pytest.approx(m.score(X, y))
    assert m.history_["train_loss"][-1] == pytest.approx(m.loss(X, y), rel=1e-5)


@pytest.mark.parametrize("settings", [{"lr": 1e3}, {"init": 1e3}])
def test_divergence_is_reported_not_raised(settings):
    X, y = _data()
    calls = []
    m = MLP(epochs=5, random_state=0, **settings)
    m.fit(X, y, X_val=X[:20], y_val=y[:20], on_epoch=lambda e, mt: calls.append(mt))
    assert m.diverged_ and "at epoch" in m.divergence_reason_
    assert len(m.history_["val_acc"]) == m.n_epochs_ == len(calls)
    assert all(np.isfinite(mt["val_acc"]) for mt in calls)


def test_labels_of_any_kind():
    X, _ = _data()
    y = np.array(["cat", "dog"])[np.arange(len(X)) % 2]
    m = MLP(hidden=(8,), epochs=1, random_state=0).fit(X, y)
    assert set(m.predict(X)) <= {"cat", "dog"}
    np.testing.assert_allclose(m.predict_proba(X).sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dropout": 1.5}, r"dropout: must be in \[0, 1\), got 1.5"),
        ({"dropout_mode": "x"}, "dropout_mode: must be 'inverted' or 'textbook'"),
        ({"init": -1}, "init: must be 'he', 'xavier' or a positive number"),
        ({"optimizer": "lbfgs"}, "optimizer: must be one of"),
        ({"lr": 0}, "lr: must be a positive number"),
        ({"weight_decay": -0.1}, "weight_decay: must be a number >= 0"),
        ({"batch_size": 0}, "batch_size: must be a positive int"),
        ({"dtype": "float16"}, "dtype: must be 'float32' or 'float64'"),
        ({"hidden": (10, 0)}, "hidden: must be a tuple of positive ints"),
        ({"optimizer_params": {"beta9": 1}}, "optimizer_params: 'sgd' accepts"),
    ],
)
def test_settings_are_validated_in_fit(settings, message):
    X, y = _data()
    model = MLP(**settings)  # __init__ only stores
    with pytest.raises(ValueError, match=message):
        model.fit(X, y)


def test_float32_has_no_float64_intermediates():
    rng = np.random.default_rng(0)
    net = Net(20, (8, 8), 3, rng=rng, batchnorm=True, dropout=0.2, weight_decay=0.1)
    x, t = rng.random((10, 20)).astype(np.float32), rng.integers(0, 3, 10)
    for train in (True, False):
        h = x
        for layer in net.layers:
            h = layer.forward(h, train)
            assert h.dtype == np.float32, (type(layer).__name__, train)
    net.loss_layer.forward(h, t)
    d = net.loss_layer.backward()
    for layer in reversed(net.layers[1:]):
        d = layer.backward(d)
        assert d.dtype == np.float32, type(layer).__name__
    bn = net.layers[1]
    assert bn.running_mean.dtype == bn.running_var.dtype == bn.inv_std.dtype == np.float32
