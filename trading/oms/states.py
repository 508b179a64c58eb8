"""The order state machine: which reported status may follow which.

Statuses are ``trading.records.OrderStatus``.  NEW is "created" (the intent is recorded, nothing has left);
SUBMITTING: handed to the venue; UNKNOWN: the request may or may not have reached the venue (timeout, 5xx,
dropped connection, an answer we could not parse) -- only asking the venue resolves it.

Fills are facts and are never refused by the state machine (a fill after a cancel is a race the venue won);
what the table governs is the status an order shows.
"""

from __future__ import annotations

from trading.records import OrderStatus as S

TERMINAL = frozenset((S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED))

_AT_VENUE = frozenset((S.ACKNOWLEDGED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED))

# current -> statuses that may follow it
TRANSITIONS: dict[S, frozenset[S]] = {
    S.NEW: frozenset((S.SUBMITTING, S.CANCELED, S.REJECTED)),  # canceled/rejected before anything was sent
    S.SUBMITTING: _AT_VENUE | {S.REJECTED, S.UNKNOWN, S.CANCEL_PENDING},
    S.ACKNOWLEDGED: frozenset((S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING, S.CANCELED, S.EXPIRED, S.UNKNOWN)),
    S.PARTIALLY_FILLED: frozenset((S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_PENDING, S.CANCELED, S.EXPIRED,
                                   S.UNKNOWN)),
    # a cancel in flight: the order can still fill, or the venue can refuse the cancel (back to working)
    S.CANCEL_PENDING: frozenset((S.CANCELED, S.FILLED, S.PARTIALLY_FILLED, S.ACKNOWLEDGED, S.EXPIRED, S.UNKNOWN,
                                 S.CANCEL_PENDING)),
    # only the venue's answer to a query (or its own report) resolves an unknown order
    S.UNKNOWN: _AT_VENUE | {S.REJECTED, S.UNKNOWN, S.CANCEL_PENDING},
}
for _t in TERMINAL:
    TRANSITIONS[_t] = frozenset()


def can_follow(current: S, reported: S) -> bool:
    return reported in TRANSITIONS[current]


def is_terminal(status: S) -> bool:
    return status in TERMINAL
