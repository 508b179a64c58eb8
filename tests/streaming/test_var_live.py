"""VaR in the live risk: the worker loads return scenarios from market_data_clean (real Postgres), at start
and periodically, and shows historical VaR/CVaR in GET /risk, `tradeloop risk report` and risk_metrics."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa

from tests.streaming.conftest import produce_ticks, sim_ticks

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
CLI = [sys.executable, "-c", "from orchestration.cli.control import risk; risk(['report'])"]


def insert_daily_history(engine, exchange: str, days: int, seed: int = 3) -> dict[str, list[float]]:
    """One clean 1m row per day per symbol (the day's last close), a random walk; returns the closes."""
    from trading.records import stable_id

    rng = np.random.default_rng(seed)
    start = datetime(2023, 10, 1, 23, 59, tzinfo=timezone.utc)
    closes = {s: list(p * np.cumprod(1 + rng.normal(0, 0.03, days))) for s, p in zip(SYMBOLS, (40000, 2300, 100))}
    rows = [{"e": exchange, "s": s, "ts": start + timedelta(days=d), "c": c[d], "id": stable_id("var-test", exchange, s, d)}
            for s, c in closes.items() for d in range(days)]
    with engine.begin() as conn:
        conn.execute(sa.text("""
            INSERT INTO market_data_clean (exchange, symbol, interval, ts, open, high, low, close, volume, record_id)
            VALUES (:e, :s, '1m', :ts, :c, :c, :c, :c, 1, :id) ON CONFLICT DO NOTHING"""), rows)
    return closes


def _wait_risk(w, cond, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    m: dict = {}
    while time.monotonic() < deadline:
        m = w.get("/risk")
        if cond(m):
            return m
        time.sleep(0.3)
    raise AssertionError(f"risk view never satisfied the condition: {m.get('var')}, {m.get('var_error')}, "
                         f"{m.get('scenarios')}\n{w.log.read_text()[-2000:]}")


def test_worker_var_from_clean_history(worker_factory, stream_env, engine, kafka_bootstrap):
    stream_env.update({"TRADELOOP_VAR_REFRESH_S": "1"})
    w = worker_factory()
    account, prefix = stream_env["TRADELOOP_ACCOUNT"], stream_env["TRADELOOP_TOPIC_PREFIX"]
    ex = stream_env["TRADELOOP_STREAM_EXCHANGE"]
    ticks = sim_ticks(60, ex)
    produce_ticks(kafka_bootstrap, prefix, ticks)
    w.wait_ticks(len(ticks))

    # no history for this exchange: no VaR, and the reason names what is missing
    m = w.get("/risk")
    assert "var" not in m
    assert m["var_error"] == (f"no scenarios: market_data_clean has no history for {', '.join(SYMBOLS)} "
                              f"(exchange '{ex}', interval '1m')")
    r = subprocess.run(CLI, env=stream_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "VaR n/a (no scenarios: market_data_clean has no history for BTC/USDT" in r.stdout, r

    # 41 days of closes -> 40 daily returns; the periodic reload picks them up without a restart
    closes = insert_daily_history(engine, ex, 41)
    m = _wait_risk(w, lambda m: "var" in m and m["scenarios"].get("count") == 40)
    assert m["scenarios"]["symbols"] == SYMBOLS and m["scenarios"]["step"] == "1d" and not m["scenarios"]["missing"]
    assert m["positions"], "the sma_cross run should hold positions (deterministic sim)"

    # independent recomputation: historical VaR/CVaR at 95% of P&L = returns @ exposures at the marks
    R = np.column_stack([np.asarray(closes[s][1:]) / np.asarray(closes[s][:-1]) - 1 for s in SYMBOLS])
    expo = np.zeros(len(SYMBOLS))
    for p in m["positions"]:
        expo[SYMBOLS.index(p["symbol"])] += float(p["quantity"]) * float(p["mark"])
    losses = -(R @ expo)
    var = np.percentile(losses, 95)
    cvar = losses[losses >= var].mean()
    acct = m["var"]["account"]
    assert acct["method"] == "historical" and acct["confidence"] == 0.95
    assert acct["var"] == pytest.approx(var, rel=1e-9) and acct["cvar"] == pytest.approx(cvar, rel=1e-9)
    assert acct["var"] > 0 and acct["cvar"] >= acct["var"]

    r = subprocess.run(CLI, env=stream_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "VaR method historical" in r.stdout and "n/a" not in r.stdout, r.stdout

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with engine.connect() as c:
            got = dict(c.execute(sa.text("SELECT metric, max(value) FROM risk_metrics WHERE account=:a AND metric IN"
                                         " ('var_95', 'cvar_95') GROUP BY metric"), {"a": account}).fetchall())
        if len(got) == 2:
            break
        time.sleep(0.5)
    assert set(got) == {"var_95", "cvar_95"} and float(got["var_95"]) > 0, got
    assert 'tradeloop_var_scenarios 40.0' in w.text("/metrics")


def test_scenarios_from_rows_gaps_and_too_few():
    """The matrix builder: a missing day is never a 2-day return; too few common returns says so."""
    from streaming.scenarios import ScenarioConfigError, build

    d = lambda k: datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=k)  # noqa: E731
    rows = [("A", d(0), 100), ("A", d(1), 110), ("A", d(3), 121), ("A", d(4), 133.1),
            ("B", d(0), 10), ("B", d(1), 9), ("B", d(3), 9), ("B", d(4), 9.9)]
    syms, R, info = build(rows, ["A", "B", "C"], step="1d", count=10, min_count=2, exchange="x", interval="1m")
    assert syms == ["A", "B"] and info["missing"] == ["C"] and "no history for C" in info["note"]
    assert np.allclose(R, [[0.1, -0.1], [0.1, 0.1]], rtol=0, atol=1e-12)  # day 3 has no day 2: no return there
    _, _, info = build(rows, ["A", "B"], step="1d", count=10, min_count=5, exchange="x", interval="1m")
    assert info["error"].startswith("no scenarios: market_data_clean gives only 2 common 1-day returns of A, B")
    with pytest.raises(ScenarioConfigError, match="step '5m' unknown"):
        build(rows, ["A"], step="5m", count=10, min_count=2, exchange="x", interval="1m")
