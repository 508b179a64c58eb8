import asyncio
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from trading.marketdata.sim import SimConfig, SimConfigError, SimRangeError, SimVenue, SymbolSpec
from trading.marketdata.source import available_ts
from trading.ports import MarketDataSource
from trading.records import NS_PER_S, Bar, BookSnapshot, Quote, Tick

MIN = 60 * NS_PER_S


def _returns(df: pl.DataFrame, symbol: str) -> np.ndarray:
    return np.diff(np.log(df.filter(pl.col("symbol") == symbol)["close"].to_numpy()))


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).mean() / x.var())


def test_fat_tails(sim, sim_bars_100k):
    for s in sim.symbols:
        z = _returns(sim_bars_100k, s)
        z = (z - z.mean()) / z.std()
        assert (z**4).mean() - 3 > 1, s


def test_volatility_clustering_without_return_autocorrelation(sim, sim_bars_100k):
    """The null market (SimConfig's default structure=0): returns carry no linear predictability, their size does."""
    for s in sim.symbols:
        r = _returns(sim_bars_100k, s)
        for lag in range(1, 11):
            assert _acf(np.abs(r), lag) > 0.05, (s, lag)
            assert abs(_acf(r, lag)) < 0.03, (s, lag)


def test_structured_market_has_short_horizon_momentum(sim, sim_bars_100k, structured_sim_bars):
    """Persistent order flow leading returns: positive autocorrelation over the next tens of minutes,
    which the null market (same seed, same shocks otherwise) does not have."""
    for s in sim.symbols:
        r = _returns(structured_sim_bars, s)
        r0 = _returns(sim_bars_100k.filter(pl.col("ts") < structured_sim_bars["ts"].max() + 1), s)
        acf = [_acf(r, lag) for lag in range(1, 31)]
        print(s, np.round(acf[:5], 3), round(float(np.mean(acf)), 3))
        assert np.mean(acf) > 0.05 and min(acf) > 0, (s, np.round(acf, 3))
        assert abs(np.mean([_acf(r0, lag) for lag in range(1, 31)])) < 0.02, s
        assert _acf(np.abs(r), 1) > 0.05, s  # volatility still clusters


def _flow_and_next_return(venue: SimVenue, symbol: str, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per minute: aggressor imbalance of the trades (buy minus sell volume over volume) and the next minute's
    log return of the close."""
    t0 = venue.config.origin_ns
    imb = np.zeros(minutes)
    vol = np.zeros(minutes)
    for t in venue.ticks(t0, t0 + minutes * MIN):
        if t.symbol != symbol:
            continue
        i = (t.exchange_ts - t0) // MIN
        signed = float(t.amount) * (1 if t.side.value == "buy" else -1)
        imb[i] += signed
        vol[i] += float(t.amount)
    close = venue.generate_bars(t0, minutes, symbols=[symbol])["close"].to_numpy()
    nxt = np.diff(np.log(close))
    return (imb / vol)[:-1], nxt


def test_order_flow_imbalance_leads_returns():
    from trading.marketdata.sim import SimConfig

    on = _flow_and_next_return(SimVenue(SimConfig(seed=5, structure=1.0)), "BTC/USDT", 2 * 1440)
    off = _flow_and_next_return(SimVenue(SimConfig(seed=5)), "BTC/USDT", 2 * 1440)
    c_on, c_off = np.corrcoef(*on)[0, 1], np.corrcoef(*off)[0, 1]
    print("corr(imbalance_t, return_t+1): structure on", round(c_on, 3), "off", round(c_off, 3))
    assert c_on > 0.05 and c_on > c_off + 0.04, (c_on, c_off)


def test_structure_is_deterministic_and_off_means_off():
    from trading.marketdata.sim import SimConfig, anchored_config

    a = SimVenue(anchored_config(9, "2026-11-01", 1.0)).generate_bars(anchored_config(9, "2026-11-01").origin_ns, 2000)
    b = SimVenue(anchored_config(9, "2026-11-01", 1.0)).generate_bars(anchored_config(9, "2026-11-01").origin_ns, 2000)
    null = SimVenue(anchored_config(9, "2026-11-01", 0.0)).generate_bars(anchored_config(9, "2026-11-01").origin_ns, 2000)
    assert a.equals(b) and not a.equals(null)
    # a later window asked for alone is the same as inside a longer request (state carried across chunks)
    cfg = SimConfig(seed=9, structure=1.0)
    far = cfg.origin_ns + 20_000 * MIN
    alone = SimVenue(cfg).generate_bars(far, 50, symbols=["ETH/USDT"])
    inside = SimVenue(cfg).generate_bars(cfg.origin_ns, 20_050, symbols=["ETH/USDT"]).slice(20_000, 50)
    assert alone.equals(inside)
    with pytest.raises(SimConfigError, match="structure"):
        SimConfig(structure=-1.0)
    with pytest.raises(SimConfigError, match="flow_half_life_minutes"):
        SimConfig(flow_half_life_minutes=0.0)


def test_cross_asset_correlation_matches_config(sim, sim_bars_100k):
    rets = np.vstack([_returns(sim_bars_100k, s) for s in sim.symbols])
    corr = np.corrcoef(rets)
    off = corr[~np.eye(len(sim.symbols), dtype=bool)]
    assert np.all(np.abs(off - 0.7) < 0.05), corr


def test_custom_correlation_matrix_is_used():
    m = ((1.0, 0.2, -0.3), (0.2, 1.0, 0.0), (-0.3, 0.0, 1.0))
    v = SimVenue(SimConfig(correlation=m, jumps_per_day=0))
    df = v.generate_bars(v.config.origin_ns, 50_000)
    corr = np.corrcoef(np.vstack([_returns(df, s) for s in v.symbols]))
    assert np.allclose(corr, np.array(m), atol=0.05), corr


def test_bars_are_consistent(sim_bars_100k):
    df = sim_bars_100k
    assert df.filter(
        (pl.col("low") > pl.min_horizontal("open", "close")) | (pl.col("high") < pl.max_horizontal("open", "close"))
    ).height == 0
    assert (df["volume"] > 0).all() and (df["trades"] >= 4).all() and (df["low"] > 0).all()


def test_intraday_volume_is_u_shaped(sim_bars_100k):
    hour = (pl.col("ts") // (3600 * NS_PER_S)) % 24
    by_hour = sim_bars_100k.group_by(hour.alias("h")).agg(pl.col("trades").mean()).sort("h")["trades"].to_numpy()
    assert by_hour[[0, 23]].mean() > 1.5 * by_hour[[11, 12]].mean()


def test_same_seed_same_records_different_seed_different():
    a, b, c = SimVenue(SimConfig(seed=3)), SimVenue(SimConfig(seed=3)), SimVenue(SimConfig(seed=4))
    t0 = a.config.origin_ns
    assert a.generate_bars(t0, 2000).equals(b.generate_bars(t0, 2000))
    assert not a.generate_bars(t0, 2000).equals(c.generate_bars(t0, 2000))
    kinds = ("tick", "quote", "book", "bar")
    assert list(a.events(t0, t0 + 5 * MIN, kinds=kinds)) == list(b.events(t0, t0 + 5 * MIN, kinds=kinds))


def test_prefix_and_window_consistency(sim):
    """The first n bars do not depend on how many were asked for, nor on where a query starts."""
    t0 = sim.config.origin_ns
    long = sim.generate_bars(t0, 40_000, symbols=["ETH/USDT"])
    fresh = SimVenue()
    later = fresh.generate_bars(t0 + 30_000 * MIN, 100, symbols=["ETH/USDT"])
    assert later.equals(long.slice(30_000, 100))


def test_bars_aggregate_the_tick_path(sim):
    t0 = sim.config.origin_ns + 3 * 3600 * NS_PER_S
    bars = [b for b in sim.bars(t0, 30) if b.symbol == "SOL/USDT"]
    ticks = [t for t in sim.ticks(t0, t0 + 30 * MIN) if t.symbol == "SOL/USDT"]
    for bar in bars:
        inside = [t for t in ticks if bar.exchange_ts <= t.exchange_ts < bar.exchange_ts + MIN]
        assert inside[0].price == bar.open and inside[-1].price == bar.close
        assert max(t.price for t in inside) == bar.high and min(t.price for t in inside) == bar.low
        assert sum(t.amount for t in inside) == bar.volume


def test_higher_intervals_aggregate_minutes(sim):
    t0 = sim.config.origin_ns
    m = sim.generate_bars(t0, 120, symbols=["BTC/USDT"])
    h = sim.generate_bars(t0, 2, "1h", symbols=["BTC/USDT"])
    first = m.slice(0, 60)
    assert h["open"][0] == first["open"][0] and h["close"][0] == first["close"][-1]
    assert h["high"][0] == first["high"].max() and h["low"][0] == first["low"].min()
    assert h["volume"][0] == pytest.approx(first["volume"].sum())
    secs = sim.generate_bars(t0, 60, "1s", symbols=["BTC/USDT"])
    assert secs["volume"].sum() == pytest.approx(first["volume"][0]) and secs["high"].max() == first["high"][0]


def test_books_never_crossed_and_spread_widens_with_volatility(sim):
    t0 = sim.config.origin_ns
    spreads, vols = [], []
    for book in sim.books(t0, t0 + 6 * 3600 * NS_PER_S, every="10s"):
        assert isinstance(book, BookSnapshot) and len(book.asks) == sim.config.book_levels
        assert book.bids[0].price < book.asks[0].price
        assert all(a.price > b.price for a, b in zip(book.bids, book.bids[1:]))
        assert all(a.price < b.price for a, b in zip(book.asks, book.asks[1:]))
        assert all(lvl.size > 0 for lvl in book.bids + book.asks)
        if book.symbol == "ETH/USDT":
            spreads.append(float(book.asks[0].price - book.bids[0].price))
    for q in sim.quotes(t0, t0 + 3600 * NS_PER_S):
        assert q.bid < q.ask
    # spread responds to the volatility state: compare against the minute sigma
    m0 = 0
    d = sim._minutes(m0, m0 + 360)
    vols = np.repeat(d.vol_mult, 6)[: len(spreads)]
    assert np.corrcoef(vols, spreads)[0, 1] > 0.3


def test_event_stream_is_ordered_and_bars_come_at_close(sim):
    t0 = sim.config.origin_ns
    recs = list(sim.events(t0, t0 + 10 * MIN, kinds=("tick", "quote", "book", "bar")))
    ts = [available_ts(r) for r in recs]
    assert ts == sorted(ts)
    assert {type(r) for r in recs} == {Tick, Quote, BookSnapshot, Bar}
    first_bar = next(r for r in recs if isinstance(r, Bar))
    assert first_bar.exchange_ts == t0 and available_ts(first_bar) == t0 + MIN
    assert len({r.id for r in recs if isinstance(r, Tick)}) == sum(isinstance(r, Tick) for r in recs)


def test_prices_and_sizes_are_exact_multiples(sim):
    t0 = sim.config.origin_ns
    for t in sim.ticks(t0, t0 + MIN):
        spec = next(s for s in sim.config.symbols if s.symbol == t.symbol)
        assert t.price % spec.tick_size == 0 and t.amount % spec.lot_size == 0 and t.amount > 0


def test_fetch_bars_and_protocol(sim):
    assert isinstance(sim, MarketDataSource)
    t0 = sim.config.origin_ns
    bars = sim.fetch_bars("ETH/USDT", "5m", t0 + 1, t0 + 30 * MIN)
    assert [b.exchange_ts for b in bars] == [t0 + i * 5 * MIN for i in range(1, 6)]
    assert all(b.symbol == "ETH/USDT" and b.interval == "5m" for b in bars)


def test_realtime_stream_is_paced_by_the_injected_clock():
    v = SimVenue()
    t0 = v.config.origin_ns + 7 * NS_PER_S
    now = [0]
    slept = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        now[0] += int(s * 1e9)

    async def take(n: int) -> list:
        out = []
        async for r in v.stream(now_ns=lambda: t0, clock=lambda: now[0], sleep=fake_sleep, kinds=("tick",)):
            out.append(r)
            if len(out) == n:
                return out
        return out

    recs = asyncio.run(take(200))
    assert recs[0].exchange_ts >= t0
    elapsed = (recs[-1].exchange_ts - recs[0].exchange_ts) / 1e9
    assert sum(slept) == pytest.approx(elapsed, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"t_dof": 2.0}, "t_dof"),
        ({"vol_persistence": 1.0}, "vol_persistence"),
        ({"correlation": 1.5}, "correlation"),
        ({"origin_ns": 123}, "origin_ns"),
        ({"symbols": ()}, "symbols"),
        ({"symbols": (SymbolSpec("X/Y", -1.0, 0.5, Decimal("0.01"), Decimal("1"), 1, 1, 1, 1),)}, "initial_price"),
    ],
)
def test_bad_config_names_the_parameter(kwargs, field):
    with pytest.raises(SimConfigError, match=field):
        SimConfig(**kwargs)


def test_bad_requests_raise_clear_errors(sim):
    with pytest.raises(SimRangeError, match="before the simulation origin"):
        sim.generate_bars(sim.config.origin_ns - 3600 * NS_PER_S, 10, "1h")
    with pytest.raises(SimRangeError, match="multiple of interval"):
        sim.generate_bars(sim.config.origin_ns + MIN, 10, "1h")
    with pytest.raises(SimRangeError, match="not simulated"):
        sim.generate_bars(sim.config.origin_ns, 10, symbols=["DOGE/USDT"])
    with pytest.raises(ValueError, match="interval"):
        sim.generate_bars(sim.config.origin_ns, 10, "1M")
