"""The strategy interface: declared parameters, event callbacks returning targets, snapshot/restore.

A strategy answers ``on_bar(bar, ctx)`` (and ``on_tick``/``on_fill``) with a list of
``TargetPosition``: "from now on I want this signed exposure in this symbol".  It returns a target
only when its decision changes; the engine sizes targets into quantities and orders.

Fast path: a strategy whose decisions depend only on the bars (not on fills or equity) may also
implement ``target_positions(frame, symbol)``: the same decisions for a whole frame of bars at
once, as a float array holding the target at bars where a decision is made and NaN elsewhere.
It must continue from, and leave behind, the same state as calling ``on_bar`` bar by bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence

import numpy as np
import polars as pl

from trading.records import Bar, Fill, Tick

if TYPE_CHECKING:
    from trading.sizing import Sizer


class StrategyError(ValueError):
    """A strategy was asked for with a bad name, parameter or value."""


class UnknownParameterError(StrategyError):
    pass


class ParameterValueError(StrategyError):
    pass


@dataclass(frozen=True)
class Param:
    """A tunable parameter: ``Param(int, 10, 2, 500)``, ``Param(float, 2.0, 0.1, 5.0)``,
    ``Param("categorical", "sma", choices=("sma", "ema"))``.  ``suggest`` maps it onto an Optuna trial.
    """

    type: Any  # int, float or "categorical"
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in (int, float, "categorical"):
            raise StrategyError(f"Param type must be int, float or 'categorical', got {self.type!r}")
        if self.type == "categorical" and not self.choices:
            raise StrategyError("a categorical Param needs choices")

    def validate(self, name: str, value: Any) -> Any:
        """Coerce ``value`` (possibly a CLI string) and check it; raise naming the parameter."""
        if self.type == "categorical":
            for c in self.choices:
                if value == c or (isinstance(value, str) and value.strip().lower() == str(c).lower()):
                    return c
            raise ParameterValueError(f"parameter {name}={value!r} is not one of {list(self.choices)}")
        try:
            if isinstance(value, bool):
                raise TypeError
            if self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise TypeError
                v: float = int(value.strip()) if isinstance(value, str) else int(value)
            else:
                v = float(value)
        except (TypeError, ValueError):
            raise ParameterValueError(f"parameter {name}={value!r} is not a valid {self.type.__name__}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise ParameterValueError(f"parameter {name}={value!r} must be finite")
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            raise ParameterValueError(f"parameter {name}={v!r} is out of range [{self.low}, {self.high}]")
        return v

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw a value from an Optuna trial (duck-typed: suggest_int / suggest_float / suggest_categorical)."""
        if self.type is int:
            # windows span decades (2 to 50,000 bars): drawn evenly on a log scale, or nearly every draw is
            # a window longer than the data a study has
            lo, hi = int(self.low), int(self.high)
            return trial.suggest_int(name, lo, hi, log=lo >= 1 and hi >= 100 * lo)
        if self.type is float:
            return trial.suggest_float(name, float(self.low), float(self.high))
        return trial.suggest_categorical(name, list(self.choices))


@dataclass(frozen=True, slots=True)
class TargetPosition:
    """Signed target exposure in ``symbol``: +1 long, -1 short, 0 flat, or a portfolio weight.
    The engine's sizer turns it into a quantity.
    """

    symbol: str
    target: float


class Context(Protocol):
    """What a strategy may ask the engine about the account while handling an event."""

    ts: int

    def position(self, symbol: str) -> Decimal: ...

    def price(self, symbol: str) -> Decimal | None: ...

    def equity(self) -> Decimal: ...

    def symbols(self) -> list[str]: ...


class Strategy:
    """Base class.  Subclasses set ``name``, ``version``, ``params`` and override the callbacks."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    params: ClassVar[dict[str, Param]] = {}
    # the slot's own sizer (e.g. a portfolio slot allocated a share of equity); None: the engine's.
    # The engine reads it when the slot is created or swapped.
    sizer: Sizer | None = None

    def __init__(self, **params: Any) -> None:
        self.p = self.validate_params(params)
        self.reset()

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(cls.params))
        if unknown:
            raise UnknownParameterError(
                f"unknown parameter {unknown[0]!r} for strategy {cls.name!r} (known: {', '.join(sorted(cls.params)) or 'none'})"
            )
        values = {k: spec.default for k, spec in cls.params.items()}
        for k, v in params.items():
            values[k] = cls.params[k].validate(k, v)
        cls.check_params(values)
        return values

    @classmethod
    def check_params(cls, values: dict[str, Any]) -> None:
        """Cross-parameter rules (e.g. fast < slow); raise ParameterValueError naming them."""

    def reset(self) -> None:
        """(Re)create the per-run state."""

    @property
    def warmup_bars(self) -> int:
        """Bars of history this strategy needs before its decisions mean anything."""
        return 0

    # -- event callbacks ------------------------------------------------------------------
    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        return []

    def on_tick(self, tick: Tick, ctx: Context) -> list[TargetPosition]:
        return []

    def on_fill(self, fill: Fill, ctx: Context) -> list[TargetPosition]:
        return []

    # -- fast path ------------------------------------------------------------------------
    def target_positions(self, frame: pl.DataFrame, symbol: str) -> np.ndarray | None:
        """Decisions for a frame of one symbol's bars (NaN = none), or None if not supported."""
        return None

    # -- state ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """JSON-friendly state: enough for ``restore`` to continue exactly where this left off."""
        return {"name": self.name, "version": self.version, "params": dict(self.p), "state": self._state()}

    def restore(self, snap: dict) -> None:
        if snap.get("name") != self.name:
            raise StrategyError(f"snapshot is of strategy {snap.get('name')!r}, not {self.name!r}")
        self.p = self.validate_params(snap["params"])
        self.reset()
        self._load_state(snap["state"])

    def _state(self) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        pass

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.p.items())
        return f"{type(self).__name__}[{self.name} v{self.version}]({args})"


def emit_changes(states: np.ndarray, previous: float) -> np.ndarray:
    """Targets at bars where ``states`` differs from the bar before (``previous`` before the first)."""
    out = np.full(len(states), np.nan)
    if len(states):
        before = np.concatenate(([previous], states[:-1]))
        changed = states != before
        out[changed] = states[changed]
    return out


def forward_fill(codes: np.ndarray, initial: float) -> np.ndarray:
    """Replace NaN by the last non-NaN value (``initial`` before the first)."""
    idx = np.where(np.isnan(codes), 0, np.arange(1, len(codes) + 1))
    np.maximum.accumulate(idx, out=idx)
    filled = np.concatenate(([initial], codes))[idx]
    return filled


def closes(frame: pl.DataFrame) -> np.ndarray:
    return frame["close"].to_numpy().astype(np.float64, copy=False)


def column(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy().astype(np.float64, copy=False)


def per_symbol(states: dict[str, Any], symbol: str, factory: Any) -> Any:
    st = states.get(symbol)
    if st is None:
        st = states[symbol] = factory()
    return st


__all__: Sequence[str] = [
    "Context", "Param", "ParameterValueError", "Strategy", "StrategyError", "TargetPosition",
    "UnknownParameterError", "emit_changes", "forward_fill",
]
