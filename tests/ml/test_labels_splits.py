import numpy as np
import polars as pl
import pytest

from ml.labels import LabelParams, compute_labels, triple_barrier
from ml.splits import SplitError, holdout_split, purged_walk_forward


def test_triple_barrier_by_hand():
    close = np.array([100.0, 101.0, 103.0, 99.0, 95.0, 100.0, 100.5, 100.2, 100.1])
    vol = np.full(len(close), 0.01)  # barriers at +-2 % with k = 2
    label, t1 = triple_barrier(close, vol, horizon=3, k=2.0)
    # bar 0: 101, 103 (>= 102 upper) -> +1 decided at bar 2
    assert (label[0], t1[0]) == (1.0, 2)
    # bar 1: upper 103.02, lower 98.98: 103 no, 99 no, 95 <= lower -> -1 at bar 4
    assert (label[1], t1[1]) == (-1.0, 4)
    # bar 5: 100.5, 100.2, 100.1 inside +-2 % -> 0 at the vertical barrier (bar 8)
    assert (label[5], t1[5]) == (0.0, 8)
    # the last 3 bars have no full horizon: no label
    assert np.isnan(label[6:]).all() and (t1[6:] == -1).all()


def test_compute_labels_forward_returns():
    ts = np.arange(40, dtype=np.int64) * 60_000_000_000
    close = 100.0 * np.cumprod(1 + 0.001 * np.sin(np.arange(40)))
    f = pl.DataFrame({"symbol": ["X"] * 40, "ts": ts, "close": close})
    out = compute_labels(f, LabelParams(horizon=5, barrier_k=1.0))
    assert out["fwd_ret"][0] == pytest.approx(close[5] / close[0] - 1)
    assert out["fwd_ret_1"][3] == pytest.approx(close[4] / close[3] - 1)
    assert out["fwd_ret"][-5:].null_count() == 5 and out["tb_label"][-5:].null_count() == 5
    decided = out.drop_nulls()
    assert (decided["tb_t1"] > decided["ts"]).all()


def test_purged_walk_forward_never_leaks():
    rng = np.random.default_rng(1)
    minute = 60_000_000_000
    t0 = np.repeat(np.arange(3000, dtype=np.int64) * minute, 2)  # two symbols per timestamp
    t1 = t0 + rng.integers(1, 40, len(t0)) * minute
    embargo = 15 * minute
    folds = list(purged_walk_forward(t0, t1, n_splits=4, embargo_ns=embargo))
    assert len(folds) == 4
    for f in folds:
        assert len(f.train) and len(f.test)
        assert (t1[f.train] < f.test_start).all()  # purged: every train label resolved before the test block
        assert (t0[f.train] < f.test_start - embargo).all()  # embargo gap
        assert ((t0[f.test] >= f.test_start) & (t0[f.test] < f.test_end)).all()
        # rows a naive split would have used are dropped: label overlapping the test block
        naive = np.flatnonzero(t0 < f.test_start)
        assert len(naive) > len(f.train)
    starts = [f.test_start for f in folds]
    assert starts == sorted(starts)
    tr, ho, start = holdout_split(t0, t1, 0.2, embargo)
    assert (t1[tr] < start).all() and (t0[ho] >= start).all()


def test_too_little_data_for_a_fold():
    t0 = np.arange(100, dtype=np.int64)
    with pytest.raises(SplitError, match="fold 0: .* need at least 50"):
        list(purged_walk_forward(t0, t0 + 1, n_splits=3, embargo_ns=0))
    with pytest.raises(SplitError, match="t1 < t0"):
        list(purged_walk_forward(t0, t0 - 1, n_splits=1, embargo_ns=0))
