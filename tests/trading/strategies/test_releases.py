"""The release gate (trading/strategies/releases.py): out of sample, same windows, the stream's rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.trading.bars import random_bars
from trading.strategies.releases import (
    STREAM_FRACTION_PER_SYMBOL, ReleaseGateConfig, ReleaseGateError, gate_release, live_backtest_config, run_gate,
    split_for_tuning, window_metrics,
)


def _w(sharpes, dds=None):
    dds = dds or [0.01] * len(sharpes)
    return [{"window": i, "start_ts": 1000 * i, "end_ts": 1000 * i + 999, "sharpe": s, "max_drawdown": d,
             "total_return": 0.0, "n_trades": 3} for i, (s, d) in enumerate(zip(sharpes, dds))]


def test_gate_rule_passes_only_a_candidate_better_out_of_sample_in_mean_and_in_most_windows():
    cfg = ReleaseGateConfig(sharpe_margin=0.1, min_win_fraction=0.5, max_drawdown_limit=0.2)
    ok = gate_release(_w([1.0, 2.0, 0.5]), _w([0.5, 1.0, 0.4]), cfg)
    assert ok["passed"] and ok["windows_won"] == 3 and "better in 3 of 3" in ok["reason"]
    margin = gate_release(_w([1.0, 1.0, 1.0]), _w([0.95, 0.95, 0.95]), cfg)
    assert not margin["passed"] and "margin 0.100" in margin["reason"]
    # one lucky window carries the mean, but the candidate is worse in two of three
    lucky = gate_release(_w([9.0, 0.1, 0.1]), _w([0.5, 0.5, 0.5]), cfg)
    assert not lucky["passed"] and lucky["reason"] == "better in 1 of 3 windows, needs 2"
    deep = gate_release(_w([3.0, 3.0, 3.0], [0.01, 0.3, 0.01]), _w([0.0, 0.0, 0.0]), cfg)
    assert not deep["passed"] and "drawdown 0.3000" in deep["reason"]
    other = _w([3.0, 3.0, 3.0])
    other[1]["start_ts"] += 60
    assert gate_release(_w([3.0, 3.0, 3.0]), other, cfg)["reason"] == \
        "candidate and running release were not run on the same windows"
    assert not gate_release(_w([3.0, 3.0]), _w([0.0, 0.0, 0.0]), cfg)["passed"]


def test_a_candidate_that_stands_aside_is_no_evidence():
    """Parameters that never trade (Sharpe 0) beat a losing release in mean and in every window; the tuner
    finds such corners (e.g. slow averages longer than the window). Refused, saying why."""
    cfg = ReleaseGateConfig(min_trades=5)
    idle = _w([0.0, 0.0, 0.0])
    for w in idle:
        w["n_trades"] = 0
    verdict = gate_release(idle, _w([-30.0, -20.0, -40.0]), cfg)
    assert not verdict["passed"] and verdict["trades_candidate"] == 0
    assert verdict["reason"] == "the candidate made 0 trades in the 3 windows, needs at least 5: no evidence"
    assert gate_release(_w([0.0, 0.0, 0.0]), _w([-30.0, -20.0, -40.0]), cfg)["passed"]  # 9 trades: judged
    with pytest.raises(ReleaseGateError, match="min_trades must be >= 0"):
        ReleaseGateConfig(min_trades=-1).check()


def test_gate_windows_are_the_held_out_bars_and_the_same_for_both():
    bars = random_bars(3000, seed=3)
    cfg = ReleaseGateConfig(holdout_frac=0.3, n_windows=3)
    split = split_for_tuning(bars.height, cfg)
    assert split == 2100
    a = window_metrics("sma_cross", {"fast": 3, "slow": 8}, bars, cfg)
    b = window_metrics("sma_cross", {"fast": 10, "slow": 40}, bars, cfg)
    assert len(a) == 3 and [w["start_ts"] for w in a] == [w["start_ts"] for w in b]
    first_test_ts = int(bars["timestamp"][split])
    assert a[0]["start_ts"] == first_test_ts  # nothing the tuning saw is scored
    assert all(w["n_trades"] > 0 for w in a)
    with pytest.raises(ReleaseGateError, match="need at least 50 per window"):
        split_for_tuning(400, cfg)
    with pytest.raises(ReleaseGateError, match="unknown parameter 'nope'"):
        window_metrics("sma_cross", {"nope": 1}, bars, cfg)
    with pytest.raises(ReleaseGateError, match="holdout_frac"):
        ReleaseGateConfig(holdout_frac=1.0).check()


def test_gate_pays_fees_and_slippage_and_sizes_as_the_stream():
    from trading.backtest.runner import run_backtest
    from trading.strategies import create_strategy

    bars = random_bars(3000, seed=4)
    churn = {"fast": 2, "slow": 5}
    free = window_metrics("sma_cross", churn, bars, ReleaseGateConfig(slippage_bps=0.0))
    costly = window_metrics("sma_cross", churn, bars, ReleaseGateConfig(slippage_bps=20.0))
    assert all(c["total_return"] < f["total_return"] for f, c in zip(free, costly))
    cfg = live_backtest_config(1.0)
    assert cfg.fees is not None and cfg.fees.taker_bps > 0 and cfg.impact.slippage_bps == 1.0
    res = run_backtest(bars, create_strategy("sma_cross", churn), cfg)
    first = res.fills[0]
    notional = first.price * first.quantity
    assert abs(notional / cfg.cash - Decimal(str(STREAM_FRACTION_PER_SYMBOL))) < Decimal("0.002")
    # the stream sizes with this very number
    from streaming import config

    assert config.FRACTION_PER_SYMBOL == STREAM_FRACTION_PER_SYMBOL


def test_a_candidate_equal_to_the_running_release_is_refused():
    bars = random_bars(3000, seed=5)
    same = {"fast": 5, "slow": 20}
    d = run_gate("sma_cross", same, same, bars, ReleaseGateConfig())
    assert not d["passed"] and d["mean_sharpe_candidate"] == d["mean_sharpe_running"]


def test_gate_on_several_symbols_trades_each_and_averages_per_window():
    from trading.strategies.releases import symbols_metrics

    cfg = ReleaseGateConfig()
    bars = {"BTC/USDT": random_bars(3000, seed=6), "ETH/USDT": random_bars(3000, seed=7, symbol="ETH/USDT", start=2000.0)}
    both = symbols_metrics("sma_cross", {"fast": 3, "slow": 8}, bars, cfg)
    one = {s: window_metrics("sma_cross", {"fast": 3, "slow": 8}, f, cfg) for s, f in bars.items()}
    for i, w in enumerate(both):
        assert w["sharpe"] == pytest.approx((one["BTC/USDT"][i]["sharpe"] + one["ETH/USDT"][i]["sharpe"]) / 2)
        assert w["max_drawdown"] == max(one["BTC/USDT"][i]["max_drawdown"], one["ETH/USDT"][i]["max_drawdown"])
        assert w["n_trades"] == one["BTC/USDT"][i]["n_trades"] + one["ETH/USDT"][i]["n_trades"]
    d = run_gate("sma_cross", {"fast": 10, "slow": 40}, {"fast": 3, "slow": 8}, bars, cfg)
    assert set(d["candidate"][0]["symbols"]) == {"BTC/USDT", "ETH/USDT"}
    with pytest.raises(ReleaseGateError, match="do not cover the same times: gate window 0"):
        symbols_metrics("sma_cross", {}, {**bars, "SOL/USDT": random_bars(1500, seed=8, symbol="SOL/USDT")}, cfg)
