"""The stream builds its features with the parameters the served model was trained with: a model trained with
non-default FeatureParams logs them (MLflow model metadata), ChampionModel reads them back, and the stream's
ml_signal -- configured with the defaults -- feeds that model features computed with the model's parameters."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from ml.features import FEATURE_NAMES, FeatureError, FeatureParams, compute_features
from ml.labels import LabelParams, compute_labels
from ml.serving import ChampionModel
from ml.training import TrainConfig, build_dataset, train_and_register

from .conftest import SMALL_FEATURES, as_records, sim_bars
from tests.trading.context import FlatContext

TRAINED = FeatureParams(**SMALL_FEATURES)
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


class RecordingChampion(ChampionModel):
    """The production ChampionModel, remembering the feature rows it is asked to score."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, float]] = []

    def score(self, features):
        self.rows.append(dict(features))
        return super().score(features)


def test_feature_params_round_trip_and_bad_metadata():
    assert FeatureParams.from_dict(TRAINED.as_dict()) == TRAINED
    with pytest.raises(FeatureError, match="are not exactly"):
        FeatureParams.from_dict({"cross_window": 5})


def test_stream_features_follow_the_served_models_params(tracking_uri):
    from streaming.ml_strategy import RegistrySignal

    assert TRAINED != FeatureParams()  # the point: not the defaults the stream is configured with
    bars = sim_bars(1200, seed=5)
    ds = build_dataset(compute_features(bars, TRAINED), compute_labels(bars, LabelParams(horizon=10, barrier_k=1.5)))
    result = train_and_register(ds, TrainConfig(n_splits=2, min_fold_rows=100, use_autogluon=False, lgbm_estimators=20),
                                tracking_uri, "fp-m", "fs-test", "ls-test", TRAINED)
    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        "fp-m", "champion", result.version)

    champion = RecordingChampion("fp-m", tracking_uri, poll_interval_s=1e9)
    assert champion.refresh() and champion.feature_params == TRAINED  # logged with the model, read back

    strategy = RegistrySignal(champion, SYMBOLS)  # stream defaults: cross_window 30, regime_window 720, ...
    assert strategy.feature_params == FeatureParams()
    ctx = FlatContext(Decimal(100_000), SYMBOLS)
    records = as_records(bars)
    for bar in records:
        ctx.ts = bar.exchange_ts
        strategy.on_bar(bar, ctx)
    assert strategy.view()["feature_params"] == TRAINED.as_dict()
    assert champion.rows, strategy.flat_reason

    # the last row scored is the batch feature row of the trained parameters, not of the stream's defaults
    last = records[-1]
    def batch_row(params):
        f = compute_features(bars, params).filter((pl.col("symbol") == last.symbol) & (pl.col("ts") == last.exchange_ts))
        return np.array([f[n][0] for n in FEATURE_NAMES], dtype=float)

    scored = np.array([champion.rows[-1][n] for n in FEATURE_NAMES], dtype=float)
    assert np.array_equal(scored, batch_row(TRAINED), equal_nan=True)
    assert not np.array_equal(scored, batch_row(FeatureParams()), equal_nan=True)
