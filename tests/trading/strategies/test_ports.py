"""The kernel's ports: every adapter in trading/ satisfies its Protocol; the engine's public API."""

from __future__ import annotations

from decimal import Decimal

from trading.ledger import Portfolio
from trading.clock import BarClock
from trading.marketdata import Replayer, SimVenue
from trading.ports import Clock, ExecutionVenue, Ledger, MarketDataSource, RiskGate
from trading.records import Instrument, OrderRequest, OrderStatus, OrderType, Side
from trading.risk import RiskEngine, RiskLimits
from trading.strategies import create_strategy
from trading.strategies.engine import StrategyEngine, make_bar
from trading.venue import PaperVenue

from tests.trading.bars import random_bars

SYM = "BTC/USDT"
INSTR = {SYM: Instrument("sim", SYM)}


def test_the_repo_adapters_implement_the_ports():
    assert isinstance(PaperVenue("sim", INSTR), ExecutionVenue)
    assert isinstance(Portfolio("a", Decimal(1000)), Ledger)
    assert isinstance(RiskEngine(RiskLimits(), "a", Decimal(1000), BarClock()), RiskGate)
    assert isinstance(BarClock(), Clock)
    assert isinstance(SimVenue(), MarketDataSource) and isinstance(Replayer([]), MarketDataSource)
    assert not isinstance(Portfolio("a", Decimal(1000)), ExecutionVenue)  # the checks can fail


def _bars(n=600):
    f = random_bars(n, seed=3)
    cols = [f[k].to_numpy() for k in ("timestamp", "open", "high", "low", "close", "volume")]
    return [make_bar("sim", SYM, "1m", *(c[i] for c in cols)) for i in range(f.height)]


def test_keep_fills_false_keeps_no_fills_and_trades_the_same():
    runs = []
    for keep in (True, False):
        pf = Portfolio("a", Decimal(10000))
        eng = StrategyEngine(PaperVenue("sim", INSTR), pf, create_strategy("sma_cross", {"fast": 5, "slow": 20}),
                             account="a", exchange="sim", instruments=INSTR, keep_fills=keep)
        n = sum(1 for b in _bars() for ev in eng.on_bar(b) if hasattr(ev, "fill_id"))
        runs.append((n, len(eng.fills), pf.equity()))
    (n1, kept, eq1), (n2, none, eq2) = runs
    assert n1 == n2 > 0 and kept == n1 and none == 0 and eq1 == eq2


def test_engine_public_submit_and_cancel_apply_the_venue_events():
    pf = Portfolio("a", Decimal(10000))
    venue = PaperVenue("sim", INSTR)
    eng = StrategyEngine(venue, pf, create_strategy("sma_cross", {}), account="a", exchange="sim", instruments=INSTR)
    bars = _bars(3)
    eng.on_bar(bars[0])
    limit = OrderRequest("lim-1", "a", "ops", "sim", SYM, Side.BUY, OrderType.LIMIT, Decimal("0.01"), (bars[0].close / 2).quantize(Decimal('0.01')), ts=bars[0].exchange_ts)
    acks = eng.submit_approved(limit)
    assert [e.status for e in acks] == [OrderStatus.ACKNOWLEDGED] and venue.open_orders(SYM)
    done = eng.cancel("lim-1", bars[0].exchange_ts + 1)
    assert [e.status for e in done] == [OrderStatus.CANCELED] and not venue.open_orders(SYM)
    market = OrderRequest("mkt-1", "a", "ops", "sim", SYM, Side.BUY, OrderType.MARKET, Decimal("0.01"), ts=bars[0].exchange_ts)
    eng.submit_approved(market)
    eng.on_bar(bars[1])  # bar mode: the market order fills on the next bar
    assert pf.position(SYM, "ops").quantity == Decimal("0.01") and eng.fills[-1].client_order_id == "mkt-1"

