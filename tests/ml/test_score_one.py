"""SignalModel.score_one (the stream's one-row path) gives exactly predict's score (the DataFrame path)."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from ml.pyfunc_model import SignalModel


@pytest.mark.parametrize("classes", [(-1, 1), (-1, 0, 1), (0, 1)])
def test_score_one_equals_predict(classes):
    rng = np.random.default_rng(3)
    names = ["a", "b", "c"]
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=names)
    y = rng.choice(classes, size=400)
    model = SignalModel("lightgbm", names)
    model._model = lgb.LGBMClassifier(n_estimators=20, verbose=-1, n_jobs=1).fit(X, y)
    rows = pd.DataFrame(rng.normal(size=(50, 3)), columns=names)
    batch = model.predict(None, rows)
    one = np.array([model.score_one(r) for r in rows.to_numpy()])
    assert np.allclose(one, batch, rtol=0, atol=1e-12), np.abs(one - batch).max()
    assert np.abs(batch).max() > 0  # the scores are not trivially zero
