"""target_rebalance: the optimiser's target_weights rows (the real Dagster asset, materialised against the
session's PostgreSQL) traded by the stream's Trader in process, and by a real worker process."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from deploy.settings import get_settings
from trading.strategies.capabilities import ModelBacked
from tests.streaming.conftest import produce_ticks, sim_ticks, wait_until

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]  # the sim venue's
EXCHANGE = "test-trb"  # market_data_clean rows of this file only
MINUTE = 60_000_000_000
DAY22 = int(datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
FRACTION = 0.5  # the Trader's sizer: a weight w is held as FRACTION * w of equity (no margin squeeze)
TOL = 0.02  # of a weight: price drift between rebalances (every=10 bars), fees, lot rounding


def ticks_between(start_ns: int, end_ns: int):
    """Sim ticks (seed 7) of a venue whose history starts at 2026-11-22 00:00 UTC."""
    from trading.marketdata.sim import SimConfig, SimVenue

    return list(SimVenue(SimConfig(seed=7, origin_ns=DAY22)).events(start_ns, end_ns, kinds=("tick",)))


def make_trader(strategy, account: str):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.sizing import FixedFraction

    sim = SimVenue(SimConfig(seed=7, origin_ns=DAY22))
    return Trader(account, {"rebal": strategy}, cash=Decimal(100000), limits=RiskLimits(),
                  instruments={i.symbol: i for i in sim.instruments()}, sizer=FixedFraction(FRACTION))


def held(trader) -> dict[str, float]:
    """Weight of each symbol in the slot, per unit of the sizer's fraction (comparable to target weights)."""
    eq = trader.portfolio.equity()
    return {s: float(trader.portfolio.position(s, "rebal").quantity * trader.engine.last_price[s] / eq) / FRACTION
            for s in SYMBOLS if s in trader.engine.last_price}


def assert_near(actual: dict, wanted: dict, tol: float = TOL) -> None:
    assert set(actual) >= set(wanted)
    off = {s: (round(actual[s], 4), round(wanted.get(s, 0.0), 4)) for s in actual
           if abs(actual[s] - wanted.get(s, 0.0)) > tol}
    assert not off, f"held vs target weights beyond {tol}: {off}"


def stored(engine, portfolio: str, as_of: str) -> dict[str, float]:
    with engine.connect() as conn:
        return {s: float(w) for s, w in conn.execute(sa.text(
            "SELECT symbol, weight FROM target_weights WHERE portfolio = :p AND as_of = CAST(:d AS date)"),
            {"p": portfolio, "d": as_of}).all()}


def insert_weights(engine, portfolio: str, as_of: str, weights: dict[str, float]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO target_weights (portfolio, as_of, symbol, weight, model, estimator, solver, solver_status, inputs)
            VALUES (:p, CAST(:d AS date), :s, :w, 'manual', 'none', 'none', 'optimal', CAST('{}' AS jsonb))
        """), [{"p": portfolio, "d": as_of, "s": s, "w": Decimal(repr(w))} for s, w in weights.items()])


def materialise(pg_url: str, partition: str, **config) -> None:
    """The real target_weights asset (assets/portfolio.py), as Dagster runs it."""
    import dagster as dg

    from assets.portfolio import target_weights
    from assets.resources import MarketDataSource, PostgresResource

    cfg = {"exchange": EXCHANGE, "symbols": SYMBOLS, "lookback_days": 30, **config}
    result = dg.materialize([target_weights], partition_key=partition, resources={"db": PostgresResource(url=pg_url), "market_source": MarketDataSource()},
                            run_config={"ops": {"target_weights": {"config": cfg}}})
    assert result.success


@pytest.fixture(scope="module")
def closes(engine):
    from tests.assets.conftest import insert_closes

    insert_closes(engine, EXCHANGE, SYMBOLS, date(2026, 10, 20), date(2026, 11, 23), seed=11)
    return EXCHANGE


def test_materialised_weights_are_traded_and_the_next_day_replaces_them(pg_url, engine, closes):
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource

    pf = f"trb-{uuid.uuid4().hex[:8]}"
    # weights as of D are computed from D's closes: they are traded on the days after D, never on D
    materialise(pg_url, "2026-11-21", portfolio=pf)  # min variance: the low-volatility symbol dominates
    # the next day's decision caps BTC+ETH, so most of the weight moves to SOL
    materialise(pg_url, "2026-11-22", portfolio=pf, sector_map={"BTC/USDT": "L1", "ETH/USDT": "L1", "SOL/USDT": "alt"},
                sector_caps={"L1": 0.4})
    w21, w22 = stored(engine, pf, "2026-11-21"), stored(engine, pf, "2026-11-22")
    assert set(w21) == set(w22) == set(SYMBOLS)
    assert max(abs(w21[s] - w22[s]) for s in SYMBOLS) > 0.2  # far apart: following one is not following the other
    insert_weights(engine, pf, "2026-11-23", {"BTC/USDT": 1.0})  # the 23rd's own: not for the 23rd's decisions

    clock = [0.0]
    source = TargetWeightsSource(pg_url, pf, poll_interval_s=3600, clock=lambda: clock[0])
    strat = TargetRebalance(source, every=10)
    trader = make_trader(strat, f"trb-{pf}")
    midnight = DAY22 + 24 * 60 * MINUTE

    # 22:30 -> 23:58 on the 22nd: the 21st's weights (the 23:59 bar closes at midnight, on the 23rd)
    for t in ticks_between(midnight - 90 * MINUTE, midnight - MINUTE):
        trader.on_tick(t)
    before = trader.drain()
    assert before.fills and {f.strategy for f in before.fills} == {"rebal"}
    assert_near(held(trader), w21)
    assert {(s.model_name, s.model_version) for s in before.signals} == {(f"target_weights:{pf}", "2026-11-21")}
    assert strat.flat_reason is None and strat.view()["traded_as_of"] == "2026-11-21"

    # past midnight: the day changed, so the source re-reads at once (the clock did not move) and the new
    # decision is traded at the next bar, not `every` bars later; the 23rd's rows stay unused
    for t in ticks_between(midnight - MINUTE, midnight + 40 * MINUTE):
        trader.on_tick(t)
    after = trader.drain()
    assert after.fills and any(f.side.value == "sell" for f in after.fills)
    assert_near(held(trader), w22)
    assert {s.model_version for s in after.signals} == {"2026-11-22"}
    assert min(s.ts for s in after.signals) == midnight  # the first decision of the 23rd, off the `every` grid
    view = strat.view()
    assert view["weights_source"]["as_of"] == "2026-11-22" and view["day"] == "2026-11-23"
    assert view["counters"]["weights_loaded"] == 2 and source.queries == 2
    assert sum(trader.engine.rejected.values()) == 0, trader.engine.rejected


def test_no_rows_is_flat_with_the_reason_until_rows_arrive(pg_url, engine):
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource

    pf = f"trb-none-{uuid.uuid4().hex[:8]}"
    clock = [0.0]
    source = TargetWeightsSource(pg_url, pf, poll_interval_s=60, clock=lambda: clock[0])
    strat = TargetRebalance(source, every=5)
    trader = make_trader(strat, f"trb-{pf}")
    start = DAY22 + 10 * 60 * MINUTE
    for t in ticks_between(start, start + 20 * MINUTE):
        trader.on_tick(t)
    b = trader.drain()
    assert not b.orders and not b.fills and not b.signals
    assert strat.flat_reason == f"no target_weights rows for portfolio {pf!r} with as_of < 2026-11-22"
    assert strat.view()["flat_reason"] == strat.flat_reason and strat.view()["traded_as_of"] == "none"

    weights = {"BTC/USDT": 0.5, "ETH/USDT": 0.3, "SOL/USDT": 0.2}
    insert_weights(engine, pf, "2026-11-21", weights)
    for t in ticks_between(start + 20 * MINUTE, start + 30 * MINUTE):
        trader.on_tick(t)
    assert not trader.drain().orders  # same day, poll interval not passed: not re-read yet
    clock[0] += 61
    for t in ticks_between(start + 30 * MINUTE, start + 50 * MINUTE):
        trader.on_tick(t)
    b = trader.drain()
    assert b.fills and strat.flat_reason is None
    assert_near(held(trader), weights)

    # the optimiser's rows go away (a portfolio retired): flat again, positions closed, and why
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM target_weights WHERE portfolio = :p"), {"p": pf})
    clock[0] += 61
    for t in ticks_between(start + 50 * MINUTE, start + 70 * MINUTE):
        trader.on_tick(t)
    assert trader.drain().fills
    assert all(trader.portfolio.position(s, "rebal").quantity == 0 for s in SYMBOLS)
    assert strat.flat_reason.startswith("no target_weights rows")


def test_worker_mode_reads_only_off_the_hot_path(pg_url, engine):
    """inline_refresh=False (the worker's): bars never query; refresh_weights -- what the weights_poller
    timer runs in a thread -- loads the weights, and the next bars trade them.  Until then: held, and why."""
    from streaming.ml_strategy import create_stream_strategy

    pf = f"trb-off-{uuid.uuid4().hex[:8]}"
    weights = {"BTC/USDT": 0.2, "SOL/USDT": 0.6}
    insert_weights(engine, pf, "2026-11-21", weights)
    strat = create_stream_strategy("target_rebalance", {"portfolio": pf, "every": 60}, model_name="",
                                   tracking_uri="", poll_interval_s=30, symbols=SYMBOLS, database_url=pg_url)
    assert strat.inline_refresh is False and not isinstance(strat, ModelBacked)
    trader = make_trader(strat, f"trb-{pf}")
    # listed in GET /model and the flat gauge as weights-driven, never polled as a model
    assert list(trader.weights_strategies()) == ["rebal"] == list(trader.model_driven_strategies())
    assert not trader.ml_strategies()
    start = DAY22 + 3 * 60 * MINUTE
    for t in ticks_between(start, start + 5 * MINUTE):
        trader.on_tick(t)
    assert not trader.drain().orders and strat.source.queries == 0
    assert strat.flat_reason == "target weights not loaded yet"

    assert asyncio.run(asyncio.to_thread(strat.refresh_weights)) is True
    assert strat.day == date(2026, 11, 22) and strat.source.status["as_of"] == "2026-11-21"
    for t in ticks_between(start + 5 * MINUTE, start + 10 * MINUTE):
        trader.on_tick(t)
    fills = trader.drain().fills
    assert fills and strat.source.queries == 1
    assert_near(held(trader), {**weights, "ETH/USDT": 0.0})

    # a restart: positions come back from the fills before the timer's first read -> held, not sold
    from streaming.trader import Restored

    fresh = create_stream_strategy("target_rebalance", {"portfolio": pf, "every": 60}, model_name="",
                                   tracking_uri="", poll_interval_s=30, symbols=SYMBOLS, database_url=pg_url)
    again = make_trader(fresh, f"trb-{pf}")
    again.restore(Restored(fills=fills))
    for t in ticks_between(start + 10 * MINUTE, start + 15 * MINUTE):
        again.on_tick(t)
    assert not again.drain().orders and fresh.flat_reason == "target weights not loaded yet"
    assert_near(held(again), {**weights, "ETH/USDT": 0.0})


def test_postgres_down_holds_and_says_why():
    from streaming.portfolio_strategy import TargetRebalance, TargetWeightsSource

    source = TargetWeightsSource("postgresql+psycopg://tradeloop@127.0.0.1:9/none", "main", poll_interval_s=60)
    strat = TargetRebalance(source, every=1)
    trader = make_trader(strat, "trb-down")
    start = DAY22 + 60 * MINUTE
    for t in ticks_between(start, start + 4 * MINUTE):
        trader.on_tick(t)
    assert not trader.drain().orders
    assert strat.flat_reason.startswith("target_weights of 'main' unavailable: OperationalError")
    assert source.queries == 1  # not retried per bar: at the poll interval (or on a new day)


def test_a_bad_row_keeps_the_last_weights(pg_url, engine):
    from streaming.portfolio_strategy import TargetWeightsSource

    pf = f"trb-nan-{uuid.uuid4().hex[:8]}"
    insert_weights(engine, pf, "2026-11-21", {"BTC/USDT": 0.7, "ETH/USDT": 0.0})
    source = TargetWeightsSource(pg_url, pf)
    assert source.refresh(date(2026, 11, 22)) is True
    assert source.current().weights == {"BTC/USDT": 0.7}  # a zero weight is left out: Rebalance closes it
    with engine.begin() as conn:  # numeric takes 'NaN': the table does not stop it, the source must
        conn.execute(sa.text("INSERT INTO target_weights (portfolio, as_of, symbol, weight, model, estimator, solver,"
                             " solver_status, inputs) VALUES (:p, '2026-11-22', 'BTC/USDT', 'NaN', 'm', 'e', 's',"
                             " 'optimal', '{}')"), {"p": pf})
    assert source.refresh(date(2026, 11, 23)) is False  # the 23rd reads the 22nd's rows
    assert str(source.current().as_of) == "2026-11-21" and source.current().weights == {"BTC/USDT": 0.7}
    assert "ValueError: target weight of 'BTC/USDT' as of 2026-11-22 is not finite" in source.status["warning"]


def test_default_portfolio_is_the_assets(pg_url):
    from assets.portfolio import TargetWeightsConfig
    from streaming import config
    from streaming.ml_strategy import create_stream_strategy
    from streaming.portfolio_strategy import DEFAULT_PORTFOLIO, TargetRebalance

    assert DEFAULT_PORTFOLIO == TargetWeightsConfig().portfolio
    assert TargetRebalance.validate_params({})["portfolio"] == DEFAULT_PORTFOLIO
    # the stream's default set trades the asset's default portfolio
    name, params = config.STRATEGIES["portfolio_main"]
    strat = create_stream_strategy(name, params, model_name="", tracking_uri="", poll_interval_s=1, symbols=SYMBOLS,
                                   database_url=pg_url)
    assert isinstance(strat, TargetRebalance) and strat.p["portfolio"] == DEFAULT_PORTFOLIO


def test_bad_params_fail_clearly(pg_url):
    from streaming.ml_strategy import create_stream_strategy
    from trading.strategies.base import ParameterValueError, StrategyError, UnknownParameterError

    kw = dict(model_name="", tracking_uri="", poll_interval_s=1, symbols=SYMBOLS, database_url=pg_url)
    for params, match in (({"portfolio": 5}, r"parameter portfolio=5 must be a non-empty string"),
                          ({"portfolio": ""}, r"parameter portfolio='' must be a non-empty string"),
                          ({"portfolio": ["main"]}, r"parameter portfolio=\['main'\]"),
                          ({"every": 0}, r"parameter every=0 is out of range"),
                          ({"every": "hourly"}, r"parameter every='hourly' is not a valid int"),
                          ({"every": 1.5}, r"parameter every=1.5 is not a valid int"),
                          ({"threshold": 2}, r"parameter threshold=2.0 is out of range"),
                          ({"allocation": 1.5}, r"parameter allocation=1.5 is out of range")):
        with pytest.raises(ParameterValueError, match=match):
            create_stream_strategy("target_rebalance", params, **kw)
    with pytest.raises(UnknownParameterError, match=r"unknown parameter 'portfolo'.*known: allocation, every, lot_method, min_trade, portfolio, threshold, wash_sale_days"):
        create_stream_strategy("target_rebalance", {"portfolo": "main"}, **kw)
    with pytest.raises(StrategyError, match="DATABASE_URL is not set"):  # the test session's settings have none
        create_stream_strategy("target_rebalance", {}, **{**kw, "database_url": None})
    # an unknown portfolio is no error: it is a portfolio without rows, flat (see above)
    strat = create_stream_strategy("target_rebalance", {"portfolio": "nobody", "every": "60"}, **kw)
    assert strat.p == {"every": 60, "threshold": 0.0, "allocation": 0.0, "portfolio": "nobody",
                       "min_trade": 0.0, "lot_method": "fifo", "wash_sale_days": 0}  # the settings' defaults
    assert strat.source.portfolio == "nobody" and getattr(strat, "sizer", None) is None  # the stream's sizer
    assert create_stream_strategy("target_rebalance", {"allocation": 0.3}, **kw).sizer.fraction == 0.3


def test_worker_trades_the_stored_weights(worker_factory, stream_env, engine, kafka_bootstrap):
    """A real worker: TRADELOOP_STREAM_STRATEGIES names target_rebalance; flat with the reason in /model
    and /metrics while the portfolio has no rows; rows appear -> the weights_poller timer loads them, no
    restart -> orders and fills at the slot's own allocation of equity (not the stream's per-symbol sizer)."""

    allocation = 0.3
    pf = "trb-w-" + stream_env["TRADELOOP_ACCOUNT"]
    stream_env.update({"TRADELOOP_WEIGHTS_POLL_INTERVAL_S": "0.5",
                       "TRADELOOP_STREAM_STRATEGIES": json.dumps({"rebal": ["target_rebalance",
                                                                            {"portfolio": pf, "every": 5,
                                                                             "allocation": allocation}]})})
    w = worker_factory()
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ticks = sim_ticks(30, stream_env["TRADELOOP_STREAM_EXCHANGE"])  # from 2024-01-01 00:00 UTC
    minute = lambda m: next(i for i, t in enumerate(ticks) if t.exchange_ts >= ticks[0].exchange_ts + m * MINUTE)  # noqa: E731
    early, half = minute(2), minute(10)

    # the first bars may come before the timer's first read (held, "not loaded yet"); then the timer
    # reads for the bars' day, not the wall clock's
    produce_ticks(kafka_bootstrap, prefix, ticks[:early])
    w.wait_ticks(early)
    wait_until(lambda: w.get("/model")["slots"]["rebal"]["weights_source"]["for_day"] == "2024-01-01", 20,
          "a read for the stream's day", w.log)
    produce_ticks(kafka_bootstrap, prefix, ticks[early:half])
    w.wait_ticks(half)
    view = w.get("/model")["slots"]["rebal"]
    assert view["flat_reason"] == f"no target_weights rows for portfolio {pf!r} with as_of < 2024-01-01", view
    assert 'tradeloop_model_flat{slot="rebal"} 1.0' in w.text("/metrics")
    assert 'tradeloop_target_weights_age_hours{slot="rebal"} +Inf' in w.text("/metrics")  # no weights at all
    assert view["weights_freshness"]["stale"] is True and view["weights_freshness"]["age_hours"] is None
    assert "is flat: no target_weights rows" in w.log.read_text()
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM orders WHERE account=:a"), {"a": account}).scalar() == 0

    weights = {"BTC/USDT": 0.5, "ETH/USDT": 0.3, "SOL/USDT": 0.2}
    insert_weights(engine, pf, "2023-12-31", weights)  # computed the day before: traded on 2024-01-01
    wait_until(lambda: w.get("/model")["slots"]["rebal"]["weights_source"]["as_of"] == "2023-12-31", 20,
          "the weights to be read", w.log)
    produce_ticks(kafka_bootstrap, prefix, ticks[half:])
    w.wait_ticks(len(ticks))

    def stored_positions():
        with engine.connect() as c:
            return dict(c.execute(sa.text("SELECT symbol, quantity FROM positions WHERE account=:a AND strategy='rebal'"),
                                  {"a": account}).fetchall())

    pos = wait_until(lambda: len(stored_positions()) == 3 and stored_positions(), 10, "positions in Postgres", w.log)
    last = {t.symbol: t.price for t in ticks}
    notional = {s: float(q * last[s]) for s, q in pos.items()}
    for s, wt in weights.items():  # equity stays ~ the starting cash over 20 minutes at these sizes
        assert notional[s] == pytest.approx(wt * allocation * float(get_settings().starting_cash), rel=0.05), notional
    view = w.get("/model")["slots"]["rebal"]
    assert view["flat_reason"] is None and view["traded_as_of"] == "2023-12-31"
    assert 'tradeloop_model_flat{slot="rebal"} 0.0' in w.text("/metrics")
    # the weights' age at the last decision (00:2x on 2024-01-01: under an hour since the 31st ended)
    assert view["weights_freshness"]["stale"] is False and 0 <= view["weights_freshness"]["age_hours"] < 1
    age = re.search(r'tradeloop_target_weights_age_hours\{slot="rebal"\} (\S+)', w.text("/metrics"))
    assert age and 0 <= float(age.group(1)) < 1, age
    assert set(view["tax"]["lots"]) == set(weights)  # the slot's own fills opened its tax lots
    with engine.connect() as c:
        sig = c.execute(sa.text("SELECT DISTINCT model_name, model_version FROM signals WHERE account=:a"),
                        {"a": account}).fetchall()
    assert sig == [(f"target_weights:{pf}", "2023-12-31")]
