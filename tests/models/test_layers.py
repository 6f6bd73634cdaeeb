"""Each layer's backward against numerical gradients (float64), and inference-mode behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from models.layers import Affine, BatchNorm, Dropout, ReLU, SoftmaxCrossEntropy
from tests.models.gradcheck import numerical_grad, rel_error

TOL = 1e-6


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def check_layer(layer, x: np.ndarray, params: dict[str, tuple[np.ndarray, str]], rng) -> None:
    """Loss = sum(forward(x) * R); compare backward(R) with numerical gradients."""
    R = rng.standard_normal(layer.forward(x.copy(), True).shape)

    def f() -> float:
        return float(np.sum(layer.forward(x.copy(), True) * R))

    layer.forward(x.copy(), True)
    dx = layer.backward(R.copy())
    assert rel_error(dx, numerical_grad(f, x)) < TOL
    for array, grad_name in params.values():
        layer.forward(x.copy(), True)
        layer.backward(R.copy())
        analytic = getattr(layer, grad_name).copy()
        assert rel_error(analytic, numerical_grad(f, array)) < TOL, grad_name


def test_affine_gradients(rng):
    W, b = rng.standard_normal((5, 4)), rng.standard_normal(4)
    layer = Affine(W, b)
    check_layer(layer, rng.standard_normal((3, 5)), {"W": (W, "dW"), "b": (b, "db")}, rng)


def test_affine_weight_decay_gradient_and_penalty(rng):
    W = rng.standard_normal((5, 4))
    layer = Affine(W, None, weight_decay=0.3)
    x, R = rng.standard_normal((3, 5)), rng.standard_normal((3, 4))

    def f() -> float:
        return float(np.sum(layer.forward(x, True) * R)) + layer.penalty()

    layer.forward(x, True)
    layer.backward(R)
    assert rel_error(layer.dW, numerical_grad(f, W)) < TOL
    assert layer.penalty() == pytest.approx(0.5 * 0.3 * np.sum(W**2))


def test_affine_without_input_grad_returns_none(rng):
    layer = Affine(rng.standard_normal((5, 4)), input_grad=False)
    layer.forward(rng.standard_normal((3, 5)))
    assert layer.backward(rng.standard_normal((3, 4))) is None


def test_relu_gradients(rng):
    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 0.01] = 0.5  # keep away from the kink
    check_layer(ReLU(), x, {}, rng)


def test_batchnorm_gradients(rng):
    gamma, beta = rng.standard_normal(6) + 1.0, rng.standard_normal(6)
    layer = BatchNorm(gamma, beta)
    x = rng.standard_normal((8, 6)) * 3 + 1
    check_layer(layer, x, {"gamma": (gamma, "dgamma"), "beta": (beta, "dbeta")}, rng)


def test_batchnorm_inference_uses_running_statistics(rng):
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    layer = BatchNorm(gamma, beta, momentum=0.9, eps=1e-6)
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.standard_normal((10, 3)) * 2 + 5
        layer.forward(x, True)
        mean = 0.9 * mean + 0.1 * x.mean(axis=0)
        var = 0.9 * var + 0.1 * x.var(axis=0)  # biased variance
    np.testing.assert_allclose(layer.running_mean, mean)
    np.testing.assert_allclose(layer.running_var, var)
    x = rng.standard_normal((4, 3))
    expected = gamma * (x - mean) / np.sqrt(var + 1e-6) + beta
    np.testing.assert_allclose(layer.forward(x, False), expected)


def test_batchnorm_training_normalises_the_batch(rng):
    layer = BatchNorm(np.ones(4), np.zeros(4))
    out = layer.forward(rng.standard_normal((50, 4)) * 7 - 3, True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1, atol=1e-6)


@pytest.mark.parametrize("mode", ["inverted", "textbook"])
def test_dropout_gradients_with_fixed_mask(rng, mode):
    layer = Dropout(0.4, rng, mode=mode)
    x = rng.standard_normal((5, 7))
    layer.fixed_mask = rng.random(x.shape) >= 0.4
    check_layer(layer, x, {}, rng)


@pytest.mark.parametrize("mode", ["inverted", "textbook"])
def test_dropout_expected_activation_matches_inference(rng, mode):
    x = np.ones((2000, 50))
    layer = Dropout(0.3, rng, mode=mode)
    trained = layer.forward(x.copy(), True)
    assert np.mean(trained == 0) == pytest.approx(0.3, abs=0.01)
    inference = layer.forward(x.copy(), False)
    assert np.all(inference == inference[0, 0])  # every unit kept, one scale
    assert trained.mean() == pytest.approx(inference[0, 0], rel=0.02)
    assert inference[0, 0] == (1.0 if mode == "inverted" else pytest.approx(0.7))


def test_dropout_keeps_float32(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    layer = Dropout(0.5, rng)
    assert layer.forward(x, True).dtype == np.float32
    assert layer.backward(np.ones_like(x)).dtype == np.float32


def test_softmax_cross_entropy_gradient_and_value(rng):
    x, t = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    layer = SoftmaxCrossEntropy()
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert layer.forward(x, t) == pytest.approx(-np.mean(np.log(p[np.arange(6), t])))
    dx = layer.backward()
    assert rel_error(dx, numerical_grad(lambda: layer.forward(x, t), x)) < TOL


def test_softmax_cross_entropy_is_stable_for_large_scores():
    layer = SoftmaxCrossEntropy()
    assert np.isfinite(layer.forward(np.array([[1000.0, 0.0], [0.0, -1000.0]]), np.array([0, 1])))
