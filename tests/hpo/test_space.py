"""Search-space value objects: every rule raises a named one-line error, round trips are exact."""

from __future__ import annotations

import doctest
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

import hpo.space
from hpo.space import Categorical, IntRange, LogUniform, SearchSpace, Uniform, param_from_dict

BAD = [
    ({"type": "LogUniform", "low": 0.1, "high": 0.01}, "`low < high` must hold"),
    ({"type": "Uniform", "low": 1.0, "high": 1.0}, "`low < high` must hold"),
    ({"type": "IntRange", "low": 3, "high": 3}, "`low < high` must hold"),
    ({"type": "LogUniform", "low": 0.0, "high": 1.0}, "`low > 0` must hold"),
    ({"type": "IntRange", "low": 0, "high": 8, "log": True}, "`low >= 1` must hold"),
    ({"type": "Uniform", "low": math.nan, "high": 1.0}, "must be finite"),
    ({"type": "Uniform", "low": 0.0, "high": math.inf}, "must be finite"),
    ({"type": "IntRange", "low": 1.5, "high": 3}, "`low` must be an int"),
    ({"type": "Uniform", "low": "0", "high": 1}, "`low` must be a number"),
    ({"type": "Uniform", "low": True, "high": 2}, "`low` must be a number"),
    ({"type": "Uniform", "low": 0, "high": 1, "limits": [0.5, 2]}, "`limits` must contain"),
    ({"type": "Uniform", "low": 0, "high": 1, "limits": [0, 0.5]}, "`limits` must contain"),
    ({"type": "Uniform", "low": 0, "high": 1, "limits": [0, 1, 2]}, "(lo, hi) pair"),
    ({"type": "Uniform", "low": 0, "high": 1, "limits": [0, math.inf]}, "limits=None"),
    ({"type": "LogUniform", "low": 1e-3, "high": 1, "limits": [0, 1]}, "`limits[0] > 0`"),
    ({"type": "IntRange", "low": 1, "high": 8, "log": "yes"}, "`log` must be True or False"),
    ({"type": "Categorical", "choices": []}, "must not be empty"),
    ({"type": "Categorical", "choices": ["a", "a"]}, "must not repeat"),
    ({"type": "Categorical", "choices": [1, True]}, "must not repeat"),
    ({"type": "Categorical", "choices": [[1]]}, "must be str, int, float"),
    ({"type": "Categorical", "choices": "ab"}, "must be a tuple"),
    ({"type": "Normal", "low": 0, "high": 1}, "`type` must be one of"),
    ({"type": "Uniform", "low": 0}, "missing keys ['high']"),
    ({"type": "Uniform", "low": 0, "high": 1, "step": 2}, "unknown keys ['step']"),
]


@pytest.mark.parametrize(("d", "rule"), BAD)
def test_each_rule_raises_one_line_naming_the_parameter(d, rule):
    with pytest.raises(ValueError) as info:
        SearchSpace.from_dict({"lr": d})
    message = str(info.value)
    assert message.startswith("lr: ") and rule in message and "\n" not in message


def test_constructor_message_is_optuna_style():
    with pytest.raises(
        ValueError, match=r"^`low < high` must hold, but got \(low=0.1, high=0.01\)$"
    ):
        LogUniform(0.1, 0.01)


def test_normalised_and_equal():
    assert LogUniform(1, 10) == LogUniform(1.0, 10.0)
    assert type(LogUniform(1, 10).low) is float and type(IntRange(1, 10).high) is int
    assert Uniform(0, 1, limits=[-1, 2]).limits == (-1.0, 2.0)
    assert Categorical(["a", "b"]).choices == ("a", "b")
    assert LogUniform(1e-6, 1e-2).log and IntRange(1, 8, log=True).log
    assert not (Uniform(0, 1).log or IntRange(1, 8).log or Categorical([1]).log)


def test_str_is_short():
    assert str(LogUniform(1e-6, 1e-2)) == "LogUniform(1e-06, 0.01)"
    assert (
        str(IntRange(1, 64, log=True, limits=(1, 1024)))
        == "IntRange(1, 64, log=True, limits=(1, 1024))"
    )
    assert str(Uniform(0, 0.5)) == "Uniform(0, 0.5)"
    assert str(Categorical(("relu", None))) == "Categorical(('relu', None))"


def test_contains():
    assert LogUniform(1e-6, 1e-2).contains(1e-3) and not LogUniform(1e-6, 1e-2).contains(0.1)
    assert IntRange(1, 8).contains(3) and IntRange(1, 8).contains(3.0)
    assert not IntRange(1, 8).contains(3.5) and not IntRange(1, 8).contains(True)
    c = Categorical(("a", 1, None))
    assert c.contains(1) and c.contains(None) and not c.contains(True) and not c.contains("b")


def test_hard_limits_default_to_the_domain():
    assert LogUniform(1e-6, 1e-2).hard_limits == (0.0, math.inf)
    assert IntRange(2, 8, log=True).hard_limits == (1, math.inf)
    assert Uniform(0, 1).hard_limits == (-math.inf, math.inf)
    assert Uniform(0, 1, limits=(0, 1)).hard_limits == (0.0, 1.0)


def test_to_optuna():
    space = SearchSpace(
        lr=LogUniform(1e-6, 1e-2),
        dropout=Uniform(0, 0.5),
        units=IntRange(16, 256, log=True),
        act=Categorical(("relu", "tanh")),
    )
    d = space.to_optuna()
    assert d["lr"] == FloatDistribution(1e-6, 1e-2, log=True)
    assert d["dropout"] == FloatDistribution(0.0, 0.5)
    assert d["units"] == IntDistribution(16, 256, log=True)
    assert d["act"] == CategoricalDistribution(("relu", "tanh"))


def test_names_must_be_identifiers():
    for bad in ("1lr", "learning-rate", "class", ""):
        with pytest.raises(ValueError, match=f"parameter name {bad!r} must be a Python identifier"):
            SearchSpace({bad: Uniform(0, 1)})


def test_space_rules():
    with pytest.raises(ValueError, match="at least one parameter"):
        SearchSpace()
    with pytest.raises(ValueError, match="'lr' must be a LogUniform, Uniform, IntRange or Cat"):
        SearchSpace(lr=(1e-6, 1e-2))
    with pytest.raises(ValueError, match="'lr' is given twice"):
        SearchSpace({"lr": Uniform(0, 1)}, lr=Uniform(0, 2))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lrr'\]"):
        SearchSpace(lr=Uniform(0, 1)).replace(lrr=Uniform(0, 2))


def test_mapping_behaviour_and_immutability():
    space = SearchSpace({"lr": LogUniform(1e-6, 1e-2)}, wd=LogUniform(1e-8, 1e-4))
    assert space.names == ("lr", "wd") and list(space) == ["lr", "wd"] and len(space) == 2
    assert dict(space.items())["wd"] == LogUniform(1e-8, 1e-4) and "lr" in space
    assert space.replace(lr=Uniform(0, 1))["lr"] == Uniform(0, 1) and space["lr"].log
    assert hash(space) == hash(SearchSpace(lr=space["lr"], wd=space["wd"]))
    assert repr(space) == "SearchSpace(lr=LogUniform(1e-06, 0.01), wd=LogUniform(1e-08, 0.0001))"
    with pytest.raises(AttributeError):
        space._params = {}  # noqa: SLF001
    with pytest.raises(TypeError):
        space._params["lr"] = Uniform(0, 1)  # noqa: SLF001


def test_doctest_example_runs():
    assert doctest.testmod(hpo.space).failed == 0


finite = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
ints = st.integers(-(10**9), 10**9)
choice = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.none(), finite)


@st.composite
def any_param(draw):
    kind = draw(st.sampled_from(["log", "uniform", "int", "intlog", "cat"]))
    if kind == "cat":
        values = draw(st.lists(choice, min_size=1, max_size=5))
        unique = [v for i, v in enumerate(values) if not any(v == w for w in values[:i])]
        return Categorical(tuple(unique))
    if kind in ("int", "intlog"):
        low = draw(st.integers(1, 1000) if kind == "intlog" else ints)
        high = draw(st.integers(low + 1, low + 10**6))
        pad = draw(st.none() | st.tuples(st.integers(0, low - 1 if kind == "intlog" else 99), ints))
        limits = None if pad is None else (low - pad[0], high + abs(pad[1]))
        return IntRange(low, high, log=kind == "intlog", limits=limits)
    a = draw(st.floats(-12, 6))
    b = a + draw(st.floats(0.01, 8))
    low, high = (10**a, 10**b) if kind == "log" else (a * 1e3, b * 1e3)
    shrink = draw(st.none() | st.floats(0.01, 1))
    if shrink is None:
        return (LogUniform if kind == "log" else Uniform)(low, high)
    lo = low * shrink if kind == "log" else low - 1 / shrink
    limits = (lo, high + abs(high) * shrink)
    return (LogUniform if kind == "log" else Uniform)(low, high, limits=limits)


@given(any_param())
def test_round_trip_is_exact(param):
    back = param_from_dict(json.loads(json.dumps(param.to_dict())))
    assert back == param and type(back) is type(param) and str(back) == str(param)
    space = SearchSpace(p=param)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space


@given(finite, finite)
def test_float_constructor_property(low, high):
    if low < high:
        assert (Uniform(low, high).low, Uniform(low, high).high) == (low, high)
    else:
        with pytest.raises(ValueError, match="`low < high` must hold"):
            Uniform(low, high)
    if 0 < low < high:
        assert LogUniform(low, high).contains(low)
    elif low <= 0:
        with pytest.raises(ValueError, match="`low > 0` must hold|`low < high`"):
            LogUniform(low, high)


@given(ints, ints, st.booleans())
def test_int_constructor_property(low, high, log):
    if low < high and (low >= 1 or not log):
        assert IntRange(low, high, log=log).to_optuna() == IntDistribution(low, high, log=log)
    else:
        with pytest.raises(ValueError, match="`low < high` must hold|`low >= 1` must hold"):
            IntRange(low, high, log=log)


@given(finite, st.floats(0.001, 1e6), finite, finite)
def test_limits_property(low, width, lo, hi):
    high = low + width
    if lo <= low and high <= hi:
        assert Uniform(low, high, limits=(lo, hi)).limits == (lo, hi)
    else:
        with pytest.raises(ValueError, match="`limits` must contain"):
            Uniform(low, high, limits=(lo, hi))


@given(st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf)), finite)
def test_non_finite_rejected(bad, other):
    for args in ((bad, other), (other, bad)):
        with pytest.raises(ValueError, match="must be finite"):
            Uniform(*args)
