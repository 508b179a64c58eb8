"""The engine's exposure book: incrementally kept exposure aggregates per leg (positions are booked by
trading.ledger.Holding, the one average-cost implementation).

A *leg* is one symbol inside a scope (the account, or one strategy): its position ``q`` and the
quantities still pending on open orders, ``b`` (buys) and ``s`` (sells).  If every pending order
filled, the position would lie anywhere in [q - s, q + b], so the leg's worst-case exposures at
mark m are: gross ``max(|q+b|, |q-s|) * m``, net long ``(q+b) * m`` and net short ``(q-s) * m``.
Each leg caches its contributions and a :class:`Totals` per scope holds their sums, so a check
or a price update touches O(1) numbers whatever the number of open orders.  Quantities are kept
as Decimal (exact position limits) with float shadows for the exposure arithmetic.
"""

from __future__ import annotations

from decimal import Decimal


ZERO = Decimal(0)


class Totals:
    """Sums over a scope's legs: worst-case gross/net-long/net-short, and the positions' own
    market value (``mv``) and gross value (``gp``)."""

    __slots__ = ("g", "nl", "ns", "mv", "gp")

    def __init__(self) -> None:
        self.g = self.nl = self.ns = self.mv = self.gp = 0.0

    @property
    def net(self) -> float:
        """Worst-case absolute net exposure."""
        return max(abs(self.nl), abs(self.ns))


class Leg:
    __slots__ = ("q", "b", "s", "qf", "bf", "sf", "g", "nl", "ns", "mv", "gp", "totals")

    def __init__(self, totals: tuple[Totals, ...]) -> None:
        self.q = self.b = self.s = ZERO
        self.qf = self.bf = self.sf = 0.0
        self.g = self.nl = self.ns = self.mv = self.gp = 0.0
        self.totals = totals

    def add(self, dq: Decimal = ZERO, db: Decimal = ZERO, ds: Decimal = ZERO) -> None:
        if dq:
            self.q += dq
            self.qf = float(self.q)
        if db:
            self.b += db
            self.bf = float(self.b)
        if ds:
            self.s += ds
            self.sf = float(self.s)

    def reduces(self, buy: bool, qty: Decimal) -> bool:
        """Would this order only move the position toward zero, even if all pending orders on its side fill?"""
        if buy:
            return self.q < 0 and self.q + self.b + qty <= 0
        return self.q > 0 and self.q - self.s - qty >= 0

    def refresh(self, mark: float) -> None:
        """Recompute the contributions at ``mark`` and push the differences into the totals."""
        nl = (self.qf + self.bf) * mark
        ns = (self.qf - self.sf) * mark
        g = max(abs(nl), abs(ns))
        mv = self.qf * mark
        gp = abs(mv)
        dg, dnl, dns, dmv, dgp = g - self.g, nl - self.nl, ns - self.ns, mv - self.mv, gp - self.gp
        for t in self.totals:
            t.g += dg
            t.nl += dnl
            t.ns += dns
            t.mv += dmv
            t.gp += dgp
        self.g, self.nl, self.ns, self.mv, self.gp = g, nl, ns, mv, gp

