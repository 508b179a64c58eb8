import math

import numpy as np
import polars as pl
import pytest

from ml.features import FEATURE_NAMES, FeatureError, FeatureParams, OnlineFeatures, compute_features, feature_set_hash

from .conftest import SMALL_FEATURES, as_records, nan_equal, sim_bars

PARAMS = FeatureParams(**SMALL_FEATURES)


@pytest.fixture(scope="module")
def bars():
    return sim_bars(900)


@pytest.fixture(scope="module")
def feats(bars):
    return compute_features(bars, PARAMS)


def test_features_are_point_in_time(bars, feats):
    """Perturb every bar after t (all symbols): no feature at or before t may change."""
    t = int(bars["ts"].unique().sort()[600])
    rng = np.random.default_rng(0)
    future = pl.col("ts") > t
    noisy = bars.with_columns(
        *[pl.when(future).then(pl.col(c) * pl.lit(rng.uniform(0.8, 1.2))).otherwise(pl.col(c)).alias(c)
          for c in ("open", "close", "volume")],
    ).with_columns(pl.when(future).then(pl.max_horizontal("open", "close", "high") * 1.01).otherwise(pl.col("high")).alias("high"),
                   pl.when(future).then(pl.min_horizontal("open", "close", "low") * 0.99).otherwise(pl.col("low")).alias("low"))
    changed = compute_features(noisy, PARAMS)
    past = lambda f: f.filter(pl.col("ts") <= t).sort("symbol", "ts")  # noqa: E731
    for name in FEATURE_NAMES:
        assert nan_equal(past(feats)[name].to_numpy(), past(changed)[name].to_numpy()), name
    # the perturbation is real: features after t did change
    after = lambda f: f.filter(pl.col("ts") > t).sort("symbol", "ts")["ret_1"].to_numpy()  # noqa: E731
    assert not nan_equal(after(feats), after(changed))


def test_online_features_equal_batch_bit_for_bit(bars, feats):
    online = OnlineFeatures(sorted(bars["symbol"].unique().to_list()), PARAMS)
    got = {}
    for bar in as_records(bars):
        out = online.update(bar)
        if out is not None:
            got[(bar.symbol, bar.exchange_ts)] = out
    complete = 0
    for row in feats.iter_rows(named=True):
        full = all(not math.isnan(row[n]) for n in FEATURE_NAMES)
        key = (row["symbol"], row["ts"])
        assert full == (key in got), key
        if full:
            complete += 1
            assert [row[n] for n in FEATURE_NAMES] == [got[key][n] for n in FEATURE_NAMES], key
    assert complete > 1000  # the regime and cross-asset windows did warm up
    assert not np.isnan(feats["regime_p_high"].to_numpy()).all()


def test_feature_set_hash_changes_with_params():
    a = feature_set_hash(PARAMS, ["BTC/USDT"])
    assert a == feature_set_hash(FeatureParams(**SMALL_FEATURES), ["BTC/USDT"])
    assert a != feature_set_hash(FeatureParams(**{**SMALL_FEATURES, "cross_window": 21}), ["BTC/USDT"])


def test_bad_bars_are_rejected(bars):
    with pytest.raises(FeatureError, match="lack columns"):
        compute_features(bars.drop("volume"))
    with pytest.raises(FeatureError, match="duplicate"):
        compute_features(pl.concat([bars.head(5), bars.head(5)]))
    with pytest.raises(FeatureError, match="non-positive close"):
        compute_features(bars.with_columns(pl.lit(0.0).alias("close")))
    online = OnlineFeatures(["BTC/USDT"], PARAMS)
    recs = [b for b in as_records(bars) if b.symbol == "BTC/USDT"]
    online.update(recs[1])
    with pytest.raises(FeatureError, match="not after"):
        online.update(recs[0])
    with pytest.raises(FeatureError, match="not in the feature universe"):
        online.update(as_records(bars.filter(pl.col("symbol") == "ETH/USDT").head(1))[0])
