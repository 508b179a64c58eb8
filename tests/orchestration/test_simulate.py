"""`tradeloop simulate`: a short simulation through the CLI (a real process, on the test PostgreSQL server,
in a database of its own) prints the platform's decisions of every daily step and writes a tear sheet;
the same seed gives the same timeline again, another market (the platform's stored history) another one.

Short on purpose (2 days x 2 symbols, one retrain, one small tuning, tear sheets at the end only);
the 30-day figure is benchmarks/bench_simulate.py's.
"""

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

TRADELOOP = Path(sys.executable).parent / "tradeloop"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
# past days (simulated days must be over) inside the default history of the sim market
START = datetime.now(timezone.utc).date() - timedelta(days=5)
DAYS = 2
KINDS = {"market", "weights", "features", "decay", "train", "gate", "tune", "report", "stream"}


def _simulate(pg_url: str, home: Path, out: Path, seed: int, *extra: str, days: int = DAYS,
              env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTEST_CURRENT_TEST",
                                                            "MLFLOW_TRACKING_URI")}
    env.update({"DATABASE_URL": pg_url, "TRADELOOP_HOME": str(home), **(env_extra or {})})
    args = [str(TRADELOOP), "simulate", "--start", START.isoformat(), "--days", str(days), "--seed", str(seed),
            "--warmup-days", "2", "--tune-trials", "3", "--out", str(out), *extra]
    for s in SYMBOLS:
        args += ["--symbol", s]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)


STORED = "storedx"  # a market no venue produces: what the stored-history run trades can only come from the store


def _store_history(engine, seed: int) -> None:
    """The warm-up and simulated days of SYMBOLS, from the sim market of ``seed``, as the platform's stored
    clean bars of market STORED."""
    import polars as pl

    from tests.ml.conftest import write_clean_bars
    from trading.marketdata.sim import SimConfig, SimVenue

    first = START - timedelta(days=2)
    origin = int(datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    bars = SimVenue(SimConfig(seed=seed, origin_ns=origin)).generate_bars(origin, (2 + DAYS) * 1440, "1m",
                                                                          symbols=list(SYMBOLS))
    write_clean_bars(engine, bars.with_columns(pl.lit(STORED).alias("exchange")))


def _clean_closes(engine, day: date) -> list:
    lo = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT symbol, ts, close::float8 FROM market_data_clean WHERE exchange = :e "
                                    "AND ts >= :a AND ts < :b ORDER BY symbol, ts"),
                            {"e": STORED, "a": lo, "b": lo + timedelta(days=1)}).fetchall()


def _trades(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM trades")).scalar()


def _timeline(out: Path) -> list[str]:
    return (out / "timeline.txt").read_text().splitlines()


@pytest.mark.slow
def test_simulate_cli_timeline_tear_sheet_and_determinism(pg_url, engine, tmp_path):
    home = tmp_path / "home"
    platform_trades = _trades(engine)
    first = _simulate(pg_url, home, tmp_path / "a", seed=11)
    print(first.stdout[-6000:])
    assert first.returncode == 0, first.stderr[-4000:] + first.stdout[-2000:]
    lines = _timeline(tmp_path / "a")
    # what the terminal showed: progress lines, then every timeline line as it happened; no library noise
    shown = first.stdout.splitlines()
    assert [ln for ln in shown if not ln.startswith("... ") and not ln.startswith(("timeline:", "tear sheet:",
                                                                                    "database:"))] == lines
    assert "DEBUG" not in first.stdout and "Failed to import torch" not in first.stdout
    assert "dagster - DEBUG" in (home / "logs" / "simulate-seed11.log").read_text()  # the library output went there

    kinds = {ln.split()[2] for ln in lines}
    assert KINDS <= kinds, f"missing decisions: {KINDS - kinds}"
    days = [START + timedelta(days=i) for i in range(DAYS)]
    for day in days:  # every simulated day ends with the stream's summary, and its market data is ingested
        assert any(ln.split()[2] == "stream" and f"day {day}:" in ln for ln in lines), day
        assert any(ln.split()[2] == "market" and f"market data {day}:" in ln for ln in lines), day
    # the gate says why, whichever way it went
    gate = [ln for ln in lines if ln.split()[2] == "gate"]
    assert gate and all(("PROMOTED" in ln or "REFUSED" in ln) and ": " in ln.split("gate", 1)[1] for ln in gate)
    # the stream traded: fills of the rule-based slot on each day
    assert all("fills: none" not in ln for ln in lines if ln.split()[2] == "stream" and "day " in ln)

    # the tear sheet of the last day, from the simulation's own warehouse
    sheet = tmp_path / "a" / "home" / "site" / "reports" / days[-1].isoformat() / "index.html"
    assert sheet.exists() and f"tear sheet: {sheet}" in first.stdout
    page = sheet.read_text()
    assert "Portfolio paper" in page or "portfolio" in page
    assert (sheet.parent / "portfolio__paper.html").exists()

    # its own database; the platform's (the test server's `tradeloop`) got no simulated trades
    assert _trades(engine) == platform_trades
    sim = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/tradeloop_sim_11")
    try:
        fills = _trades(sim)
        with sim.connect() as conn:
            audit = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action IN ('promote', 'gate_reject')")).scalar()
    finally:
        sim.dispose()
    assert fills > 0
    assert audit == len(gate)  # each gate decision is an audit_log row, as on the platform

    # the same seed: the same timeline, line for line
    again = _simulate(pg_url, home, tmp_path / "b", seed=11)
    assert again.returncode == 0, again.stderr[-4000:]
    assert _timeline(tmp_path / "b") == lines

    # another market, other decisions: the platform's stored history (`--history stored`), here the bars of
    # the sim market of another seed stored as market STORED; they reach the simulation's warehouse through
    # the same market-data assets, row for row, and the stream trades them
    _store_history(engine, seed=12)
    other = _simulate(pg_url, home, tmp_path / "c", 11, "--history", "stored",
                      env_extra={"TRADELOOP_MARKET_SOURCE": STORED})
    assert other.returncode == 0, other.stderr[-4000:] + other.stdout[-2000:]
    assert f"stored history of {STORED}" in other.stdout
    stored_lines = _timeline(tmp_path / "c")
    assert stored_lines != lines
    for day in days:
        assert any(f"market data {day}: 2880 clean bars of 2 symbols" in ln for ln in stored_lines), day
        assert any(ln.split()[2] == "stream" and f"day {day}:" in ln and "fills: none" not in ln
                   for ln in stored_lines), day
    sim = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/tradeloop_sim_11")
    try:
        assert _clean_closes(sim, days[-1]) == _clean_closes(engine, days[-1]) and len(_clean_closes(sim, days[-1])) == 2880
    finally:
        sim.dispose()


def test_simulate_refuses_days_not_over(pg_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": pg_url, "TRADELOOP_HOME": str(tmp_path)}
    today = datetime.now(timezone.utc).date()
    r = subprocess.run([str(TRADELOOP), "simulate", "--start", today.isoformat(), "--days", "1"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "is not over yet" in r.stderr and "Traceback" not in r.stderr, r.stderr
    bad = subprocess.run([str(TRADELOOP), "simulate", "--start", "2026-13-01", "--days", "1"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "is not a date" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "simulations").exists()  # nothing half-written
    assert date.fromisoformat(START.isoformat()) == START


def test_simulate_refuses_stored_days_missing(pg_url, engine, tmp_path):
    """`--history stored` needs every warm-up and simulated day of every symbol in the platform's store:
    a missing day is refused before anything is created, naming it."""
    _store_history(engine, seed=12)
    missing = START + timedelta(days=DAYS)  # one day past what is stored
    r = _simulate(pg_url, tmp_path / "home", tmp_path / "short", 11, "--history", "stored", days=DAYS + 1,
                  env_extra={"TRADELOOP_MARKET_SOURCE": STORED})
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"lacks days the simulation needs ({START - timedelta(days=2)}..{missing}" in r.stderr, r.stderr
    assert f"1 of {2 + DAYS + 1} days, first {missing}" in r.stderr
    assert not (tmp_path / "short").exists()  # refused before anything was created


def test_the_simulated_stream_follows_a_promoted_release(pg_url, engine, tmp_path):
    """After the tuning step the simulation polls releases as the worker does (streaming/releases.py): a
    promoted release is swapped into the slot running its strategy, with a timeline line."""
    from orchestration.simulation import environment as env
    from orchestration.simulation.runner import Simulation, SimulationSpec, _ns
    from orchestration.simulation.timeline import Timeline
    from storage import releases as rel

    account = "sim-release-follow"
    ov = env.overrides(home=tmp_path / "home", database_url=pg_url, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                       model_name="sim-release-follow", symbols=list(SYMBOLS), seed=3,
                       history_start=(START - timedelta(days=3)).isoformat())
    ov["TRADELOOP_ACCOUNT"] = account
    with env.simulation_settings(ov) as settings:
        timeline = Timeline()
        sim = Simulation(SimulationSpec(start=START, days=1), settings, timeline)
        sim.start_stream(_ns(START))
        slot = next(s for s, v in sim.trader.slots_view().items() if v["strategy"] == "sma_cross")
        sim.follow_releases(_ns(START, 3))
        assert not [ln for ln in timeline.lines() if "now runs" in ln]  # nothing promoted: nothing changes
        with engine.begin() as conn:
            rel.seed_release(conn, account, "sma_cross", dict(sim.trader.slots_view()[slot]["params"]), actor="test")
            cand = rel.create_release(conn, account, "sma_cross", {"fast": 7, "slow": 40}, {"study": "t"}, source="tune:t")
            rel.promote(conn, account, "sma_cross", cand.version, actor="test", reason="better out of sample")
        sim.follow_releases(_ns(START, 3))
        sim.store.close()
    view = sim.trader.slots_view()[slot]
    assert view["release"] == cand.version and view["params"]["fast"] == 7 and view["params"]["slow"] == 40
    [line] = [ln for ln in timeline.lines() if "now runs" in ln]
    assert f"stream slot {slot} now runs sma_cross release v{cand.version}" in line
    with engine.connect() as conn:
        audited = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'release_applied' "
                                       "AND scope = :s"), {"s": f"account:{account}/slot:{slot}"}).scalar()
    assert audited == 1
