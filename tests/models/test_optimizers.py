"""Every optimizer reaches the minimum of a quadratic, in place; bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest

from models.optimizers import OPTIMIZERS, make_optimizer

SETTINGS = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "adagrad": {"lr": 0.5},
    "rmsprop": {"lr": 0.01},
    "adam": {"lr": 0.05},
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_reaches_the_minimum_of_a_quadratic_in_place(name):
    # f(w) = 0.5 * sum(a * (w - c)^2): minimum at c, gradient a * (w - c).
    a = np.array([1.0, 3.0, 0.5, 2.0])
    c = np.array([1.0, -2.0, 0.5, 3.0])
    w = np.zeros(4)
    params = {"w": w}
    opt = make_optimizer(name, **SETTINGS[name])
    for _ in range(3000):
        opt.update(params, {"w": a * (params["w"] - c)})
    assert params["w"] is w
    np.testing.assert_allclose(w, c, atol=1e-2)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_float32_stays_float32(name):
    w = np.ones(3, dtype=np.float32)
    opt = make_optimizer(name, lr=0.1)
    opt.update({"w": w}, {"w": np.full(3, 0.5, dtype=np.float32)})
    opt.update({"w": w}, {"w": np.full(3, 0.5, dtype=np.float32)})
    assert w.dtype == np.float32 and np.all(w < 1)


def test_unknown_name_names_field_and_choices():
    with pytest.raises(ValueError, match=r"optimizer: must be one of \['adagrad', 'adam'"):
        make_optimizer("lbfgs")


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="optimizer_params: 'sgd' accepts no settings"):
        make_optimizer("sgd", momentum=0.9)
    with pytest.raises(ValueError, match="lr: must be a positive"):
        make_optimizer("adam", lr=-1)
