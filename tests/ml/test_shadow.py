"""A/B shadow mode: the statistical comparison on constructed data, and shadow signals that never trade."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from ml.shadow import (BETTER_CHALLENGER, BETTER_CHAMPION, INSUFFICIENT, NO_DIFFERENCE, ShadowError, compare,
                       load_and_compare, paired_returns)


def _market(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.002, n)  # 1-bar returns, zero drift


def test_a_better_model_is_detected_both_ways():
    fwd = _market(800, 1)
    rng = np.random.default_rng(2)
    # the challenger knows the sign of the next return 60% of the time, the champion 50% (a coin)
    informed = np.where(rng.random(fwd.size) < 0.6, np.sign(fwd), -np.sign(fwd))
    coin = rng.choice([-1.0, 1.0], fwd.size)
    r = compare(coin * fwd, informed * fwd)
    assert r.verdict == BETTER_CHALLENGER and r.n == 800
    assert r.p_value_t < 0.05 and r.p_value_wilcoxon < 0.05 and 0.05 < r.effect_size < 0.2 and r.mean_diff > 0  # d_z of a 60% edge is ~0.1
    swapped = compare(informed * fwd, coin * fwd)
    assert swapped.verdict == BETTER_CHAMPION and swapped.effect_size < 0


def test_equal_models_are_not_called_different():
    # two coins (same skill, different decisions): the test must reject rarely, about alpha of the time
    rejections = 0
    for seed in range(200):
        fwd = _market(300, 100 + seed)
        rng = np.random.default_rng(seed)
        a, b = rng.choice([-1.0, 1.0], fwd.size), rng.choice([-1.0, 1.0], fwd.size)
        r = compare(a * fwd, b * fwd)
        rejections += r.verdict != NO_DIFFERENCE
    assert rejections / 200 <= 0.06, rejections  # both tests must reject: at most ~alpha
    same = _market(100, 7)
    r = compare(same, same.copy())
    assert r.verdict == NO_DIFFERENCE and r.p_value_t == 1.0


def test_insufficient_data_and_bad_input():
    r = compare([0.01] * 10, [0.02] * 10, min_n=30)
    assert r.verdict == INSUFFICIENT and r.n == 10 and "need 30" in r.note
    with pytest.raises(ShadowError, match="equal lengths: champion 3, challenger 2"):
        compare([1, 2, 3], [1, 2])
    with pytest.raises(ShadowError, match="1 non-finite paired return"):
        compare([0.1, np.nan, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ShadowError, match="alpha must be in"):
        compare([0.1] * 40, [0.2] * 40, alpha=1.5)


def test_paired_returns_use_the_next_bar_after_the_decision():
    iv = 60
    closes = pd.DataFrame({"symbol": ["X"] * 4, "ts": [0, 60, 120, 180], "close": [100.0, 110.0, 99.0, 120.0]})
    # decisions at the close of bar 0 (ts 60) and bar 1 (ts 120); bar 3's decision has no exit price
    sig = pd.DataFrame({"ts": [60, 60, 120, 120, 240, 240], "symbol": ["X"] * 6,
                        "target": [1.0, 0.0, 0.0, -1.0, 1.0, 1.0], "shadow": [False, True] * 3})
    p = paired_returns(sig, closes, iv)
    assert list(p["ts"]) == [60, 120]
    assert p["fwd_return"].tolist() == pytest.approx([0.1, -0.1])
    assert p["r_champion"].tolist() == pytest.approx([0.1, 0.0])
    assert p["r_challenger"].tolist() == pytest.approx([0.0, 0.1])
    with pytest.raises(ShadowError, match=r"signals lacks column\(s\) \['shadow'\]"):
        paired_returns(sig.drop(columns="shadow"), closes, iv)


def test_shadow_signals_never_trade_and_are_compared_from_postgres(tmp_path, pg_url, engine):
    """Champion always flat (score 0), challenger always long (score 1), on the same live bars: shadow
    rows say long, yet not one order is made; stored, the comparison reads them back from Postgres."""
    from ml.serving import ChampionModel
    from streaming.ml_strategy import RegistrySignal
    from streaming.store import Store
    from streaming.trader import Trader
    from tests.streaming.conftest import sim_ticks
    from tests.streaming.test_ml_stream import SMALL, register_constant_model, registry
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits

    uri, exp = registry(tmp_path)
    register_constant_model(uri, exp, "ab-m", 0, alias="champion")
    register_constant_model(uri, exp, "ab-m", 1, alias="challenger")
    champ = ChampionModel("ab-m", uri, poll_interval_s=3600)
    chall = ChampionModel("ab-m", uri, poll_interval_s=3600, alias="challenger")
    strat = RegistrySignal(champ, ["BTC/USDT", "ETH/USDT", "SOL/USDT"], challenger=chall, shadow=True, **SMALL)
    sim = SimVenue(SimConfig(seed=7, exchange="shadow-ex"))
    trader = Trader("shadow-acct", {"ml": strat}, cash=Decimal(100000), limits=RiskLimits(),
                    instruments={i.symbol: i for i in sim.instruments()}, exchange="shadow-ex")
    for t in sim_ticks(110, "shadow-ex"):
        trader.on_tick(t)
    batch = trader.drain()
    shadow = [s for s in batch.signals if s.shadow]
    live = [s for s in batch.signals if not s.shadow]
    assert len(shadow) == len(live) >= 3 * 40
    assert {(s.target, s.model_version) for s in shadow} == {(1.0, "2")}
    assert {(s.target, s.model_version) for s in live} == {(0.0, "1")}
    assert batch.orders == [] and batch.fills == [] and trader.engine.n_orders == 0  # shadow never trades

    Store(pg_url).write(batch)
    Store(pg_url).write(batch)  # replayed batch: idempotent
    res = load_and_compare(engine, "shadow-acct", "ml", "shadow-ex", min_n=30)
    # pairs: every live bar but the last per symbol (its exit bar is still open when the ticks end)
    assert res["n"] == len(live) - 3
    assert res["champion_versions"] == ["1"] and res["challenger_versions"] == ["2"]
    assert res["mean_champion"] == 0.0
    bars = {(b.symbol, b.exchange_ts): float(b.close) for b in batch.bars}
    step = 60_000_000_000
    fwd = [bars[(s.symbol, s.ts)] / bars[(s.symbol, s.ts - step)] - 1 for s in live if (s.symbol, s.ts) in bars]
    assert res["mean_challenger"] == pytest.approx(float(np.mean(fwd)), rel=1e-9)
    assert res["verdict"] in (NO_DIFFERENCE, BETTER_CHALLENGER, BETTER_CHAMPION)
    import sqlalchemy as sa
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM signals WHERE account='shadow-acct'")).scalar() == len(batch.signals)
