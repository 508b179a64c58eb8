"""Risk limits: one immutable, validated configuration, loaded from a YAML or TOML file plus overrides.

Every numeric limit is optional (``None`` = not enforced) and must be non-negative.  Quantities and
tick/lot sizes are ``Decimal`` (compared exactly); money amounts, ratios and bps are floats because
the engine compares them in float arithmetic on its hot path.  See docs/RISK.md for the file format.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from trading.risk.errors import RiskConfigError

# Field kinds (in each field's metadata): how a raw value is coerced and which range it must lie in.
_DEC = "decimal >= 0"
_DEC_POS = "decimal > 0"
_NUM = "number >= 0"
_NUM_POS = "number > 0"
_FRACTION = "number in (0, 1]"
_UNIT = "number in [0, 1]"
_PROB = "number in (0, 1)"
_INT = "integer >= 0"
_INT_POS = "integer > 0"
_HOUR = "integer in [0, 23]"
_ACTION = "'reducing' or 'halted'"


def _f(kind: str, default: Any = None) -> Any:
    return field(default=default, metadata={"kind": kind})


@dataclass(frozen=True, slots=True)
class SymbolLimits:
    """Per-symbol rules; a field left ``None`` falls back to ``symbol_defaults`` (then to the instrument)."""

    tick_size: Decimal | None = _f(_DEC_POS)
    lot_size: Decimal | None = _f(_DEC_POS)
    collar_bps: float | None = _f(_NUM)
    max_order_quantity: Decimal | None = _f(_DEC)
    max_order_notional: float | None = _f(_NUM)
    max_position: Decimal | None = _f(_DEC)  # absolute quantity, account-wide


@dataclass(frozen=True, slots=True)
class ExposureLimits:
    """Notional exposure limits of a group (an asset or a sector)."""

    max_gross_exposure: float | None = _f(_NUM)
    max_net_exposure: float | None = _f(_NUM)


@dataclass(frozen=True, slots=True)
class StrategyLimits:
    max_gross_exposure: float | None = _f(_NUM)
    max_net_exposure: float | None = _f(_NUM)
    max_open_orders: int | None = _f(_INT)
    max_orders_per_second: int | None = _f(_INT)
    max_orders_per_minute: int | None = _f(_INT)
    capital: float | None = _f(_NUM_POS)  # allocated capital: enables the strategy's drawdown tiers
    daily_loss_limit: float | None = _f(_NUM)


@dataclass(frozen=True, slots=True)
class AccountLimits:
    max_gross_exposure: float | None = _f(_NUM)
    max_net_exposure: float | None = _f(_NUM)
    max_open_orders: int | None = _f(_INT)
    max_leverage: float | None = _f(_NUM)
    margin_rate: float = _f(_NUM_POS, 1.0)  # margin per unit of notional; 1.0 = fully funded cash account


@dataclass(frozen=True, slots=True)
class DrawdownLimits:
    """Drawdown tiers as fractions of peak equity (D1 < D2 < D3) and a daily loss limit in currency."""

    reduce_at: float | None = _f(_FRACTION)  # D1: size_multiplier applies
    size_multiplier: float = _f(_UNIT, 0.5)
    stop_entries_at: float | None = _f(_FRACTION)  # D2: REDUCING
    flatten_at: float | None = _f(_FRACTION)  # D3: HALTED + flatten
    daily_loss_limit: float | None = _f(_NUM)
    daily_loss_action: str = _f(_ACTION, "halted")
    day_start_hour_utc: int = _f(_HOUR, 0)


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    volatility_sigma: float | None = _f(_NUM_POS)  # halt a symbol on a return beyond N sigma
    volatility_window: int = _f(_INT_POS, 100)  # returns in the rolling window
    volatility_min_samples: int = _f(_INT_POS, 30)
    volatility_min_move_bps: float = _f(_NUM, 0.0)  # floor so a flat market's tiny sigma does not trip
    cooldown_s: float = _f(_NUM, 300.0)
    stale_after_s: float | None = _f(_NUM_POS, 60.0)  # no valid tick for this long: stale


@dataclass(frozen=True, slots=True)
class LiquidationLimits:
    """Impact limits of the emergency liquidator's child orders."""

    max_child_notional: float | None = _f(_NUM_POS)
    max_volume_fraction: float | None = _f(_FRACTION)  # of the volume seen in the last volume_window_s
    volume_window_s: float = _f(_NUM_POS, 300.0)
    interval_s: float = _f(_NUM, 10.0)  # spacing of child orders (their ``ts``)


@dataclass(frozen=True, slots=True)
class VarSettings:
    confidence: float = _f(_PROB, 0.99)
    horizon_days: float = _f(_NUM_POS, 1.0)  # scenarios are taken as 1-day returns; sqrt-time scaling
    simulations: int = _f(_INT_POS, 10_000)
    seed: int = _f(_INT, 0)


def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True)
class RiskLimits:
    """All limits of one account. Build with :meth:`from_dict` or :func:`load_limits`; validated on creation."""

    restricted_symbols: frozenset[str] = frozenset()
    duplicate_window_s: float = _f(_NUM, 1.0)
    sector_map: Mapping[str, str] = field(default_factory=_empty)  # symbol -> sector (or asset class)
    symbol_defaults: SymbolLimits = SymbolLimits(collar_bps=1000.0)
    symbols: Mapping[str, SymbolLimits] = field(default_factory=_empty)
    account: AccountLimits = AccountLimits()
    strategy_defaults: StrategyLimits = StrategyLimits()
    strategies: Mapping[str, StrategyLimits] = field(default_factory=_empty)
    assets: Mapping[str, ExposureLimits] = field(default_factory=_empty)  # base asset ("BTC") -> limits
    sectors: Mapping[str, ExposureLimits] = field(default_factory=_empty)
    drawdown: DrawdownLimits = DrawdownLimits()
    breakers: BreakerLimits = BreakerLimits()
    liquidation: LiquidationLimits = LiquidationLimits()
    var: VarSettings = VarSettings()

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RiskLimits":
        """Parse a plain mapping (a loaded file); raises RiskConfigError naming the bad key."""
        return _parse_limits(data)

    def to_dict(self) -> dict[str, Any]:
        """The plain-mapping form (``from_dict(to_dict())`` round-trips)."""
        return _to_plain(self)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "RiskLimits":
        """A new validated RiskLimits with ``overrides`` deep-merged over these limits."""
        return RiskLimits.from_dict(_merge(self.to_dict(), overrides))

    def for_symbol(self, symbol: str) -> SymbolLimits:
        """The symbol's limits with ``symbol_defaults`` filled in."""
        own = self.symbols.get(symbol)
        if own is None:
            return self.symbol_defaults
        base = self.symbol_defaults
        return SymbolLimits(**{
            f.name: getattr(base, f.name) if getattr(own, f.name) is None else getattr(own, f.name)
            for f in dataclasses.fields(SymbolLimits)
        })

    def for_strategy(self, strategy: str) -> StrategyLimits:
        return self.strategies.get(strategy, self.strategy_defaults)


def load_limits(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RiskLimits:
    """Load limits from a ``.yaml``/``.yml`` or ``.toml`` file, deep-merging ``overrides`` over it."""
    path = Path(path)
    suffix = path.suffix.lower()
    text = path.read_text()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise RiskConfigError(f"{path}: unsupported limits file type {suffix!r} (use .yaml, .yml or .toml)")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise RiskConfigError(f"{path}: cannot parse: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RiskConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    if overrides:
        data = _merge(dict(data), overrides)
    return _parse_limits(data)


# ---------------------------------------------------------------------------------------------
# Parsing: coerce raw values (YAML/TOML/JSON types) to the field types, naming the key on error
# ---------------------------------------------------------------------------------------------

_SECTIONS = {
    "symbol_defaults": SymbolLimits, "account": AccountLimits, "strategy_defaults": StrategyLimits,
    "drawdown": DrawdownLimits, "breakers": BreakerLimits, "liquidation": LiquidationLimits, "var": VarSettings,
}
_MAPS = {"symbols": SymbolLimits, "strategies": StrategyLimits, "assets": ExposureLimits, "sectors": ExposureLimits}


def _parse_limits(data: Mapping[str, Any]) -> RiskLimits:
    if not isinstance(data, Mapping):
        raise RiskConfigError(f"limits: must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(RiskLimits)}
    for key in data:
        if key not in known:
            raise RiskConfigError(f"{key}: unknown key (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "restricted_symbols":
            if value is None:
                value = []
            if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(s, str) for s in value):
                raise RiskConfigError(f"restricted_symbols: must be a list of symbol strings, got {value!r}")
            kwargs[key] = frozenset(value)
        elif key == "sector_map":
            mapping = _mapping(key, value)
            for sym, sector in mapping.items():
                if not isinstance(sector, str) or not sector:
                    raise RiskConfigError(f"sector_map.{sym}: sector must be a non-empty string, got {sector!r}")
            kwargs[key] = MappingProxyType({str(k): v for k, v in mapping.items()})
        elif key == "duplicate_window_s":
            kwargs[key] = _coerce(key, _NUM, value)
        elif key in _SECTIONS:
            default = getattr(RiskLimits, key)  # the class-level default instance
            kwargs[key] = _parse_section(_SECTIONS[key], _mapping(key, value), key, default)
        else:  # one of _MAPS
            cls = _MAPS[key]
            kwargs[key] = MappingProxyType({
                str(name): _parse_section(cls, _mapping(f"{key}.{name}", sub), f"{key}.{name}", cls())
                for name, sub in _mapping(key, value).items()
            })
    return RiskLimits(**kwargs)


def _mapping(path: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RiskConfigError(f"{path}: must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _parse_section(cls: type, data: Mapping[str, Any], path: str, base: Any) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise RiskConfigError(f"{path}.{key}: unknown key (known: {', '.join(sorted(fields))})")
        kind = fields[key].metadata["kind"]
        if value is None:
            if fields[key].default is not None:  # a field with a real default cannot be switched off
                raise RiskConfigError(f"{path}.{key}: expected {kind}, got null")
            kwargs[key] = None
        else:
            kwargs[key] = _coerce(f"{path}.{key}", kind, value)
    return dataclasses.replace(base, **kwargs)


def _coerce(path: str, kind: str, value: Any) -> Any:
    if kind == _ACTION:
        if value not in ("reducing", "halted"):
            raise RiskConfigError(f"{path}: expected {kind}, got {value!r}")
        return value
    # bool is an int subclass: `true` where a number belongs is a typo, not 1
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise RiskConfigError(f"{path}: expected {kind}, got {type(value).__name__} {value!r}")
    if kind.startswith("integer"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise RiskConfigError(f"{path}: expected {kind}, got {value!r}")
        return value
    try:
        dec = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise RiskConfigError(f"{path}: expected {kind}, got {value!r}") from None
    if not dec.is_finite():
        raise RiskConfigError(f"{path}: expected a finite {kind}, got {value!r}")
    return dec if kind.startswith("decimal") else float(dec)


# ---------------------------------------------------------------------------------------------
# Validation of a built RiskLimits (also covers direct construction in code)
# ---------------------------------------------------------------------------------------------


def _validate(limits: RiskLimits) -> None:
    _check_fields(limits, "")
    for sub in ("symbol_defaults", "account", "strategy_defaults", "drawdown", "breakers", "liquidation", "var"):
        _check_fields(getattr(limits, sub), sub)
    for name in ("symbols", "strategies", "assets", "sectors"):
        for key, sub in getattr(limits, name).items():
            _check_fields(sub, f"{name}.{key}")
    dd = limits.drawdown
    tiers = [(n, getattr(dd, n)) for n in ("reduce_at", "stop_entries_at", "flatten_at") if getattr(dd, n) is not None]
    for (n1, v1), (n2, v2) in zip(tiers, tiers[1:]):
        if not v1 < v2:
            raise RiskConfigError(f"drawdown.{n2}: must be greater than drawdown.{n1} ({v2} <= {v1})")
    if limits.sectors:
        for sym in sorted(limits.symbols):
            if sym not in limits.sector_map:
                raise RiskConfigError(f"sector_map.{sym}: symbol {sym} has no sector but sector limits are configured")
        used = set(limits.sector_map.values())
        for sector in limits.sectors:
            if sector not in used:
                raise RiskConfigError(f"sectors.{sector}: no symbol in sector_map belongs to this sector")


def _check_fields(obj: Any, path: str) -> None:
    prefix = f"{path}." if path else ""
    for f in dataclasses.fields(obj):
        kind = f.metadata.get("kind")
        if kind is None:
            continue
        value = getattr(obj, f.name)
        if value is None and f.default is None:
            continue
        _check_range(f"{prefix}{f.name}", kind, value)


def _check_range(path: str, kind: str, v: Any) -> None:
    if kind == _ACTION:
        ok = v in ("reducing", "halted")
    elif isinstance(v, bool):
        ok = False
    elif kind.startswith("integer"):
        ok = isinstance(v, int) and (v > 0 if kind == _INT_POS else 0 <= v <= 23 if kind == _HOUR else v >= 0)
    elif kind.startswith("decimal"):
        ok = isinstance(v, Decimal) and v.is_finite() and (v > 0 if kind == _DEC_POS else v >= 0)
    else:
        ok = isinstance(v, (int, float)) and math.isfinite(v) and {
            _NUM: v >= 0, _NUM_POS: v > 0, _FRACTION: 0 < v <= 1, _UNIT: 0 <= v <= 1, _PROB: 0 < v < 1,
        }[kind]
    if not ok:
        what = "negative" if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) and v < 0 else "invalid"
        raise RiskConfigError(f"{path}: {what} value {v!r}; expected {kind}")


# ---------------------------------------------------------------------------------------------
# Plain-mapping helpers
# ---------------------------------------------------------------------------------------------


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# public name: the stream keeps an operator's limit changes as one merged overrides document
merge_overrides = _merge


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, frozenset):
        return sorted(obj)
    return obj
