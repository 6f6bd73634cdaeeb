"""Search-space value objects that validate when built.

A bad range fails where the study is defined, with one line naming the rule, instead of inside a
worker. ``limits`` are hard bounds that narrowing may move a range up to but never across.
"""

from __future__ import annotations

import dataclasses
import keyword
import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import KW_ONLY, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from hpo.conditions import check_conditions, normalize_when, when_dict

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = [
    "Categorical",
    "IntRange",
    "LogUniform",
    "Param",
    "SearchSpace",
    "Uniform",
    "param_from_dict",
]

_CHOICE_TYPES = (str, int, float, bool, type(None))


def _fmt(x: float | int) -> str:
    """Shortest readable form: ``%g`` when it is exact, ``repr`` otherwise."""
    if isinstance(x, int):
        return str(x)
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _short(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _number(value: Any, what: str, integer: bool) -> float | int:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        accepted = "an int" if integer else "a number"
        raise ValueError(f"`{what}` must be {accepted}, but got {value!r}")
    return int(value) if integer else float(value)


class _Numeric:
    """Shared behaviour of the three numeric ranges (fields: low, high, log, limits)."""

    low: Any
    high: Any
    log: bool
    limits: Any
    when: Any

    def _validate(self, integer: bool) -> None:
        object.__setattr__(self, "when", normalize_when(self.when))
        low = _number(self.low, "low", integer)
        high = _number(self.high, "high", integer)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"`low` and `high` must be finite, but got ({low=}, {high=})")
        if not low < high:
            raise ValueError(f"`low < high` must hold, but got ({low=}, {high=})")
        floor, rule = (1, "`low >= 1`") if integer else (math.ulp(0.0), "`low > 0`")
        if self.log and low < floor:
            raise ValueError(f"{rule} must hold on a log scale, but got {low=}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if self.limits is not None:
            object.__setattr__(self, "limits", self._check_limits(integer, floor, rule))

    def _check_limits(self, integer: bool, floor: float, rule: str) -> tuple:
        given = self.limits
        if isinstance(given, str | bytes) or not hasattr(given, "__len__") or len(given) != 2:
            raise ValueError(f"`limits` must be a (lo, hi) pair or None, but got {given!r}")
        lo = _number(given[0], "limits", integer)
        hi = _number(given[1], "limits", integer)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(
                f"`limits` must be finite (use limits=None for no hard bound), but got {given!r}"
            )
        if self.log and lo < floor:
            rule = rule.replace("low", "limits[0]")
            raise ValueError(f"{rule} must hold on a log scale, but got limits={(lo, hi)!r}")
        if not (lo <= self.low and self.high <= hi):
            raise ValueError(
                "`limits` must contain [low, high] (lo <= low and high <= hi), "
                f"but got limits={(lo, hi)!r} for (low={self.low!r}, high={self.high!r})"
            )
        return (lo, hi)

    @property
    def hard_limits(self) -> tuple[float, float]:
        """Bounds narrowing may never cross: ``limits``, else the domain (log > 0, log int >= 1)."""
        if self.limits is not None:
            return self.limits
        if self.log:
            return (1, math.inf) if isinstance(self.low, int) else (0.0, math.inf)
        return (-math.inf, math.inf)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a number inside [low, high] (an integral one for IntRange)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if isinstance(self.low, int) and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict, read back by :func:`param_from_dict`."""
        d = {"type": type(self).__name__, "low": self.low, "high": self.high}
        if isinstance(self, IntRange):
            d["log"] = self.log
        d["limits"] = None if self.limits is None else list(self.limits)
        if self.when is not None:
            d["when"] = when_dict(self.when)
        return d

    def replace_range(self, low: float, high: float):
        """The same parameter (limits kept) over [low, high]; ints rounded outward."""
        if isinstance(self.low, int):
            low, high = math.floor(low), math.ceil(high)
        return dataclasses.replace(self, low=low, high=high)

    def short(self) -> str:
        """The range in 3 significant digits, without limits: ``LogUniform(0.00411, 0.343)``."""
        return f"{type(self).__name__}({_short(self.low)}, {_short(self.high)})"

    def __str__(self) -> str:
        args = [_fmt(self.low), _fmt(self.high)]
        if isinstance(self, IntRange) and self.log:
            args.append("log=True")
        if self.limits is not None:
            args.append(f"limits=({_fmt(self.limits[0])}, {_fmt(self.limits[1])})")
        if self.when is not None:
            args.append(f"when={when_dict(self.when)!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    __repr__ = __str__


@dataclass(frozen=True, repr=False)
class LogUniform(_Numeric):
    """A float sampled uniformly on a log scale, as 6-5 samples ``lr = 10 ** U(-6, -2)``."""

    low: float
    high: float
    _: KW_ONLY
    limits: tuple[float, float] | None = None
    when: dict[str, Any] | None = None  # active only when these choices were taken
    log: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self._validate(integer=False)

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=True)


@dataclass(frozen=True, repr=False)
class Uniform(_Numeric):
    """A float sampled uniformly, e.g. a dropout ratio in [0, 0.5]."""

    low: float
    high: float
    _: KW_ONLY
    limits: tuple[float, float] | None = None
    when: dict[str, Any] | None = None  # active only when these choices were taken
    log: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._validate(integer=False)

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=False)


@dataclass(frozen=True, repr=False)
class IntRange(_Numeric):
    """An int in [low, high], optionally on a log scale (layer sizes, batch sizes)."""

    low: int
    high: int
    _: KW_ONLY
    log: bool = False
    limits: tuple[int, int] | None = None
    when: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.log, bool):
            raise ValueError(f"`log` must be True or False, but got {self.log!r}")
        self._validate(integer=True)

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and reads a pandas NaN as None."""
    if a is None or b is None:
        return (a is None or _is_nan(a)) and (b is None or _is_nan(b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


@dataclass(frozen=True, repr=False)
class Categorical:
    """One of a fixed tuple of choices (str, int, float, bool or None), kept in order."""

    choices: tuple[str | int | float | bool | None, ...]
    _: KW_ONLY
    when: dict[str, Any] | None = None  # active only when these choices were taken
    log: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", normalize_when(self.when))
        given = self.choices
        if isinstance(given, str | bytes | Mapping) or not hasattr(given, "__iter__"):
            raise ValueError(f"`choices` must be a tuple of values, but got {given!r}")
        choices = tuple(given)
        if not choices:
            raise ValueError("`choices` must not be empty")
        for i, c in enumerate(choices):
            if not isinstance(c, _CHOICE_TYPES) or _is_nan(c):
                raise ValueError(
                    f"`choices` must be str, int, float (not NaN), bool or None, but got {c!r}"
                )
            if any(c == d for d in choices[:i]):
                raise ValueError(
                    "`choices` must not repeat a value (1 == 1.0 == True in Python), "
                    f"but got {c!r} after an equal choice in {choices!r}"
                )
        object.__setattr__(self, "choices", choices)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices (True is not 1 here)."""
        return any(_same(c, value) for c in self.choices)

    def to_optuna(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.choices)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict, read back by :func:`param_from_dict`."""
        d = {"type": "Categorical", "choices": list(self.choices)}
        return d if self.when is None else {**d, "when": when_dict(self.when)}

    def short(self) -> str:
        """The choices, short: ``Categorical(sgd, momentum)``."""
        return f"Categorical({', '.join(_short(c) for c in self.choices)})"

    def __str__(self) -> str:
        when = "" if self.when is None else f", when={when_dict(self.when)!r}"
        return f"Categorical({self.choices!r}{when})"

    __repr__ = __str__


Param = LogUniform | Uniform | IntRange | Categorical
_TYPES: dict[str, type] = {t.__name__: t for t in (LogUniform, Uniform, IntRange, Categorical)}
_ACCEPTED = "LogUniform, Uniform, IntRange or Categorical"


def param_from_dict(d: Mapping[str, Any]) -> Param:
    """Rebuild a parameter from its ``to_dict()`` form; unknown or missing keys are errors."""
    if not isinstance(d, Mapping) or d.get("type") not in _TYPES:
        got = d.get("type") if isinstance(d, Mapping) else d
        raise ValueError(f"`type` must be one of {_ACCEPTED}, but got {got!r}")
    cls = _TYPES[d["type"]]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "_"}
    args = {k: v for k, v in d.items() if k != "type"}
    if unknown := sorted(set(args) - set(fields)):
        raise ValueError(f"unknown keys {unknown} for {cls.__name__} (accepted: {sorted(fields)})")
    no_default = dataclasses.MISSING
    if missing := sorted(n for n, f in fields.items() if f.default is no_default and n not in args):
        raise ValueError(f"missing keys {missing} for {cls.__name__}")
    if isinstance(args.get("limits"), list):
        args["limits"] = tuple(args["limits"])
    return cls(**args)


class SearchSpace(Mapping[str, Param]):
    """An immutable, ordered mapping of parameter name to range.

    >>> space = SearchSpace(lr=LogUniform(1e-6, 1e-2), weight_decay=LogUniform(1e-8, 1e-4))
    >>> space["lr"]
    LogUniform(1e-06, 0.01)
    >>> space.names
    ('lr', 'weight_decay')
    >>> SearchSpace.from_dict(space.to_dict()) == space
    True
    >>> space.replace(lr=LogUniform(1e-4, 1e-2))
    SearchSpace(lr=LogUniform(0.0001, 0.01), weight_decay=LogUniform(1e-08, 0.0001))
    """

    __slots__ = ("_params",)
    _params: Mapping[str, Param]

    def __init__(self, params: Mapping[str, Param] | None = None, /, **kwargs: Param) -> None:
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(
                f"search space: params must be a mapping of name to {_ACCEPTED}, "
                f"but got {type(params).__name__}"
            )
        merged: dict[str, Param] = {}
        for source in (params or {}, kwargs):
            for name, param in source.items():
                if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                    raise ValueError(
                        f"search space: parameter name {name!r} must be a Python identifier"
                    )
                if name in merged:
                    raise ValueError(f"search space: parameter {name!r} is given twice")
                if not isinstance(param, Param):
                    raise ValueError(
                        f"search space: {name!r} must be a {_ACCEPTED}, "
                        f"but got {type(param).__name__} ({param!r})"
                    )
                merged[name] = param
        if not merged:
            raise ValueError(
                "search space: at least one parameter is required, "
                "e.g. SearchSpace(lr=LogUniform(1e-6, 1e-2))"
            )
        check_conditions(merged, strict=not isinstance(params, _Known))
        object.__setattr__(self, "_params", MappingProxyType(merged))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SearchSpace is immutable; use replace(**params)")

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return dict(self._params) == dict(other._params)

    def __hash__(self) -> int:
        return hash(frozenset(self._params.items()))

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(f'{n}={p}' for n, p in self._params.items())})"

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names, in definition order."""
        return tuple(self._params)

    def to_optuna(self) -> dict[str, BaseDistribution]:
        """The fixed distributions a worker passes to ``study.ask``."""
        return {name: param.to_optuna() for name, param in self._params.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A JSON-able ``{name: param dict}``, read back by :meth:`from_dict`."""
        return {name: param.to_dict() for name, param in self._params.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> SearchSpace:
        """Rebuild from :meth:`to_dict`; errors are prefixed with the parameter's name."""
        if not isinstance(d, Mapping):
            raise ValueError(f"search space: expected a dict of parameters, but got {d!r}")
        params = {}
        for name, pd in d.items():
            try:
                params[name] = param_from_dict(pd)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return cls(_Known(params))

    def replace(self, **params: Param) -> SearchSpace:
        """A copy with some parameters replaced; unknown names are an error (typo guard). A new
        range without ``when`` keeps the old one's: a condition belongs to the space."""
        if unknown := sorted(set(params) - set(self._params)):
            raise ValueError(
                f"search space: cannot replace unknown parameter(s) {unknown} "
                f"(known: {', '.join(self._params)})"
            )
        for name, p in params.items():
            if p.when is None and self._params[name].when is not None:
                params[name] = dataclasses.replace(p, when=self._params[name].when)
        return SearchSpace(_Known({**self._params, **params}))


class _Known(dict):
    """Params already checked once (stored, or narrowed): a condition may name a choice that
    narrowing dropped since, which only leaves its parameter inactive."""
