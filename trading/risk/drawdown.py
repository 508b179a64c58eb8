"""Drawdown tiers and the daily loss limit: equity against its peak and the day's start, per account and
strategy, and the size multiplier they impose.  Part of RiskEngine (a mixin over its state)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from trading.records import NS_PER_S
from trading.risk.book import ZERO
from trading.risk.states import HALTED, REDUCING

DAY_NS = 86_400 * NS_PER_S


class DrawdownTiers:
    """Drawdown and daily-loss assessment (state lives on RiskEngine)."""

    # -----------------------------------------------------------------------------------------
    # Drawdown tiers and daily loss
    # -----------------------------------------------------------------------------------------

    def _equity(self) -> float:
        return self._cash_f + self._acct.mv

    def _strategy_pnl(self, strat: str) -> float:
        t = self._strat_tot.get(strat)
        mv = t.mv if t is not None else 0.0
        return float(self._s_realized.get(strat, ZERO) - self._s_fees.get(strat, ZERO)
                     - self._s_cost.get(strat, ZERO)) + mv

    def _assess(self, now: int, strategies: Iterable[str]) -> None:
        dd = self._limits.drawdown
        equity = self._equity()
        if equity > self._peak:
            self._peak = equity
        self._mult = self._tiers(self._acct_scope, None, equity, self._peak, equity - self._day_start_equity,
                                 dd.daily_loss_limit, now)
        for strat in strategies:
            sl = self._strategy_limits(strat)
            if sl.capital is None and sl.daily_loss_limit is None:
                continue
            pnl = self._strategy_pnl(strat)
            daily = pnl - self._s_day_start.setdefault(strat, 0.0)
            if sl.capital is None:
                eq = peak = 0.0  # no capital: daily loss only
            else:
                eq = sl.capital + pnl
                peak = self._s_peak[strat] = max(self._s_peak.get(strat, sl.capital), eq)
            self._s_mult[strat] = self._tiers(f"strategy:{strat}", strat, eq, peak, daily, sl.daily_loss_limit, now)

    def _tiers(self, scope_: str, strategy: str | None, equity: float, peak: float, daily: float,
               daily_limit: float | None, now: int) -> float:
        """Apply the drawdown tiers and daily loss limit to one scope; returns its size multiplier."""
        dd = self._limits.drawdown
        mult = 1.0
        if peak > 0:
            drawdown = (peak - equity) / peak
            if dd.flatten_at is not None and drawdown >= dd.flatten_at:
                if not self._states.has(scope_, "drawdown_flatten"):
                    text = drawdown_text(drawdown, peak)
                    self._states.add(scope_, "drawdown_flatten", HALTED, f"{text} >= {dd.flatten_at:.2%}", now)
                    request = self._flatten_request(scope_, strategy, f"drawdown_flatten: {text}", now, True)
                    if self._on_flatten is not None:
                        self._on_flatten(request)
            elif dd.stop_entries_at is not None and drawdown >= dd.stop_entries_at:
                if not self._states.has(scope_, "drawdown_stop_entries"):
                    self._states.add(scope_, "drawdown_stop_entries", REDUCING,
                                     f"{drawdown_text(drawdown, peak)} >= {dd.stop_entries_at:.2%}", now)
            if dd.reduce_at is not None and drawdown >= dd.reduce_at:
                mult = dd.size_multiplier
        if daily_limit is not None and daily <= -daily_limit and not self._states.has(scope_, "daily_loss_limit"):
            level = HALTED if dd.daily_loss_action == "halted" else REDUCING
            self._states.add(scope_, "daily_loss_limit", level, f"daily P&L {daily:.2f} <= -{daily_limit}", now)
        return mult

    def size_multiplier(self, strategy: str | None = None) -> Decimal:
        """1 normally; below 1 while the account (or the strategy) is past drawdown tier D1."""
        m = self._mult if strategy is None else min(self._mult, self._s_mult.get(strategy, 1.0))
        return Decimal(1) if m == 1.0 else Decimal(repr(m))


def drawdown_text(drawdown: float, peak: float) -> str:
    # Built only when a tier is crossed: _tiers runs on every price, and formatting this string each
    # time was a measurable share of the per-tick cost.
    return f"drawdown {drawdown:.2%} from peak {peak:.2f}"
