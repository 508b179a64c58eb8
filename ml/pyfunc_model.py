"""The MLflow pyfunc wrapper every registered signal model uses.

``predict`` returns one score per row: P(label = +1) - P(label = -1) of the triple-barrier classifier, in
[-1, 1]; MLSignal trades long above its threshold (default 0). The fitted model is an artefact: a
pickled LightGBM classifier (``kind="lightgbm"``) or an AutoGluon predictor directory (``kind="autogluon"``).
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd


def score_from_proba(proba: pd.DataFrame) -> np.ndarray:
    cols = {int(c): proba[c].to_numpy(dtype=float) for c in proba.columns}
    zero = np.zeros(len(proba))
    return cols.get(1, zero) - cols.get(-1, zero)


class SignalModel(mlflow.pyfunc.PythonModel):
    def __init__(self, kind: str, feature_names: list[str]) -> None:
        if kind not in ("lightgbm", "autogluon"):
            raise ValueError(f"unknown model kind {kind!r}")
        self.kind = kind
        self.feature_names = list(feature_names)

    def load_context(self, context) -> None:
        path = context.artifacts["model"]
        if self.kind == "autogluon":
            from autogluon.tabular import TabularPredictor

            self._model = TabularPredictor.load(path, verbosity=0, require_py_version_match=False)
            self._model.persist()  # models in memory: no disk read per prediction in the stream
        else:
            import joblib

            self._model = joblib.load(path)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        X = pd.DataFrame(model_input)[self.feature_names].astype(float)
        return predict_scores(self.kind, self._model, X)

    def score_one(self, values: np.ndarray) -> float:
        """``predict`` of one row (floats in ``feature_names`` order) without a DataFrame: the stream scores
        one bar at a time, and pyfunc's DataFrame path costs about a hundred times the model's own work.
        LightGBM: the booster's probabilities in ``classes_`` order, as predict_proba gives them."""
        booster = getattr(self._model, "booster_", None) if self.kind == "lightgbm" else None
        if booster is None:  # AutoGluon, or any scikit-learn classifier: its own predict_proba path
            return float(self.predict(None, pd.DataFrame([values], columns=self.feature_names))[0])
        raw = np.asarray(booster.predict(np.asarray(values, dtype=float).reshape(1, -1)))
        proba = np.array([1.0 - raw[0], raw[0]]) if raw.ndim == 1 else raw[0]
        classes = [int(c) for c in self._model.classes_]
        return float((proba[classes.index(1)] if 1 in classes else 0.0)
                     - (proba[classes.index(-1)] if -1 in classes else 0.0))


def predict_scores(kind: str, model, X: pd.DataFrame) -> np.ndarray:
    if kind == "autogluon":
        return score_from_proba(model.predict_proba(X))
    proba = pd.DataFrame(model.predict_proba(X), columns=list(model.classes_))
    return score_from_proba(proba)
