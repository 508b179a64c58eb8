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
import pytest
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


@pytest.mark.slow
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


def _store_champion_and_features(engine, ml: MLResource, shift: float, account: str, end_ns: int | None = None) -> None:
    """A champion (v1) trained on 10 h of stored features of day 0, and 600 live signals it scored in
    ``account`` (as the stream writes them) two days later; ``shift`` moves ret_1's live distribution (in
    standard deviations). ``end_ns``: its window_end_ns. Deterministic ids: reruns add nothing."""
    from ml.features import FEATURE_NAMES
    from storage.stream import write_batch
    from streaming.trader import SignalOut
    from trading.records import stable_id

    from .conftest import store_champion_features

    rng = np.random.default_rng(5)

    def row(drift: float) -> dict:
        vals = {n: float(rng.normal()) for n in FEATURE_NAMES}
        vals["ret_1"] += drift
        return vals

    ns = int(ORIGIN.timestamp()) * 1_000_000_000
    metrics = {"window_start_ns": ns, "holdout_start_ns": ns + 600 * 60 * 1_000_000_000}
    store_champion_features(engine, ml, [("BTC/USDT", _ts(i), row(0.0)) for i in range(600)],
                            metrics if end_ns is None else {**metrics, "window_end_ns": end_ns})
    live = []
    for i in range(600):
        t = int(_ts(2 * 1440 + i).timestamp()) * 1_000_000_000
        live.append(SignalOut(stable_id("signal", account, "ml_champion", "BTC/USDT", t, ml.model_name), "ml_champion",
                              "BTC/USDT", 0.0, t, ml.model_name, "1", score=0.5, features=row(shift)))
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account=account, signals=live)


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
    _store_champion_and_features(engine, MLResource(tracking_uri="x", **steady), shift=0.0, account="decay-good")
    _store_champion_and_features(engine, MLResource(tracking_uri="x", **drifted), shift=3.0, account="decay-good")
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
    assert drift.tags["tradeloop/retrain_reason"].endswith("(live signals of v1, 600 rows)")

    # an account with too few trades says nothing about performance: no request from trades alone
    assert isinstance(_evaluate(pg_url, monitor_account="decay-nobody", **steady), dg.SkipReason)
    # the sensor's job is retrain
    assert ml_decay_sensor.job_name == "retrain"


def test_drift_is_judged_on_the_champions_live_rows_only(engine, pg_url):
    """The stored features of recent days are the champion's own training and holdout data: they never
    fire drift (they did, an hour after the first promotion on the default platform). Live rows of
    another version, or too few rows, are not judged either."""
    from ml.monitoring import DecayThresholds, decay_reasons
    from storage.ml import make_champion, record_model, reject_model

    from .conftest import store_champion_features

    # recent stored features three deviations away, no live rows: not judged (before: "PSI ... (stored features)")
    batch = MLResource(tracking_uri="x", model_name="drift-batch", exchange="drift-batch")
    rng = np.random.default_rng(9)
    rows = [("BTC/USDT", _ts(day * 1440 + i), {"ret_1": float(rng.normal()) + 3.0 * (day == 2)})
            for day in (0, 2) for i in range(600)]
    ns = int(ORIGIN.timestamp()) * 1_000_000_000
    store_champion_features(engine, batch, rows, {"window_start_ns": ns, "holdout_start_ns": ns + 600 * 60 * 1_000_000_000})
    assert decay_reasons(engine, batch, DecayThresholds(), account="drift-batch") == []

    ml = MLResource(tracking_uri="x", model_name="drift-stored", exchange="drift-stored")
    _store_champion_and_features(engine, ml, shift=3.0, account="drift-stored")
    assert "feature drift" in decay_reasons(engine, ml, DecayThresholds(), account="drift-stored")[0]
    # the same stored features, but the live rows were scored by v1 and v2 is now the champion
    with engine.begin() as conn:
        record_model(conn, ml.model_name, "2", "run-2", "fs=x", "challenger",
                     {"window_start_ns": 0, "holdout_start_ns": 1})
        make_champion(conn, ml.model_name, "2", gate={"passed": True, "reason": "test"})
    skip = _evaluate(pg_url, monitor_account="drift-stored", model_name="drift-stored", exchange="drift-stored")
    assert isinstance(skip, dg.SkipReason), skip
    # too few live rows of the champion: PSI of 600 rows is judged, of 601+ required it is not
    with engine.begin() as conn:
        reject_model(conn, ml.model_name, "2")
        make_champion(conn, ml.model_name, "1")
    assert decay_reasons(engine, ml, DecayThresholds(min_drift_rows=601), account="drift-stored") == []
    assert decay_reasons(engine, ml, DecayThresholds(min_drift_rows=600), account="drift-stored") != []


def test_decay_sensor_does_not_retrain_twice_on_the_same_days(engine, pg_url):
    """Decay seen before a new day of features exists: retraining on the same rows again fixes nothing, and
    an hourly sensor would retrain hourly. The sensor says why and waits; a new day of features unblocks it."""
    import sqlalchemy as sa

    ml = MLResource(tracking_uri="x", model_name="decay-again", exchange="decay-again")
    day_end = int((ORIGIN + timedelta(days=1)).timestamp()) * 1_000_000_000  # the stored features end on day 0
    _store_champion_and_features(engine, ml, shift=3.0, account="decay-again", end_ns=day_end)
    waiting = _evaluate(pg_url, monitor_account="decay-again", model_name="decay-again", exchange="decay-again")
    assert isinstance(waiting, dg.SkipReason), waiting
    print("waiting:", waiting.skip_message)
    assert waiting.skip_message.startswith("feature drift: PSI of ret_1")
    assert "no retrain yet: v1 was trained on the features up to 2026-11-01; none newer are stored yet" in waiting.skip_message
    with engine.begin() as conn:  # a new day of features arrives
        conn.execute(sa.text("""INSERT INTO ml_features (feature_set, exchange, symbol, ts, vals)
                                SELECT feature_set, exchange, symbol, ts + interval '1 day', vals FROM ml_features
                                WHERE feature_set = :fs AND exchange = :e ON CONFLICT DO NOTHING"""),
                     {"fs": ml.feature_set(), "e": ml.exchange})
    again = _evaluate(pg_url, monitor_account="decay-again", model_name="decay-again", exchange="decay-again")
    assert isinstance(again, dg.RunRequest), again


def test_decay_sensor_watches_the_slot_the_stream_wrote_for_the_model(engine, pg_url):
    """The stream records its slot names (ml_champion, or whatever TRADELOOP_STREAM_STRATEGIES calls it),
    not the strategy's class name: the sensor finds the slot through the signals that name the model.
    A challenger scored in shadow on the same slot is not judged by the champion's trades."""
    steady = dict(model_name="decay-slot", exchange="decay-slot")
    _store_champion_and_features(engine, MLResource(tracking_uri="x", **steady), shift=0.0, account="decay-slot-none")
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
