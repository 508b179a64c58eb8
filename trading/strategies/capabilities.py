"""What a strategy slot can do beyond the Strategy interface, declared as Protocols.

The stream (``streaming.trader.Trader``) serves some strategies differently: it polls a model
registry for some, refreshes target weights for others, lets some record their own signals and
warms some up without scoring.  A strategy says which by implementing these Protocols; the Trader
resolves them once, when a slot is created or swapped, with ``isinstance`` -- never per tick
(a runtime-checkable Protocol check costs microseconds).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ModelBacked(Protocol):
    """Scores with models from a registry; the worker polls ``models()`` for new versions.

    Each model has ``refresh()`` (called off the event loop), ``alias`` and ``status`` (a dict with
    ``version`` and ``warning``).  ``view()`` is what GET /model shows; ``flat_reason`` says why the
    slot holds no position (None when it trades).
    """

    flat_reason: str | None

    def models(self) -> list[Any]: ...

    def view(self) -> dict: ...


@runtime_checkable
class WeightsBacked(Protocol):
    """Trades target weights read from the system of record; the worker calls ``refresh_weights()``
    off the event loop (it queries only when due).  ``view()`` and ``flat_reason`` as for ModelBacked."""

    flat_reason: str | None

    def refresh_weights(self) -> bool: ...

    def view(self) -> dict: ...


@runtime_checkable
class OwnSignals(Protocol):
    """Records its own signal rows (one per scored bar, shadow rows included) into the stream's batch,
    instead of the stream recording one per target change."""

    def bind_signals(self, slot: str, account: str, sink: list) -> None: ...


@runtime_checkable
class Replayable(Protocol):
    """Can replay warm-up bars without acting on them: the stream sets ``replaying`` while it feeds
    the bars read back at start-up (features are built, no model is called)."""

    replaying: bool



@runtime_checkable
class WarmsFromHistory(Protocol):
    """Needs a long history before it can decide (ML features: about a day of 1m bars) and can rebuild that
    state from stored bars while it runs: history that arrives after the start (a first start's backfill)
    ends the warm-up at once instead of a day later. ``cold_symbols``: symbols it cannot decide on yet."""

    cold_symbols: set[str]
    warmup_bars: int

    def warm_snapshot(self) -> tuple[int, list, Any]: ...

    def build_warm_state(self, bars: list, params: Any) -> Any: ...

    def install_warm_state(self, state: Any, mark: int) -> bool: ...


@runtime_checkable
class FillHistory(Protocol):
    """Keeps state that the slot's own fills determine (e.g. tax lots): at start-up the stream hands it
    the slot's stored fills, oldest first, before any bar -- as it rebuilds positions from them."""

    def restore_fills(self, fills: list) -> None: ...
