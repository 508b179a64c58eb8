"""Warm-up from the historical store: a real worker whose stream recorded nothing yet, over a market_data_clean
that holds the history, scores its ML slot (champion and the online shadow) on its first live bar; the seam
has no duplicate bar and nothing out of order."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import sqlalchemy as sa

from tests.streaming.conftest import produce_ticks, sim_ticks, wait_until
from tests.streaming.test_ml_stream import SMALL, register_constant_model, registry

MIN = 60_000_000_000


def _history_bars(ticks, upto_minute: int):
    """The bars the stream itself would have made of these ticks, minutes [0, upto_minute)."""
    from trading.marketdata.bars import BarAggregator

    agg, out = BarAggregator("1m"), []
    end = ticks[0].exchange_ts - ticks[0].exchange_ts % MIN + upto_minute * MIN
    for t in ticks:
        bar = agg.update(t)
        if bar is not None and bar.exchange_ts < end:
            out.append(bar)
    return out


def _write_clean(engine, bars) -> None:
    from trading.records import stable_id

    rows = [{"e": b.exchange, "s": b.symbol, "ts": datetime.fromtimestamp(b.exchange_ts / 1e9, tz=timezone.utc),
             "o": b.open, "h": b.high, "l": b.low, "c": b.close, "v": b.volume,
             "id": stable_id("bar", b.exchange, b.symbol, "1m", b.exchange_ts)} for b in bars]
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            VALUES (:e, :s, '1m', :ts, :o, :h, :l, :c, :v, :id)"""), rows)


def test_ml_slot_scores_first_live_bar_after_warmup_from_history(worker_factory, stream_env, engine,
                                                                 kafka_bootstrap, tmp_path):
    uri, exp = registry(tmp_path)
    name = "warm-m-" + stream_env["TRADELOOP_ACCOUNT"]
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    n_hist = 200  # > warmup_bars of SMALL (181): features warm, regime fitted, from history alone
    ticks = sim_ticks(n_hist + 3, ex)
    history = _history_bars(ticks, n_hist)
    assert {b.symbol for b in history} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"} and len(history) == 3 * n_hist
    _write_clean(engine, history)
    register_constant_model(uri, exp, name, 1, alias="champion")  # always long
    params = {**SMALL, "online": True, "label_horizon": 5, "online_min_learned": 5}
    stream_env.update({"MLFLOW_TRACKING_URI": uri, "TRADELOOP_MODEL_NAME": name,
                       "TRADELOOP_STREAM_STRATEGIES": json.dumps({"ml": ["ml_signal", params]})})
    w = worker_factory()
    assert "warm-up: 600 bars (600 from market_data_clean, 0 recorded by the stream)" in w.log.read_text()

    t0 = ticks[0].exchange_ts - ticks[0].exchange_ts % MIN
    at = lambda m: next(i for i, t in enumerate(ticks) if t.exchange_ts >= t0 + m * MIN)  # noqa: E731
    # ticks of the last stored minute (a feed that overlaps the store), then the first live minute, and half
    # of the next one: that closes exactly one live bar per symbol
    live = ticks[at(n_hist - 1):at(n_hist + 1) + (at(n_hist + 2) - at(n_hist + 1)) // 2]
    overlap = at(n_hist) - at(n_hist - 1)
    produce_ticks(kafka_bootstrap, prefix, live)
    counters = w.wait_ticks(len(live))
    assert counters.get("ticks_replayed") == overlap, counters  # their bar is in the store: not traded again

    def signals():
        with engine.connect() as c:
            return c.execute(sa.text("SELECT symbol, ts, target, model_version, shadow FROM signals WHERE account=:a"
                                     " ORDER BY symbol, shadow"), {"a": account}).fetchall()

    wait_until(lambda: len(signals()) >= 6, 20, "the first live bar's signals", w.log)
    sig = signals()
    live_rows = [s for s in sig if not s[4]]
    shadow_rows = [s for s in sig if s[4]]
    # scored on the first live bar: one champion signal per symbol, long, by v1 -- no waiting for bars
    assert sorted((s[0], s[2], s[3]) for s in live_rows) == [(sym, 1.0, "1") for sym in
                                                               ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
    assert len({s[1] for s in live_rows}) == 1
    # the online model learned from the history's labelled bars during the warm-up and is scored in shadow
    assert sorted((s[0], s[3]) for s in shadow_rows) == [(sym, "online") for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
    view = w.get("/model")["slots"]["ml"]
    assert view["online"]["n_learned"] > 3 * 100 and view["counters"].get("flat_no_model", 0) == 0, view

    # the seam: the stream recorded only the live bar (minute n_hist), once per symbol, after the history
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT symbol, ts, count(*) FROM market_data WHERE exchange=:e GROUP BY symbol, ts"),
                         {"e": ex}).fetchall()
    assert len(rows) == 3 and all(r[2] == 1 for r in rows)
    assert {int(r[1].timestamp()) * 1_000_000_000 for r in rows} == {t0 + n_hist * MIN}
    with engine.connect() as c:
        buys = c.execute(sa.text("SELECT count(*) FROM orders WHERE account=:a AND side='buy'"), {"a": account}).scalar()
    assert buys == 3


def test_ml_slot_rewarms_when_history_lands_after_start(worker_factory, stream_env, engine, kafka_bootstrap, tmp_path):
    """A first start: the worker starts before the backfill, so its ML slot is warming up. When the history
    lands in market_data_clean the worker rebuilds the features from it (no restart) and the next live bar
    is scored -- on the default platform the slot used to wait about a day of live bars."""
    uri, exp = registry(tmp_path)
    name = "rewarm-m-" + stream_env["TRADELOOP_ACCOUNT"]
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    n_hist = 200
    ticks = sim_ticks(n_hist + 4, ex)
    register_constant_model(uri, exp, name, 1, alias="champion")  # always long
    stream_env.update({"MLFLOW_TRACKING_URI": uri, "TRADELOOP_MODEL_NAME": name,
                       "TRADELOOP_HISTORY_REWARM_INTERVAL_S": "1",
                       "TRADELOOP_STREAM_STRATEGIES": json.dumps({"ml": ["ml_signal", SMALL]})})
    w = worker_factory()
    assert "warm-up: 0 bars (0 from market_data_clean, 0 recorded by the stream)" in w.log.read_text()

    t0 = ticks[0].exchange_ts - ticks[0].exchange_ts % MIN
    at = lambda m: next(i for i, t in enumerate(ticks) if t.exchange_ts >= t0 + m * MIN)  # noqa: E731
    first = ticks[at(n_hist):at(n_hist + 1) + (at(n_hist + 2) - at(n_hist + 1)) // 2]  # closes live bar n_hist
    produce_ticks(kafka_bootstrap, prefix, first)
    w.wait_ticks(len(first))
    wait_until(lambda: "features warming up" in str(w.get("/model")["slots"]["ml"]["flat_reason"]), 20,
               "the slot warming up", w.log)
    time.sleep(2)  # two re-warm ticks with an empty store: nothing to rebuild from
    assert "re-warmed" not in w.log.read_text()

    _write_clean(engine, _history_bars(ticks, n_hist))  # the backfill lands
    wait_until(lambda: "re-warmed 1 of 1 warming strategies" in w.log.read_text(), 20, "the re-warm", w.log)
    rest = ticks[at(n_hist + 1) + (at(n_hist + 2) - at(n_hist + 1)) // 2:at(n_hist + 2) + (at(n_hist + 3) - at(n_hist + 2)) // 2]
    produce_ticks(kafka_bootstrap, prefix, rest)  # closes live bar n_hist + 1

    def signals():
        with engine.connect() as c:
            return c.execute(sa.text("SELECT symbol, ts, target, model_version FROM signals WHERE account=:a"
                                     " AND NOT shadow ORDER BY symbol"), {"a": account}).fetchall()

    wait_until(lambda: len(signals()) >= 3, 20, "the first scored bar after the re-warm", w.log)
    sig = signals()
    assert sorted((s[0], s[2], s[3]) for s in sig) == [(sym, 1.0, "1") for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
    # signals carry the bar's close: bar n_hist + 1, the first one closed after the re-warm
    assert {int(s[1].timestamp()) * 1_000_000_000 for s in sig} == {t0 + (n_hist + 2) * MIN}
    view = w.get("/model")["slots"]["ml"]
    assert view["flat_reason"] is None and view["counters"].get("feature_errors", 0) == 0, view


def test_rewarm_state_equals_a_state_that_saw_every_bar_in_order(tmp_path):
    """In process, the steps the worker takes: a snapshot while warming, the state built from history + the
    snapshot (a thread in the worker), bars arriving meanwhile fed at install. The features that follow are
    exactly those of a strategy that saw the same warm-up window and every live bar in order. A snapshot whose bars
    have left the kept window is refused (nothing changed)."""
    from decimal import Decimal

    from ml.serving import ChampionModel
    from streaming.ml_strategy import RegistrySignal
    from streaming.trader import Trader
    from streaming.wiring import merge_warmup
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits

    uri, exp = registry(tmp_path)
    register_constant_model(uri, exp, "rewarm-ip", 1, alias="champion")
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    bars = _history_bars(sim_ticks(212), 210)
    history, live = bars[:3 * 200], bars[3 * 200:]

    def trader_with(strat):
        sim = SimVenue(SimConfig(seed=7))
        return Trader("acct-rw", {"ml": strat}, cash=Decimal(100000), limits=RiskLimits(),
                      instruments={i.symbol: i for i in sim.instruments()})

    strat = RegistrySignal(ChampionModel("rewarm-ip", uri), symbols, **SMALL)
    trader = trader_with(strat)
    for b in live[:6]:  # two live minutes: warming up
        trader.engine.on_bars([b])
    assert strat.cold_symbols == set(symbols)
    mark, seen, params = strat.warm_snapshot()
    state = strat.build_warm_state(merge_warmup(history, seen, strat.warmup_bars), params)
    for b in live[6:15]:  # three more minutes arrive while the state is built
        trader.engine.on_bars([b])
    assert strat.install_warm_state(state, mark)

    reference = RegistrySignal(ChampionModel("rewarm-ip", uri), symbols, **SMALL)
    ref_trader = trader_with(reference)
    # the same window a restarted worker would warm up on (the last warmup_bars per symbol), then the rest
    for b in merge_warmup(history, live[:6], strat.warmup_bars) + live[6:15]:
        ref_trader.engine.on_bars([b])
    (p,) = params
    for b in live[15:18]:
        assert strat._online[p].update(b) == reference._online[p].update(b) is not None

    small = RegistrySignal(ChampionModel("rewarm-ip", uri), symbols, **SMALL)
    t_small = trader_with(small)
    t_small.engine.on_bars([live[0]])
    mark, seen, params = small.warm_snapshot()
    for b in [*history, *live][-(small.warmup_bars * 3 + 1):]:  # more bars than it keeps arrive meanwhile
        small._seen.append(b)
        small._seen_n += 1
    assert not small.install_warm_state(small.build_warm_state(seen, params), mark)


def _bar(sym: str, minute: int, close: str, receive: int = 1):
    from decimal import Decimal

    from trading.records import Bar

    c = Decimal(close)
    return Bar("x", sym, "1m", minute * MIN, receive, c, c, c, c, Decimal(1))


def test_merge_warmup_one_bar_per_key_stream_wins_time_order():
    from streaming.wiring import HISTORY_MARK, last_bar_ts, merge_warmup

    history = [_bar(s, m, "1", HISTORY_MARK) for m in range(10) for s in ("A", "B")]
    stream = [_bar("A", m, "2") for m in (8, 9, 10, 11)] + [_bar("B", 12, "2")]
    out = merge_warmup(history, stream, 5)
    keys = [(b.symbol, b.exchange_ts) for b in out]
    assert len(keys) == len(set(keys))  # no duplicate at the seam
    assert [b.exchange_ts for b in out] == sorted(b.exchange_ts for b in out)  # time order across symbols
    a = [b for b in out if b.symbol == "A"]
    assert [b.exchange_ts // MIN for b in a] == [7, 8, 9, 10, 11]  # the last 5 of the union
    assert [str(b.close) for b in a] == ["1", "2", "2", "2", "2"]  # the stream's bar where both have one
    assert [b.exchange_ts // MIN for b in out if b.symbol == "B"] == [6, 7, 8, 9, 12]
    assert last_bar_ts(out) == {"A": 11 * MIN, "B": 12 * MIN}
    assert merge_warmup([], [], 5) == []


def test_registry_signal_online_shadow_in_process(tmp_path):
    """In process: the online model learns through the warm-up replay and the live bars, is recorded in
    shadow beside the champion, checkpoints to MLflow when due (inline), and cannot share a slot with the
    registry challenger."""
    from decimal import Decimal

    import pytest

    from ml.features import FeatureParams
    from ml.labels import LabelParams
    from ml.online import OnlineModel
    from ml.serving import ChampionModel
    from streaming.ml_strategy import RegistrySignal, create_stream_strategy
    from streaming.trader import Restored, Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies.base import ParameterValueError

    uri, exp = registry(tmp_path)
    register_constant_model(uri, exp, "inproc-o", 1, alias="champion")
    clock = [0.0]
    fp = FeatureParams("1m", SMALL["cross_window"], SMALL["regime_window"], SMALL["regime_min_fit"], SMALL["regime_refit"])
    online = OnlineModel("inproc-o", fp, LabelParams(horizon=5), tracking_uri=uri, checkpoint_every="15m",
                         min_learned=5, clock=lambda: clock[0])
    champ = ChampionModel("inproc-o", uri, poll_interval_s=10, clock=lambda: clock[0])
    strat = RegistrySignal(champ, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], online_model=online, online=True,
                           label_horizon=5, **SMALL)
    sim = SimVenue(SimConfig(seed=7))
    trader = Trader("acct-o", {"ml": strat}, cash=Decimal(100000), limits=RiskLimits(),
                    instruments={i.symbol: i for i in sim.instruments()})
    ticks = sim_ticks(215)
    history = _history_bars(ticks, 200)
    champ.refresh()
    strat.online_upkeep_inline()  # resume: nothing registered under 'online' yet
    trader.restore(Restored(bars=history, watermark={b.symbol: b.exchange_ts for b in history}))
    learned = online.state.n_learned
    assert learned > 3 * 100 and not trader.drain().signals  # learned from history, nothing signalled
    t0 = ticks[0].exchange_ts - ticks[0].exchange_ts % MIN
    clock[0] += 16 * 60  # a checkpoint is due at the next live bar
    for t in ticks:
        if t.exchange_ts >= t0 + 200 * MIN:
            trader.on_tick(t)
    b = trader.drain()
    shadow = [s for s in b.signals if s.shadow]
    live = [s for s in b.signals if not s.shadow]
    assert live and {s.model_version for s in live} == {"1"}
    assert shadow and {(s.ts, s.symbol) for s in shadow} == {(s.ts, s.symbol) for s in live}  # paired bars
    assert {s.model_version for s in shadow} <= {"online", "online@v2"} and online.base_version == "2"
    assert online.state.n_learned > learned and strat.view()["online"]["n_learned"] == online.state.n_learned

    kw = dict(model_name="m", tracking_uri=uri, poll_interval_s=1, symbols=["BTC/USDT"])
    with pytest.raises(ParameterValueError, match="online=True and shadow=True exclude each other"):
        create_stream_strategy("ml_signal", {"online": True, "shadow": True}, **kw)


def test_worker_refresh_resumes_and_checkpoints_the_online_model(tmp_path):
    """The worker's path (streaming.wiring.refresh_models, the model poller's call): the first call resumes
    from the 'online' alias, later calls checkpoint when due; a second Trader (a restarted worker) continues
    from the checkpoint and does not learn the replayed bars twice."""
    import asyncio
    from decimal import Decimal

    from ml.features import FeatureParams
    from ml.labels import LabelParams
    from ml.online import OnlineModel
    from ml.serving import ChampionModel
    from streaming.ml_strategy import RegistrySignal
    from streaming.trader import Restored, Trader
    from streaming.wiring import refresh_models
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits

    uri, _ = registry(tmp_path)
    clock = [0.0]
    fp = FeatureParams("1m", SMALL["cross_window"], SMALL["regime_window"], SMALL["regime_min_fit"], SMALL["regime_refit"])
    history = _history_bars(sim_ticks(201), 200)
    sim = SimVenue(SimConfig(seed=7))

    def start() -> tuple[Trader, OnlineModel]:
        online = OnlineModel("wired-o", fp, LabelParams(horizon=5), tracking_uri=uri, checkpoint_every="15m",
                             min_learned=5, clock=lambda: clock[0])
        strat = RegistrySignal(ChampionModel("wired-o", uri), ["BTC/USDT", "ETH/USDT", "SOL/USDT"], online_model=online,
                               online=True, label_horizon=5, inline_refresh=False, **SMALL)
        trader = Trader("acct-w", {"ml": strat}, cash=Decimal(100000), limits=RiskLimits(),
                        instruments={i.symbol: i for i in sim.instruments()})
        asyncio.run(refresh_models(trader))  # as _build does, before the warm-up
        trader.restore(Restored(bars=history, watermark={b.symbol: b.exchange_ts for b in history}))
        return trader, online

    t1, o1 = start()
    assert o1.resumed and o1.base_version is None and o1.state.n_learned > 300
    asyncio.run(refresh_models(t1))
    assert o1.base_version is None  # not due yet
    clock[0] += 15 * 60
    asyncio.run(refresh_models(t1))
    assert o1.base_version == "1" and o1.warning is None
    t2, o2 = start()  # the restarted worker
    assert o2.base_version == "1" and o2.state.n_learned == o1.state.n_learned
    assert o2.state.learned_until == o1.state.learned_until
