"""Feature drift is measured on what the stream really scored: the stream's own ML strategy and Trader
(in process) over sim ticks with a real MLflow champion, its signals written by the stream's writer
(storage.stream.write_batch), and the decay check reading them back from PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.ml.conftest import store_champion_features
from tests.streaming.conftest import sim_ticks
from tests.streaming.test_ml_stream import SMALL, _bars_trader, register_constant_model, registry

TRAIN_START = datetime(2026, 10, 1, tzinfo=timezone.utc)
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def _store_training(engine, ml, rows: list[dict], shift: float) -> None:
    """The champion's training window: ``rows`` (feature dicts), every feature moved by ``shift``."""
    moved = [(SYMBOLS[i % 3], TRAIN_START + timedelta(minutes=i // 3),
              {k: (v + shift if v is not None else None) for k, v in row.items()}) for i, row in enumerate(rows)]
    ns = int(TRAIN_START.timestamp()) * 1_000_000_000
    store_champion_features(engine, ml, moved, {"window_start_ns": ns, "holdout_start_ns": ns + 86_400 * 1_000_000_000})


def test_drift_is_measured_on_the_features_the_stream_scored(tmp_path, engine):
    from assets.ml import MLResource
    from ml.monitoring import DecayThresholds, decay_reasons
    from ml.serving import ChampionModel
    from storage.ml import live_feature_values
    from storage.stream import write_batch
    from streaming.ml_strategy import RegistrySignal

    uri, exp = registry(tmp_path)
    register_constant_model(uri, exp, "drift-live", 1, alias="champion")
    strat = RegistrySignal(ChampionModel("drift-live", uri, poll_interval_s=10), SYMBOLS, **SMALL)
    trader = _bars_trader(strat, account="drift-live")
    for tick in sim_ticks(240):
        trader.on_tick(tick)
    batch = trader.drain()
    live = [s for s in batch.signals if not s.shadow]
    assert len(live) > 100 and all(s.features and set(s.features) >= {"ret_1"} for s in live)
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account="drift-live", signals=batch.signals, bars=batch.bars)
    with engine.connect() as conn:
        stored = live_feature_values(conn, "drift-live", "drift-live", recent_hours=24)
    assert len(stored) == len(live)

    # trained on exactly what the stream later scored: no drift
    same = MLResource(tracking_uri=uri, model_name="drift-live", exchange="drift-same", **SMALL)
    _store_training(engine, same, stored, shift=0.0)
    assert decay_reasons(engine, same, DecayThresholds(), account="drift-live") == []

    # trained on a market three units away from what the stream scores: drift, measured on live signals
    moved = MLResource(tracking_uri=uri, model_name="drift-live", exchange="drift-moved", **SMALL)
    _store_training(engine, moved, stored, shift=3.0)
    [reason] = decay_reasons(engine, moved, DecayThresholds(), account="drift-live")
    assert reason.startswith("feature drift: PSI of ") and reason.endswith(f"(live signals of v1, {len(live)} rows)")
