"""`tradeloop retrain` / `tradeloop model status` as real processes against the test PostgreSQL and a sqlite
MLflow; the decay sensor evaluated for real (build_sensor_context, ephemeral instance) on paper trades and
stored features."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import sqlalchemy as sa

from assets.ml import MLResource, ml_features, ml_labels
from assets.resources import PostgresResource
from deploy.settings import get_settings
from orchestration.automation import decay_sensor

ml_decay_sensor = decay_sensor(get_settings())

from .conftest import ORIGIN, sim_bars, write_clean_bars

TRADELOOP = Path(sys.executable).parent / "tradeloop"


def _cli(args, env, cwd):
    return subprocess.run([str(TRADELOOP), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_retrain_cli_end_to_end(engine, pg_url, tmp_path):
    exchange, model_name = "clitest", "cli-m"
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    # 3 days: the first only warms the default 1440-bar feature look-back up for the other two
    write_clean_bars(engine, sim_bars(3 * 1440, seed=41, exchange=exchange))
    # the same resource the CLI builds from the settings below (defaults + tracking URI, model, exchange)
    res = {"db": PostgresResource(url=pg_url), "ml": MLResource(tracking_uri=tracking_uri, model_name=model_name,
                                                               exchange=exchange)}
    for day in ("2026-11-02", "2026-11-03"):
        assert dg.materialize([ml_features, ml_labels], partition_key=day, resources=res).success
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "PYTEST_CURRENT_TEST")}
    env.update({"DATABASE_URL": pg_url, "MLFLOW_TRACKING_URI": tracking_uri, "TRADELOOP_MODEL_NAME": model_name,
                "TRADELOOP_MARKET_SOURCE": exchange, "TRADELOOP_HOME": str(tmp_path / "home")})
    # cwd in tmp: a sqlite-backed MLflow puts artifacts under ./mlruns
    r = _cli(["retrain", "--days", "2"], env, tmp_path)
    print(r.stdout[-2000:], r.stderr[-3000:] if r.returncode else "")
    assert r.returncode == 0, r.stderr[-3000:]
    # progress and the verdict on the terminal; library warnings and Dagster's event log only in the log file
    assert r.stdout.splitlines()[0].startswith("training a challenger on 2 day(s)"), r.stdout
    noise = [ln for ln in (r.stdout + r.stderr).splitlines()
             if any(w in ln for w in ("Failed to import", "DEBUG", "Warning", "WARNING", "dagster - "))]
    assert not noise and len(r.stdout.splitlines()) <= 4, r.stdout + r.stderr
    log = (tmp_path / "home" / "logs" / "cli-retrain.log").read_text()
    assert "STEP_START" in log or "ml_challenger" in log
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("challenger v")][-1]
    version = int(line.split()[1][1:])
    with engine.connect() as conn:
        status, gate = conn.execute(sa.text("SELECT status, gate FROM ml_models WHERE model_name = :m AND version = :v"),
                                    {"m": model_name, "v": version}).one()
    # the gate's decision is recorded whichever way it went, and agrees with what the CLI printed
    assert gate is not None and gate["reason"] and isinstance(gate["passed"], bool)
    assert status == ("champion" if gate["passed"] else "rejected")
    assert ("PASSED" in line) == gate["passed"] and gate["reason"] in line

    s = _cli(["model", "status"], env, tmp_path)
    assert s.returncode == 0, s.stderr[-2000:]
    out = json.loads(s.stdout)
    print(json.dumps(out, indent=1, default=str)[:1500])
    assert out["model_name"] == model_name and out["challenger"] == str(version)
    assert out["champion"] == (str(version) if gate["passed"] else None)
    assert [(v["version"], v["status"], v["gate_reason"]) for v in out["versions"]] == [(version, status, gate["reason"])]

    # no features for the window asked for: one clear line, non-zero exit, nothing registered
    bad = _cli(["retrain", "--days", "2", "--end-date", "2026-10-01"], env, tmp_path)
    print("bad window:", bad.returncode, bad.stderr.strip().splitlines()[-1:])
    assert bad.returncode != 0 and "nothing registered" in bad.stderr, bad.stderr[-2000:]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml_models WHERE model_name = :m"), {"m": model_name}).scalar() == 1


# ---- the decay sensor ------------------------------------------------------------------------------------

def _ts(minutes: int) -> datetime:
    return ORIGIN + timedelta(minutes=minutes)


def _store_champion_and_features(engine, ml: MLResource, shift: float) -> None:
    """A champion trained on [day 0 00:00, 10:00) and 10 h of recent features two days later; ``shift``
    moves ret_1's recent distribution (in standard deviations). Deterministic ids: reruns add nothing."""
    from ml.features import FEATURE_NAMES, FEATURE_SET_VERSION
    from storage.ml import record_model

    rng = np.random.default_rng(5)
    rows = []
    for start, drift in ((0, 0.0), (2 * 1440, shift)):
        for i in range(600):
            vals = {n: float(rng.normal()) for n in FEATURE_NAMES}
            vals["ret_1"] += drift
            rows.append({"fs": ml.feature_set(), "e": ml.exchange, "ts": _ts(start + i), "v": json.dumps(vals)})
    ns = int(ORIGIN.timestamp()) * 1_000_000_000
    with engine.begin() as conn:
        conn.execute(sa.text("""INSERT INTO ml_feature_sets (feature_set, version, names, params, symbols)
                                VALUES (:fs, :ver, CAST(:n AS jsonb), '{}'::jsonb, '[]'::jsonb)
                                ON CONFLICT (feature_set) DO NOTHING"""),
                     {"fs": ml.feature_set(), "ver": FEATURE_SET_VERSION, "n": json.dumps(FEATURE_NAMES)})
        conn.execute(sa.text("""INSERT INTO ml_features (feature_set, exchange, symbol, ts, vals)
                                VALUES (:fs, :e, 'BTC/USDT', :ts, CAST(:v AS jsonb)) ON CONFLICT DO NOTHING"""), rows)
        record_model(conn, ml.model_name, "1", "run-1", "fs=x", "champion",
                     {"window_start_ns": ns, "holdout_start_ns": ns + 600 * 60 * 1_000_000_000})


def _store_round_trips(engine, account: str, wins: int, losses: int, model_name: str = "decay-steady",
                       slot: str = "ml_champion", shadow_model: str | None = None) -> None:
    """``wins + losses`` closed long round trips of the stream slot ``slot`` in ``account`` (paper mode),
    written as the stream writes them (storage.stream.write_batch): its fills, and its live signals naming
    ``model_name`` (plus, with ``shadow_model``, shadow signals of a challenger on the same bars)."""
    from decimal import Decimal

    from storage.stream import write_batch
    from streaming.trader import SignalOut
    from trading.records import Fill, Liquidity, Side, stable_id

    fills, signals = [], []
    for k in range(wins + losses):
        exit_px = 101 + k % 3 if k < wins else 99 - k % 3  # wins first, then losses
        for j, (side, px, target) in enumerate(((Side.BUY, 100, 1.0), (Side.SELL, exit_px, 0.0))):
            ns = int(_ts(2 * 1440 + 2 * k + j).timestamp()) * 1_000_000_000
            fills.append(Fill(f"{account}-{k}-{j}", f"{account}-{k}-{j}", account, slot, "sim", "BTC/USDT", side,
                              Decimal(px), Decimal(1), Decimal(0), "USDT", Liquidity.TAKER, ns))
            signals.append(SignalOut(stable_id("signal", account, slot, "BTC/USDT", ns), slot, "BTC/USDT", target, ns,
                                     model_name, "1", score=0.5))
            if shadow_model:
                signals.append(SignalOut(stable_id("shadow", account, slot, "BTC/USDT", ns), slot, "BTC/USDT", target,
                                         ns, shadow_model, "2", score=0.5, shadow=True))
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account=account, fills=fills, signals=signals)


def _evaluate(pg_url, **ml_kwargs):
    ml = MLResource(tracking_uri="sqlite:///unused.db", **ml_kwargs)  # the sensor never opens MLflow
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"db": PostgresResource(url=pg_url), "ml": ml})
        return ml_decay_sensor(ctx)


def test_decay_sensor_requests_retrain_on_decay_and_drift_only(engine, pg_url):
    steady = dict(model_name="decay-steady", exchange="decay-steady")
    drifted = dict(model_name="decay-drift", exchange="decay-drift")
    _store_champion_and_features(engine, MLResource(tracking_uri="x", **steady), shift=0.0)
    _store_champion_and_features(engine, MLResource(tracking_uri="x", **drifted), shift=3.0)
    _store_round_trips(engine, "decay-good", wins=20, losses=5)
    _store_round_trips(engine, "decay-bad", wins=4, losses=21)

    healthy = _evaluate(pg_url, monitor_account="decay-good", **steady)
    assert isinstance(healthy, dg.SkipReason), healthy

    decayed = _evaluate(pg_url, monitor_account="decay-bad", **steady)
    assert isinstance(decayed, dg.RunRequest), decayed
    reason = decayed.tags["tradeloop/retrain_reason"]
    print("decay:", reason)
    assert "hit rate 0.16 < 0.45 over 25 trades" in reason and "per-trade Sharpe" in reason and "drift" not in reason
    assert decayed.run_key.startswith("decay-")

    drift = _evaluate(pg_url, monitor_account="decay-good", **drifted)
    assert isinstance(drift, dg.RunRequest), drift
    print("drift:", drift.tags["tradeloop/retrain_reason"])
    assert drift.tags["tradeloop/retrain_reason"].startswith("feature drift: PSI of ret_1 = ")

    # an account with too few trades says nothing about performance: no request from trades alone
    assert isinstance(_evaluate(pg_url, monitor_account="decay-nobody", **steady), dg.SkipReason)
    # the sensor's job is retrain
    assert ml_decay_sensor.job_name == "retrain"


def test_decay_sensor_watches_the_slot_the_stream_wrote_for_the_model(engine, pg_url):
    """The stream records its slot names (ml_champion, or whatever TRADELOOP_STREAM_STRATEGIES calls it),
    not the strategy's class name: the sensor finds the slot through the signals that name the model.
    A challenger scored in shadow on the same slot is not judged by the champion's trades."""
    steady = dict(model_name="decay-slot", exchange="decay-slot")
    _store_champion_and_features(engine, MLResource(tracking_uri="x", **steady), shift=0.0)
    _store_round_trips(engine, "decay-slot-bad", wins=4, losses=21, model_name="decay-slot", slot="my_ml_slot",
                       shadow_model="decay-challenger")
    decayed = _evaluate(pg_url, monitor_account="decay-slot-bad", **steady)
    assert isinstance(decayed, dg.RunRequest), decayed
    assert "over 25 trades" in decayed.tags["tradeloop/retrain_reason"]
    # the shadow model never traded: its name finds no slot, so no performance verdict for it
    other = dict(model_name="decay-challenger", exchange="decay-slot")
    assert isinstance(_evaluate(pg_url, monitor_account="decay-slot-bad", **other), dg.SkipReason)
    # an explicit slot still overrides the discovery
    assert isinstance(_evaluate(pg_url, monitor_account="decay-slot-bad", monitor_strategy="nobody", **steady),
                      dg.SkipReason)
