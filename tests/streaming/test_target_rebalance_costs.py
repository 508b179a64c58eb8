"""The target_rebalance slot's cost and tax rules (settings portfolio_min_trade, portfolio_lot_method,
portfolio_wash_sale_days) and its weights' staleness, on real target_weights rows in the session's
PostgreSQL: each rule changes what the slot does."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from deploy.settings import get_settings
from tests.streaming.test_target_rebalance import SYMBOLS, insert_weights, make_trader, ticks_between, DAY22, MINUTE
from trading.records import Bar, Fill, Liquidity, Side

D0 = date(2026, 11, 2)


def ns(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc).timestamp()) * 1_000_000_000


class Book:
    """What the slot sees of its account: positions, prices, equity (trading.strategies.base.Context)."""

    def __init__(self, equity: float = 10_000.0) -> None:
        self.ts, self.positions, self.prices, self._equity = 0, {}, {}, equity

    def position(self, symbol):
        return Decimal(repr(self.positions.get(symbol, 0.0)))

    def price(self, symbol):
        p = self.prices.get(symbol)
        return None if p is None else Decimal(repr(p))

    def equity(self):
        return Decimal(repr(self._equity))

    def symbols(self):
        return list(SYMBOLS)


def slot(pg_url, engine, weights: dict[str, float], **params):
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource

    pf = f"trc-{uuid.uuid4().hex[:8]}"
    insert_weights(engine, pf, "2026-11-01", weights)
    return TargetRebalance(TargetWeightsSource(pg_url, pf, max_age_hours=1e6), every=1, allocation=1.0, **params)


def decide(strat, book: Book, day: date, hour: int = 12) -> dict[str, float]:
    book.ts = ns(day, hour)
    return {t.symbol: t.target for t in strat.on_bar(make_bar(book.ts), book)}


def make_bar(ts: int) -> Bar:
    one = Decimal(1)
    return Bar("sim", "BTC/USDT", "1m", ts, ts, one, one, one, one, one)


def fill(strat, book, side: str, qty: float, price: float, day: date, n=[0]) -> None:
    n[0] += 1
    book.positions["BTC/USDT"] = book.positions.get("BTC/USDT", 0.0) + (qty if side == "buy" else -qty)
    strat.on_fill(Fill(f"f{n[0]}", f"o{n[0]}", "acct", "rebal", "sim", "BTC/USDT", Side(side), Decimal(repr(price)),
                       Decimal(repr(qty)), Decimal(0), "USDT", Liquidity.TAKER, ns(day)), book)


def test_a_trade_below_min_trade_is_skipped(pg_url, engine):
    book = Book()
    book.prices = {"BTC/USDT": 100.0, "ETH/USDT": 10.0}
    book.positions = {"BTC/USDT": 48.0, "ETH/USDT": 500.0}  # 0.48 and 0.50 of equity
    weights = {"BTC/USDT": 0.5, "ETH/USDT": 0.5}
    free = slot(pg_url, engine, weights)
    assert decide(free, book, D0) == {"BTC/USDT": 0.5, "ETH/USDT": 0.5}  # min_trade 0: every target sent
    strict = slot(pg_url, engine, weights, min_trade=0.05)
    assert decide(strict, book, D0) == {}  # 0.02 and 0.00 to trade: both below 0.05 of the allocation
    assert strict.counters["skipped_min_trade"] == 2
    book.positions["BTC/USDT"] = 40.0  # 0.10 below the target now: traded
    assert decide(strict, book, D0 + timedelta(days=1)) == {"BTC/USDT": 0.5}


def test_hifo_realises_less_gain_than_fifo_on_the_same_fills(pg_url, engine):
    gains = {}
    for method in ("fifo", "hifo"):
        strat, book = slot(pg_url, engine, {"BTC/USDT": 1.0}, lot_method=method), Book()
        for i, price in enumerate((100.0, 300.0, 200.0)):
            fill(strat, book, "buy", 1.0, price, D0 + timedelta(days=i))
        fill(strat, book, "sell", 1.5, 250.0, D0 + timedelta(days=10))
        tax = strat.view()["tax"]
        gains[method] = tax["realized_gain"]
        assert tax["lot_method"] == method and sum(lot["qty"] for lot in tax["lots"]["BTC/USDT"]) == 1.5
    assert gains == {"fifo": pytest.approx(125.0), "hifo": pytest.approx(-25.0)}


def test_the_wash_sale_rule_defers_a_buy_back_after_a_loss(pg_url, engine):
    outcomes = {}
    for days in (0, 30):
        strat, book = slot(pg_url, engine, {"BTC/USDT": 0.5}, wash_sale_days=days), Book()
        book.prices = {"BTC/USDT": 80.0}
        fill(strat, book, "buy", 2.0, 100.0, D0)
        fill(strat, book, "sell", 2.0, 80.0, D0 + timedelta(days=5))  # a loss of 40: the window opens
        outcomes[days] = [decide(strat, book, D0 + timedelta(days=d)) for d in (6, 35, 36)]
        if days:
            assert strat.counters["wash_sale_deferred"] == 2
            assert strat.view()["tax"]["deferred_buys"] == {"BTC/USDT": str(D0 + timedelta(days=35))}
    assert outcomes[0] == [{"BTC/USDT": 0.5}] * 3  # rule off: bought back at once
    assert outcomes[30] == [{}, {}, {"BTC/USDT": 0.5}]  # deferred through day 30 after the sale, then bought
    # a sale at a gain opens no window
    strat, book = slot(pg_url, engine, {"BTC/USDT": 0.5}, wash_sale_days=30), Book()
    book.prices = {"BTC/USDT": 120.0}
    fill(strat, book, "buy", 2.0, 100.0, D0)
    fill(strat, book, "sell", 2.0, 120.0, D0 + timedelta(days=5))
    assert decide(strat, book, D0 + timedelta(days=6)) == {"BTC/USDT": 0.5}


def test_staleness_is_judged_at_the_decision_and_shown(pg_url, engine):
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource

    pf = f"trc-age-{uuid.uuid4().hex[:8]}"
    insert_weights(engine, pf, "2026-11-01", {"BTC/USDT": 1.0})
    strat = TargetRebalance(TargetWeightsSource(pg_url, pf, max_age_hours=26.0), every=1, allocation=1.0)
    book = Book()
    book.prices = {"BTC/USDT": 100.0}
    decide(strat, book, date(2026, 11, 2), hour=12)
    assert strat.weights_age_hours() == 12.0
    assert strat.view()["weights_freshness"]["stale"] is False
    decide(strat, book, date(2026, 11, 3), hour=6)  # 30 h after the 1st ended
    fresh = strat.view()["weights_freshness"]
    assert fresh["stale"] is True and fresh["age_hours"] == 30.0 and "older than the 26 h allowed" in fresh["reason"]
    assert strat.flat_reason is None  # stale weights keep trading; the check and the gauge raise the alarm


def test_the_settings_configure_the_stream_slot(pg_url, monkeypatch):
    from streaming import config
    from streaming.ml_strategy import create_stream_strategy

    monkeypatch.setenv("TRADELOOP_PORTFOLIO_MIN_TRADE", "0.03")
    monkeypatch.setenv("TRADELOOP_PORTFOLIO_LOT_METHOD", "hifo")
    monkeypatch.setenv("TRADELOOP_PORTFOLIO_WASH_SALE_DAYS", "30")
    monkeypatch.setenv("TRADELOOP_WEIGHTS_MAX_AGE_HOURS", "50")
    get_settings.cache_clear()
    try:
        strat = create_stream_strategy("target_rebalance", {"portfolio": "p1"}, model_name="", tracking_uri="",
                                       poll_interval_s=30, symbols=SYMBOLS, database_url=pg_url)
        assert (strat.p["min_trade"], strat.p["lot_method"], strat.p["wash_sale_days"]) == (0.03, "hifo", 30)
        assert strat.lots.method == "hifo" and strat.lots.wash_days == 30 and strat.source.max_age_hours == 50
        assert strat._weight_scale == config.FRACTION_PER_SYMBOL  # the Trader's sizer: min_trade in its units
        own = create_stream_strategy("target_rebalance", {"portfolio": "p1", "lot_method": "fifo", "allocation": 0.4},
                                     model_name="", tracking_uri="", poll_interval_s=30, symbols=SYMBOLS,
                                     database_url=pg_url)
        assert own.p["lot_method"] == "fifo" and own._weight_scale == 0.4  # the slot's params win
    finally:
        get_settings.cache_clear()


def test_the_traders_fills_open_the_slots_tax_lots(pg_url, engine):
    """Through the stream's Trader: the slot's own fills reach its lots (and only its own)."""
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource

    pf = f"trc-trader-{uuid.uuid4().hex[:8]}"
    insert_weights(engine, pf, "2026-11-21", {"BTC/USDT": 0.5, "ETH/USDT": 0.3})
    strat = TargetRebalance(TargetWeightsSource(pg_url, pf), every=10, lot_method="hifo")
    trader = make_trader(strat, f"trc-{pf}")
    start = DAY22 + 2 * 60 * MINUTE
    for t in ticks_between(start, start + 30 * MINUTE):
        trader.on_tick(t)
    assert trader.drain().fills
    for sym in ("BTC/USDT", "ETH/USDT"):
        held = float(trader.portfolio.position(sym, "rebal").quantity)
        assert held > 0 and strat.lots.position(sym) == pytest.approx(held, rel=1e-9)


def test_a_restarted_worker_rebuilds_lots_and_wash_sale_windows_from_stored_fills(pg_url, engine):
    """The slot's fills go to Postgres; a new Trader restored from them (as the worker restarts) has the
    same lots, the same realised gain and the same open wash-sale window, and only its own slot's fills."""
    from storage.stream import restore_account, write_batch
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource
    from streaming.trader import Restored

    account = f"trc-restart-{uuid.uuid4().hex[:8]}"
    sold = D0 + timedelta(days=5)

    def f(i, slot, side, qty, price, day):
        return Fill(f"{account}-{i}", f"{account}-o{i}", account, slot, "sim", "BTC/USDT", Side(side),
                    Decimal(price), Decimal(qty), Decimal(0), "USDT", Liquidity.TAKER, ns(day))

    fills = [f(1, "rebal", "buy", "1", "100", D0), f(2, "rebal", "buy", "1", "300", D0 + timedelta(days=1)),
             f(3, "rebal", "sell", "1.5", "250", sold), f(4, "other", "buy", "5", "90", D0)]
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account=account, fills=fills)
        rows = restore_account(conn, account, [], mode="paper", exchange="sim", interval="1m", warmup_bars=0)
    assert [x.fill_id for x in rows.fills] == [x.fill_id for x in fills[:1] + fills[3:] + fills[1:3]]  # by time

    pf = f"trc-{uuid.uuid4().hex[:8]}"
    insert_weights(engine, pf, "2026-11-01", {"BTC/USDT": 0.5})
    strat = TargetRebalance(TargetWeightsSource(pg_url, pf), lot_method="hifo", wash_sale_days=30)
    trader = make_trader(strat, account)
    trader.restore(Restored(fills=rows.fills, known_order_ids=rows.known_order_ids))
    assert float(trader.portfolio.position("BTC/USDT", "rebal").quantity) == pytest.approx(0.5)
    # HIFO: the 300 lot then half of the 100 lot at 250 -> -50 + 75; the 300 lot's loss opens a window
    assert strat.lots.position("BTC/USDT") == pytest.approx(0.5)
    assert strat.tax_view()["realized_gain"] == pytest.approx(25.0)
    assert strat.lots.blocked("BTC/USDT", sold + timedelta(days=10))
    assert strat.untracked_sells == {}  # the other slot's buy is not this slot's

    # a swap at run time (new parameters, as an operator's swap or a promoted release) keeps the slot's lots:
    # the new strategy replays the slot's fills under its own lot method (FIFO: +150 on the 100 lot, -25 on
    # half of the 300 lot)
    trader.factory = lambda name, params: TargetRebalance(TargetWeightsSource(pg_url, pf), **params)
    trader.swap_strategy("rebal", "target_rebalance", {"lot_method": "fifo", "wash_sale_days": 30})
    swapped = trader.engine.slots["rebal"].inner
    assert swapped is not strat and swapped.lots.method == "fifo"
    assert swapped.lots.position("BTC/USDT") == pytest.approx(0.5)
    assert swapped.tax_view()["realized_gain"] == pytest.approx(125.0)
    assert swapped.lots.blocked("BTC/USDT", sold + timedelta(days=10)) and swapped.untracked_sells == {}
