"""Faust records generated from the domain dataclasses of trading/records.py: one definition, not two.

Each faust Record class has the dataclass's fields, in order, with Decimals carried as strings (exact,
and orjson-friendly) and enums as their values.  ``to_record`` / ``to_domain`` convert between the two.
Records the domain has no dataclass for (signals, control commands, dead letters, ...) are declared
here as plain faust Records.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from decimal import Decimal
from enum import Enum
from typing import Any, Optional

import faust

from streaming import codec  # noqa: F401  (registers the orjson codec the records use)
from trading import records as dom

_OPTS = {"serializer": "orjson", "include_metadata": False, "isodates": False}


def _wire_type(tp: Any) -> tuple[Any, Any]:
    """(annotation on the wire, converter domain->wire or None) for one dataclass field type."""
    args = typing.get_args(tp)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), tp) if optional else tp
    if base is Decimal:
        wire, conv = str, str
    elif isinstance(base, type) and issubclass(base, Enum):
        wire, conv = str, (lambda e: e.value)
    elif base in (int, str, bool, float):
        wire, conv = base, None
    else:
        raise TypeError(f"no wire type for field type {tp!r}")
    return (Optional[wire] if optional else wire), conv


class _Spec:
    """How to convert one dataclass <-> its generated Record."""

    def __init__(self, cls: type, record: type, fields: list[tuple[str, Any, Any]],
                 checks: list[tuple[str, Any, Any, bool, bool]]) -> None:
        self.cls, self.record, self.fields = cls, record, fields  # (name, to_wire, to_domain)
        self.checks = checks  # (name, to_domain, wire type, optional, required): for from_data


_SPECS: dict[type, _Spec] = {}
_BY_RECORD: dict[type, _Spec] = {}


def _generate(cls: type, skip: tuple[str, ...] = ()) -> type:
    hints = typing.get_type_hints(cls, vars(dom))
    ann: dict[str, Any] = {}
    ns: dict[str, Any] = {}
    fields = []
    checks = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        wire, to_wire = _wire_type(hints[f.name])
        ann[f.name] = wire
        base = next((a for a in typing.get_args(hints[f.name]) if a is not type(None)), hints[f.name])
        required = False
        if f.default is not dataclasses.MISSING:
            ns[f.name] = to_wire(f.default) if (to_wire and f.default is not None) else f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            ns[f.name] = to_wire(f.default_factory()) if to_wire else f.default_factory()  # type: ignore[misc]
        else:
            required = True
        fields.append((f.name, to_wire, base if to_wire else None))
        checks.append((f.name, base if to_wire else None, base, type(None) in typing.get_args(hints[f.name]),
                       required))

    def body(n: dict) -> None:
        n["__annotations__"] = ann
        n["__module__"] = __name__
        n.update(ns)

    record = types.new_class(cls.__name__ + "Record", (faust.Record,), _OPTS, body)
    spec = _Spec(cls, record, fields, checks)
    _SPECS[cls] = _BY_RECORD[record] = spec
    return record


TickRecord = _generate(dom.Tick)
QuoteRecord = _generate(dom.Quote)
BarRecord = _generate(dom.Bar)
OrderRequestRecord = _generate(dom.OrderRequest)
OrderEventRecord = _generate(dom.OrderEvent)
FillRecord = _generate(dom.Fill)
PositionRecord = _generate(dom.Position, skip=("extra",))


def to_record(obj: Any) -> faust.Record:
    spec = _SPECS[type(obj)]
    kw = {}
    for name, to_wire, _ in spec.fields:
        v = getattr(obj, name)
        kw[name] = to_wire(v) if (to_wire is not None and v is not None) else v
    return spec.record(**kw)


class RecordError(ValueError):
    """A message that does not make a valid domain record (parked on the deadletter topic)."""


def to_domain(rec: faust.Record) -> Any:
    spec = _BY_RECORD[type(rec)]
    kw = {}
    for name, _, base in spec.fields:
        v = getattr(rec, name)
        if base is not None and v is not None:
            try:
                v = base(v)
            except Exception as exc:  # noqa: BLE001 -- decimal.InvalidOperation, ValueError of enums
                raise RecordError(f"{spec.cls.__name__}.{name}: bad value {v!r}") from exc
            if base is Decimal and not v.is_finite():
                raise RecordError(f"{spec.cls.__name__}.{name}: {v!r} is not finite")
        kw[name] = v
    return spec.cls(**kw)


def from_data(cls: type, data: Any) -> Any:
    """The domain record of a decoded wire dict: what ``to_domain(Record.from_data(data))`` gives, without
    building the faust Record (that was ~60% of decoding a tick), and with the field types checked, which
    Faust does not do (a string timestamp would only fail deep in the hot path).  Unknown keys are
    ignored, as Faust does; a missing field with a default takes the dataclass's default."""
    spec = _SPECS[cls]
    if type(data) is not dict:
        raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    kw = {}
    for name, conv, wire, optional, required in spec.checks:
        if name not in data:
            if required:
                raise RecordError(f"{cls.__name__}.{name}: missing")
            continue
        v = data[name]
        if v is None:
            if not optional:
                raise RecordError(f"{cls.__name__}.{name}: null")
        elif conv is not None:
            try:
                v = conv(str(v) if type(v) is float else v)  # a JSON number as Decimal: its shortest repr
            except Exception as exc:  # noqa: BLE001 -- decimal.InvalidOperation, ValueError of enums
                raise RecordError(f"{cls.__name__}.{name}: bad value {v!r}") from exc
            if conv is Decimal and not v.is_finite():
                raise RecordError(f"{cls.__name__}.{name}: {v!r} is not finite")
        elif type(v) is not wire and not (wire is float and type(v) is int):
            raise RecordError(f"{cls.__name__}.{name}: expected {wire.__name__}, got {type(v).__name__}")
        kw[name] = v
    return cls(**kw)


def to_data(obj: Any) -> dict:
    """The wire dict of a domain record (the fields of ``to_record(obj).to_representation()``), for
    encoding without building a faust Record."""
    out = {}
    for name, to_wire, _ in _SPECS[type(obj)].fields:
        v = getattr(obj, name)
        out[name] = to_wire(v) if (to_wire is not None and v is not None) else v
    return out


# -- records without a domain dataclass ------------------------------------------------------------

class Signal(faust.Record, **_OPTS):
    """A strategy's decision: target exposure in a symbol, with the model that made it."""

    signal_id: str
    account: str
    strategy: str  # engine slot
    symbol: str
    target: float
    ts: int
    model_name: str  # strategy class name, or the MLflow registered model
    model_version: str
    score: Optional[float] = None  # the model's raw score (ML strategies)
    shadow: bool = False  # a challenger's shadow signal: recorded, never traded


class Control(faust.Record, **_OPTS):
    """An operator action: kill_switch (flatten), resume, swap_strategy, set_limits, manual_order, cancel."""

    command_id: str
    action: str
    account: str
    who: str
    reason: str = ""
    flatten: bool = False
    slot: str = ""
    strategy: str = ""
    params: str = "{}"  # JSON object (strategy params, or limit overrides)
    ts: int = 0
    # manual_order (trading.oms.manual parses them; decimals as their text) and cancel
    symbol: str = ""
    side: str = ""
    quantity: str = ""
    order_type: str = ""
    price: str = ""
    client_order_id: str = ""


class RiskAlert(faust.Record, **_OPTS):
    account: str
    scope: str
    old: str
    new: str
    reason: str
    who: str
    ts: int


class DeadLetter(faust.Record, **_OPTS):
    topic: str
    partition: int
    offset: int
    key: str
    value: str
    error: str
    ts: int
