"""Backtester: parity with the live-style path, metrics, trades, multi-symbol, walk-forward, hot swap."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from trading.ledger import Portfolio
from trading.backtest.metrics import EquityStats
from trading.backtest.runner import BacktestConfig, run_backtest
from trading.backtest.walkforward import walk_forward, walk_forward_windows
from trading.records import Instrument
from trading.sizing import FixedQuantity, VolatilityTarget
from trading.strategies import Strategy, TargetPosition, create_strategy
from trading.strategies.engine import StrategyEngine, make_bar
from trading.strategies.sma_cross import SmaCross
from trading.venue import FeeSchedule, ImpactModel, PaperVenue

from tests.trading.bars import MINUTE, T0, random_bars

SYM = "BTC/USDT"
INSTR = {SYM: Instrument("sim", SYM, lot_size=Decimal("0.0001"))}


def _bars(frame, symbol=SYM):
    cols = [frame[k].to_numpy() for k in ("timestamp", "open", "high", "low", "close", "volume")]
    return [make_bar("sim", symbol, "1m", *(c[i] for c in cols)) for i in range(frame.height)]


def _live(frame, strategy, sizer=None, fee_bps=7.5, impact=None, trade_from_ts=None):
    """The stream's way: one bar at a time through strategy.on_bar + PaperVenue + Portfolio."""
    venue = PaperVenue("sim", INSTR, FeeSchedule(fee_bps, fee_bps), impact or ImpactModel(coefficient=0.0), None, "bar", "next_open")
    portfolio = Portfolio("backtest", Decimal("10000"))
    engine = StrategyEngine(venue, portfolio, strategy, account="backtest", exchange="sim", instruments=INSTR, sizer=sizer,
                            trade_from_ts=trade_from_ts)
    for bar in _bars(frame):
        engine.on_bar(bar)
    return engine, portfolio


CONFIGS = [
    ("sma_cross", {"fast": 5, "slow": 20}, None),
    ("sma_cross", {"fast": 8, "slow": 30, "ma": "ema", "allow_short": True}, VolatilityTarget(0.002, lookback=30, max_leverage=2)),
    ("mean_reversion", {"window": 20, "entry_z": 1.5, "exit_z": 0.3, "allow_short": True}, None),
    ("breakout", {"window": 20, "exit_window": 10}, FixedQuantity(Decimal("0.1"))),
]


@pytest.mark.parametrize("name,params,sizer", CONFIGS, ids=[c[0] + str(i) for i, c in enumerate(CONFIGS)])
def test_parity_backtest_vs_live_incremental(name, params, sizer):
    frame = random_bars(4000, seed=11)
    impact = ImpactModel(coefficient=0.1, slippage_bps=2.0)
    cfg = dict(fees=FeeSchedule(7.5, 7.5), impact=impact, sizer=sizer, instruments=INSTR, chunk_size=997)
    fast = run_backtest(frame, create_strategy(name, params), BacktestConfig(**cfg))
    event = run_backtest(frame, create_strategy(name, params), BacktestConfig(**cfg, fast=False))
    engine, portfolio = _live(frame, create_strategy(name, params), sizer, impact=impact)
    assert fast.path == "fast" and event.path == "event"
    assert len(fast.fills) >= 20
    assert fast.fills == engine.fills  # identical records: ids, prices, quantities, fees, times
    assert event.fills == engine.fills
    assert fast.metrics == event.metrics
    assert fast.metrics["final_equity"] == float(portfolio.equity())
    assert fast.engine.slots[name].snapshot() == engine.slots[name].snapshot()


def test_parity_with_warmup_period():
    frame = random_bars(1500, seed=12)
    start = int(frame["timestamp"][700])
    fast = run_backtest(frame, create_strategy("sma_cross", {"fast": 5, "slow": 40}), BacktestConfig(trade_from_ts=start))
    event = run_backtest(frame, create_strategy("sma_cross", {"fast": 5, "slow": 40}), BacktestConfig(trade_from_ts=start, fast=False))
    engine, _ = _live(frame, create_strategy("sma_cross", {"fast": 5, "slow": 40}), fee_bps=0, trade_from_ts=start)
    assert fast.fills == event.fills == engine.fills
    assert min(f.ts for f in fast.fills) == start + MINUTE  # the held-back decision is acted on at once
    assert fast.equity["timestamp"][0] == start and fast.metrics["n_bars"] == 800


class Scripted(Strategy):
    """Targets at given bar indices (for hand-checked results)."""

    name = "scripted"

    def __init__(self, plan: dict[int, float]):
        self.plan = plan
        super().__init__()

    def reset(self):
        self.i = -1

    def on_bar(self, bar, ctx):
        self.i += 1
        return [TargetPosition(bar.symbol, self.plan[self.i])] if self.i in self.plan else []


def _frame(closes, opens=None, symbol=SYM):
    closes = np.asarray(closes, float)
    opens = closes if opens is None else np.asarray(opens, float)
    return pl.DataFrame({"timestamp": T0 + MINUTE * np.arange(len(closes)), "symbol": [symbol] * len(closes),
                         "open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes),
                         "close": closes, "volume": np.ones(len(closes))})


def test_metrics_and_trades_by_hand():
    closes = [100, 100, 110, 120, 90, 100, 100, 100]
    opens = [100, 100, 105, 115, 95, 100, 102, 100]
    res = run_backtest(_frame(closes, opens), Scripted({1: 1.0, 5: 0.0}),
                       BacktestConfig(cash=Decimal(1000), sizer=FixedQuantity(Decimal(2)), fee_bps=10))
    assert res.path == "event"
    (t,) = res.trades
    assert (t.side, t.entry_time, t.entry_price, t.exit_time, t.exit_price, t.quantity) == (
        "long", T0 + 2 * MINUTE, Decimal(105), T0 + 6 * MINUTE, Decimal(102), Decimal(2))
    fees = Decimal("0.21") + Decimal("0.204")
    assert t.pnl == Decimal(2) * (102 - 105) - fees
    eq = np.array([1000, 1000, 1000 - 210 - .21 + 220, 0, 0, 0, 0, 0], float)
    cash = 1000 - 210 - 0.21
    eq[3:6] = [cash + 240, cash + 180, cash + 200]
    eq[6:] = cash + 204 - 0.204
    np.testing.assert_allclose(res.equity["equity"].to_numpy(), eq)
    m = res.metrics
    assert m["n_trades"] == 1 and m["n_fills"] == 2 and m["win_rate"] == 0.0 and m["profit_factor"] == 0.0
    assert m["final_equity"] == pytest.approx(float(Decimal(1000) + t.pnl))
    assert m["total_return"] == pytest.approx(eq[-1] / 1000 - 1)
    assert m["max_drawdown"] == pytest.approx(eq[4] / eq[3] - 1)
    assert m["max_drawdown_duration_bars"] == 4  # bars 4..7 below the bar-3 peak
    assert m["exposure"] == pytest.approx(4 / 8)  # held through bars 2..5
    assert m["fees"] == pytest.approx(float(fees))
    assert m["turnover"] == pytest.approx((210 + 204) / eq.mean())


def test_equity_stats_are_chunk_invariant():
    rng = np.random.default_rng(5)
    eq = 1000 * np.exp(np.cumsum(rng.normal(0, 0.01, 5000)))
    ts = np.arange(5000) * MINUTE
    exposed = rng.random(5000) > 0.5
    whole = EquityStats(1000.0, MINUTE)
    whole.update(ts, eq, exposed)
    parts = EquityStats(1000.0, MINUTE)
    for a in range(0, 5000, 333):
        parts.update(ts[a:a + 333], eq[a:a + 333], exposed[a:a + 333])
    mw, mp = whole.metrics(), parts.metrics()
    for k in mw:
        assert mp[k] == pytest.approx(mw[k], rel=1e-9), k
    r = np.diff(np.concatenate(([1000.0], eq))) / np.concatenate(([1000.0], eq[:-1]))
    assert mw["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(525960))
    peak = np.maximum.accumulate(np.concatenate(([1000.0], eq)))[1:]
    assert mw["max_drawdown"] == pytest.approx((eq / peak - 1).min())
    under = eq < peak
    longest = max(len(s) for s in "".join("1" if u else "0" for u in under).split("0"))
    assert mw["max_drawdown_duration_bars"] == longest


def test_multi_symbol_rebalance_targets_weights():
    a = random_bars(600, seed=21, symbol="AAA/USD", start=100.0)
    b = random_bars(600, seed=22, symbol="BBB/USD", start=50.0)
    frame = pl.concat([a, b]).sort(["timestamp", "symbol"])
    strat = create_strategy("rebalance", {"every": 100}, weights={"AAA/USD": 0.6, "BBB/USD": 0.3})
    res = run_backtest(frame, strat, BacktestConfig(fee_bps=1))
    assert res.path == "event"
    assert len({f.ts for f in res.fills}) == 6  # rebalances at bars 0, 100, ..., 500 fill one bar later
    pf = res.engine.portfolio
    eq = pf.equity()
    for sym, w in (("AAA/USD", 0.6), ("BBB/USD", 0.3)):
        weight = float(pf.position(sym).quantity * res.engine.last_price[sym] / eq)
        assert weight == pytest.approx(w, abs=0.05)  # drifted for 99 bars since the last rebalance
    # Weights from a callable; symbols dropped from the weights are closed.
    calls = []

    def weights(ts, ctx):
        calls.append(ts)
        return {"AAA/USD": 0.5, "BBB/USD": 0.5} if len(calls) == 1 else {"AAA/USD": 1.0}

    res = run_backtest(frame, create_strategy("rebalance", {"every": 300}, weights=weights), BacktestConfig())
    assert len(calls) == 2 and res.engine.portfolio.position("BBB/USD").quantity == 0
    assert res.engine.portfolio.position("AAA/USD").quantity > 0


def test_walk_forward_windows_and_runs():
    wins = list(walk_forward_windows(100, train=40, test=20))
    assert [(w.train_start, w.train_end, w.test_start, w.test_end) for w in wins] == [(0, 40, 40, 60), (20, 60, 60, 80), (40, 80, 80, 100)]
    assert [w.train_start for w in walk_forward_windows(100, 40, 20, anchored=True)] == [0, 0, 0]
    with pytest.raises(ValueError, match="walk-forward test must be >= 1"):
        list(walk_forward_windows(100, 40, 0))
    frame = random_bars(2000, seed=31)
    chosen = []

    def make(train):
        # "Optimise" on the train window: pick the slow window with the best train Sharpe.
        best = max((run_backtest(train, SmaCross(fast=5, slow=s)).metrics["sharpe"], s) for s in (20, 40))
        chosen.append(best[1])
        return SmaCross(fast=5, slow=best[1])

    results = walk_forward(frame, make, train=800, test=400)
    assert len(results) == 3 and len(chosen) == 3
    for r in results:
        start = int(frame["timestamp"][r.window.test_start])
        end = int(frame["timestamp"][r.window.test_end - 1])
        assert r.result.metrics["n_bars"] == 400
        assert all(start < f.ts <= end for f in r.result.fills)


class Contrarian(SmaCross):
    """Version 2 of sma_cross for the swap test: the opposite signal."""

    version = "2"

    def on_bar(self, bar, ctx):
        return [TargetPosition(t.symbol, -t.target if t.target else 1.0) for t in super().on_bar(bar, ctx)]


def test_hot_swap_keeps_positions_and_new_version_takes_over():
    frame = random_bars(1500, seed=41)
    bars = _bars(frame)
    venue = PaperVenue("sim", INSTR, FeeSchedule(0, 0), ImpactModel(coefficient=0.0))
    pf = Portfolio("acct", Decimal(10000))
    engine = StrategyEngine(venue, pf, {"trend": SmaCross(fast=5, slow=20, allow_short=True)}, account="acct",
                            instruments=INSTR, history=100)
    for bar in bars[:700]:
        engine.on_bar(bar)
    held = pf.position(SYM, "trend").quantity
    assert held != 0
    n_fills = len(engine.fills)
    engine.swap_strategy("trend", SmaCross(fast=10, slow=40, allow_short=True))  # new parameters, no restart
    assert pf.position(SYM, "trend").quantity == held and len(engine.fills) == n_fills  # swapping trades nothing
    ref = SmaCross(fast=10, slow=40, allow_short=True)  # what the new parameters decide, from scratch
    ctx = engine._ctx
    ref_state = decided_before = 0.0
    for i, bar in enumerate(bars):
        decided_before = ref_state  # fills at bar i's open carry the decision of bar i-1
        for t in ref.on_bar(bar, ctx):
            ref_state = t.target
        if i >= 700:
            engine.on_bar(bar)
        if i >= 701:  # reconciled at bar 700's close, filled at 701's open; from then on it follows v-new
            assert np.sign(float(pf.position(SYM, "trend").quantity)) == decided_before, i
    # A new version of the code also takes over at the next event.
    engine.swap_strategy("trend", Contrarian(fast=10, slow=40, allow_short=True))
    before = np.sign(float(pf.position(SYM, "trend").quantity))
    extra = _bars(random_bars(3, seed=42).with_columns(pl.col("timestamp") + 1500 * MINUTE))
    for bar in extra:
        engine.on_bar(bar)
    assert np.sign(float(pf.position(SYM, "trend").quantity)) == -before
    assert pf.strategies() == ["trend"]  # P&L stays attributed to the slot across versions


def test_bad_inputs_are_named():
    frame = random_bars(50, seed=1)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        run_backtest(frame, SmaCross(), BacktestConfig(chunk_size=0))
    with pytest.raises(ValueError, match="no strategy slot 'x'"):
        StrategyEngine(None, None, SmaCross(), account="a").swap_strategy("x", SmaCross())


def test_risk_engine_rejections_are_counted_by_reason(tmp_path):
    from trading.backtest.risk import make_risk_engine

    limits = tmp_path / "limits.yaml"
    limits.write_text("symbol_defaults:\n  max_order_notional: 4000\n")
    frame = random_bars(1500, seed=51)
    free = run_backtest(frame, SmaCross(fast=5, slow=20), BacktestConfig())
    risk, clock = make_risk_engine(limits, "backtest", Decimal(10000))
    capped = run_backtest(frame, SmaCross(fast=5, slow=20), BacktestConfig(risk=risk, clock=clock))
    assert capped.path == "event" and free.metrics["n_fills"] > 10
    entries = sum(1 for f in free.fills if f.side.value == "buy")  # exits never happen: nothing was bought
    assert capped.rejected == {"max_order_notional": entries}  # every full-equity order is too big
    assert capped.fills == [] and clock() == int(frame["timestamp"][-1]) + MINUTE  # risk saw bar time, not wall time
    risk, clock = make_risk_engine(limits, "backtest", Decimal(10000))
    from trading.sizing import FixedFraction

    small = run_backtest(frame, SmaCross(fast=5, slow=20), BacktestConfig(risk=risk, clock=clock, sizer=FixedFraction(0.3)))
    assert small.rejected == {} and small.metrics["n_fills"] == free.metrics["n_fills"]


def test_engine_on_tick_marks_and_decides():
    from trading.records import Tick

    class TickBuyer(Strategy):
        name = "tick_buyer"

        def on_tick(self, tick, ctx):
            return [TargetPosition(tick.symbol, 0.5)] if ctx.position(tick.symbol) == 0 else []

    venue = PaperVenue("sim", INSTR, FeeSchedule(0, 0), ImpactModel(coefficient=0.0))
    pf = Portfolio("acct", Decimal(10000))
    engine = StrategyEngine(venue, pf, TickBuyer(), account="acct", instruments=INSTR)
    engine.on_tick(Tick("sim", SYM, T0, T0, Decimal("20000"), Decimal("1")))
    assert engine.last_price[SYM] == Decimal("20000") and len(venue.open_orders()) == 1  # 0.25 BTC ordered
    bar = make_bar("sim", SYM, "1m", T0 + MINUTE, 20000.0, 20010.0, 19990.0, 20005.0, 3.0)
    fills = [e for e in engine.on_bar(bar) if hasattr(e, "fill_id")]
    assert [(f.price, f.quantity) for f in fills] == [(Decimal("20000.0"), Decimal("0.25"))]
    assert engine.on_tick(Tick("sim", SYM, T0 + 2 * MINUTE, T0, Decimal("20100"), Decimal("1"))) == []  # holding
