"""Read-only views of the risk engine: positions, metrics (the /risk page) and VaR/CVaR reports.
Part of RiskEngine (a mixin over its state)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trading.records import Position
from trading.risk.book import ZERO
from trading.risk.decisions import VarReport
from trading.risk.errors import RiskDataError
from trading.risk.var import METHODS, var_cvar, VarResult


class RiskViews:
    """Positions, metrics and VaR (state lives on RiskEngine)."""

    # -----------------------------------------------------------------------------------------
    # Views: positions, metrics, VaR
    # -----------------------------------------------------------------------------------------

    def positions(self) -> list[Position]:
        """Copies of the non-flat positions per (strategy, symbol)."""
        return [Position(self.account, sym, strat, h.qty, h.avg_price, h.realized, h.fees)
                for (strat, sym), h in self._positions.items() if h.qty != 0]

    def open_order_ids(self, strategy: str | None = None) -> list[str]:
        return [cid for cid, rec in self._orders.items()
                if not rec.terminal and (strategy is None or rec.order.strategy == strategy)]


    def metrics(self) -> dict:
        """A plain snapshot for the risk_metrics table: P&L, exposure, margin, states, counters, VaR."""
        now = self._clock()
        equity = self._equity()
        unrealized = self._acct.mv - float(self._cost)
        rate = self._limits.account.margin_rate
        margin_used = self._acct.gp * rate
        stale = sorted(s for s, ts in self._mark_ts.items() if now - ts > self._stale_ns)
        out: dict = {
            "ts": now, "account": self.account, "state": self.state.value,
            # why the account is not ACTIVE: each cause holding it (kill_switch, reconciliation, breakers...)
            "state_causes": {name: {"level": c.level.value, "detail": c.detail}
                             for name, c in self._states.causes(self._acct_scope).items()},
            "cash": float(self._cash), "equity": equity,
            "realized_pnl": float(self._realized), "unrealized_pnl": unrealized, "fees": float(self._fees),
            "total_pnl": equity - float(self._initial_cash), "daily_pnl": equity - self._day_start_equity,
            "peak_equity": self._peak,
            "drawdown": (self._peak - equity) / self._peak if self._peak > 0 else 0.0,
            "size_multiplier": self._mult,
            "gross_exposure": self._acct.gp, "net_exposure": self._acct.mv,
            "worst_case_gross_exposure": self._acct.g, "worst_case_net_exposure": self._acct.net,
            "leverage": self._acct.gp / equity if equity > 0 else math.inf,
            "margin_used": margin_used, "reserved": self._reserved,
            "margin_usage": (margin_used + self._reserved) / equity if equity > 0 else math.inf,
            "open_orders": self._open_count, "stale_symbols": stale,
            "halted_symbols": {sc.split(":", 1)[1]: sorted(self._states.causes(sc))
                               for sc in self._states.state if sc.startswith("symbol:")},
            "counters": dict(self.counters),
        }
        strategies = {}
        for strat, t in self._strat_tot.items():
            realized = float(self._s_realized.get(strat, ZERO))
            strategies[strat] = {
                "state": self._states.get(f"strategy:{strat}").value,
                "realized_pnl": realized, "unrealized_pnl": t.mv - float(self._s_cost.get(strat, ZERO)),
                "fees": float(self._s_fees.get(strat, ZERO)), "pnl": self._strategy_pnl(strat),
                "daily_pnl": self._strategy_pnl(strat) - self._s_day_start.get(strat, 0.0),
                "gross_exposure": t.gp, "net_exposure": t.mv, "open_orders": self._s_open[strat],
                "size_multiplier": min(self._mult, self._s_mult.get(strat, 1.0)),
            }
        out["strategies"] = strategies
        out["positions"] = [
            {"strategy": strat, "symbol": sym, "quantity": h.qty, "avg_price": h.avg_price,
             "realized_pnl": float(h.realized), "mark": self._mark.get(sym),
             "unrealized_pnl": float(h.qty) * self._mark[sym] - float(h.cost),
             "stale": sym in stale}
            for (strat, sym), h in self._positions.items() if h.qty != 0
        ]
        if self._scen_returns is not None:
            try:
                rep = self.var()
                out["var"] = {"account": var_dict(rep.account),
                              "strategies": {s: var_dict(v) for s, v in rep.strategies.items()}}
            except RiskDataError as exc:
                out["var_error"] = str(exc)
        return out

    def set_scenarios(self, symbols: Sequence[str], returns: np.ndarray) -> None:
        """Return scenarios for VaR: a (T x N) matrix of 1-day simple returns, column i for symbols[i]."""
        r = np.asarray(returns, dtype=float)
        if r.ndim != 2 or r.shape[1] != len(symbols):
            raise RiskDataError(f"returns shape {r.shape} does not match {len(symbols)} symbols")
        if len(set(symbols)) != len(symbols):
            raise RiskDataError("scenario symbols must be unique")
        bad = ~np.isfinite(r).all(axis=0)
        if bad.any():
            raise RiskDataError(f"non-finite returns for {[symbols[i] for i in np.flatnonzero(bad)]}")
        self._scen_symbols = {s: i for i, s in enumerate(symbols)}
        self._scen_returns = r

    def var(self, method: str = "historical", confidence: float | None = None,
            horizon_days: float | None = None) -> VarReport:
        """VaR/CVaR of the account and of each strategy with positions, at current marks.  Fails
        (RiskDataError) rather than use a position without scenarios or without a fresh mark."""
        if method not in METHODS:
            raise RiskDataError(f"VaR method {method!r} unknown; expected one of {METHODS}")
        if self._scen_returns is None:
            raise RiskDataError("no return scenarios: call set_scenarios first")
        vs = self._limits.var
        conf = vs.confidence if confidence is None else confidence
        horizon = vs.horizon_days if horizon_days is None else horizon_days
        now = self._clock()
        strategies = sorted({s for (s, _), h in self._positions.items() if h.qty != 0})
        col = {s: j + 1 for j, s in enumerate(strategies)}
        exposures = np.zeros((len(self._scen_symbols), 1 + len(strategies)))
        for (strat, sym), h in self._positions.items():
            if h.qty == 0:
                continue
            i = self._scen_symbols.get(sym)
            if i is None:
                raise RiskDataError(f"no return scenarios for {sym}")
            if sym not in self._mark_ts or now - self._mark_ts[sym] > self._stale_ns:
                raise RiskDataError(f"no fresh valid price for {sym}")
            value = float(h.qty) * self._mark[sym]
            exposures[i, 0] += value
            exposures[i, col[strat]] += value
        v, c = var_cvar(self._scen_returns, exposures, method, conf, horizon, vs.simulations, vs.seed)
        results = [VarResult(method, conf, horizon, float(v[j]), float(c[j])) for j in range(len(strategies) + 1)]
        return VarReport(results[0], dict(zip(strategies, results[1:])))


def var_dict(v: VarResult) -> dict:
    return {"method": v.method, "confidence": v.confidence, "horizon_days": v.horizon_days,
            "var": v.var, "cvar": v.cvar}
