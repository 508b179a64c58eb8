"""The champion model for the stream: whichever version carries the ``champion`` alias in MLflow.

``ChampionModel`` asks the registry which version is champion, loads ``models:/NAME@champion`` only when
that version changes, and swaps it in with one tuple assignment (a reader sees the old or the new model,
never a mix). A registry outage keeps the last loaded model trading and is reported in ``status``.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Callable

log = logging.getLogger(__name__)

ALIAS = "champion"


def _fail_fast_http() -> None:
    # MLflow retries HTTP calls with exponential backoff for minutes by default; a stream polling the
    # registry must notice an outage in seconds and keep trading with its last model.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _is_missing_alias(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND") or "not found" in str(exc).lower()


def load_version(model_name: str, version: str, tracking_uri: str) -> Any:
    """Load one registered version as a pyfunc model without touching MLflow's global URIs."""
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    uri = client.get_model_version_download_uri(model_name, version)
    # a fresh directory that outlives the call: some flavours (AutoGluon) read their files lazily
    dst = tempfile.mkdtemp(prefix=f"tradeloop-model-v{version}-")
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst, tracking_uri=tracking_uri)
    return mlflow.pyfunc.load_model(local)


class ChampionModel:
    """The model carrying the ``champion`` alias of ``model_name``, refreshed at most every ``poll_interval_s``."""

    def __init__(self, model_name: str, tracking_uri: str, poll_interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, alias: str = ALIAS) -> None:
        _fail_fast_http()
        if not alias:
            raise ValueError("ChampionModel needs a registry alias (e.g. 'champion' or 'challenger')")
        self.alias = alias  # the stream's shadow mode follows 'challenger' with the same machinery
        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._loaded: tuple[Any, str] | None = None  # (pyfunc model, version): swapped as one object
        self._feature_names: list[str] = []
        self._params_of: tuple[Any, Any] = (None, None)  # (loaded pair, its FeatureParams)
        self._inner_of: tuple[Any, Any, Any] = (None, None, None)  # (loaded pair, input names, its SignalModel)
        self._last_poll: float | None = None
        self._loaded_at: str | None = None
        self._warning: str | None = None
        self._reason: str | None = "not refreshed yet"
        self._logged_outage = False

    # -- registry ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Load the champion if its version changed. True when a new model was swapped in."""
        from mlflow import MlflowClient

        self._last_poll = self._clock()
        try:
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            try:
                version = str(client.get_model_version_by_alias(self.model_name, self.alias).version)
            except Exception as exc:
                if not _is_missing_alias(exc):
                    raise
                self._loaded = None
                self._feature_names = []
                self._reason = f"no model of {self.model_name!r} carries the {self.alias!r} alias yet"
                self._warning = None
                self._logged_outage = False
                return False
            if self._loaded is not None and self._loaded[1] == version:
                self._warning, self._logged_outage = None, False
                return False
            model = load_version(self.model_name, version, self.tracking_uri)
            logged_feature_params(model)  # malformed parameters: a model that fails to load, not a guess
        except Exception as exc:  # registry down, artefact store gone, model that fails to load
            self._warning = f"registry/model unavailable at {self.tracking_uri}: {type(exc).__name__}: {exc}"[:500]
            if not self._logged_outage:
                log.warning("%s refresh failed, keeping version %s: %s", self.alias,
                            self._loaded[1] if self._loaded else None, self._warning)
                self._logged_outage = True
            return False
        names = _signature_inputs(model)
        self._loaded = (model, version)  # the atomic swap
        self._feature_names = names
        self._loaded_at = datetime.now(timezone.utc).isoformat()
        self._warning, self._reason, self._logged_outage = None, None, False
        log.info("%s %s version %s loaded", self.alias, self.model_name, version)
        return True

    def maybe_refresh(self) -> bool:
        """refresh() if ``poll_interval_s`` has passed since the last poll (cheap to call per event)."""
        if self._last_poll is not None and self._clock() - self._last_poll < self.poll_interval_s:
            return False
        return self.refresh()

    # -- use --------------------------------------------------------------------------------------
    def current(self) -> tuple[Any, str] | None:
        return self._loaded

    @property
    def feature_names(self) -> list[str]:
        return list(self._feature_names)

    @property
    def feature_params(self):
        """The ml.features.FeatureParams the loaded model was trained with (logged with it), or None when no
        model is loaded or it logged none (a model registered before they were logged)."""
        loaded = self._loaded
        if loaded is None:
            return None
        if self._params_of[0] is not loaded:  # read per bar by the stream: parsed once per loaded model
            self._params_of = (loaded, logged_feature_params(loaded[0]))
        return self._params_of[1]

    def predict(self, features: dict[str, float]) -> float | None:
        """Score of one feature row (dict by feature name); None when no model is loaded."""
        scored = self.score(features)
        return None if scored is None else scored[0]

    def score(self, features: dict[str, float]) -> tuple[float, str] | None:
        """(score, version that made it) of one feature row; None when no model is loaded.  The version
        comes from the same read of the loaded pair as the model, so a swap by a concurrent refresh
        cannot label one version's score with another's number."""
        loaded = self._loaded  # read once: a concurrent swap cannot mix two models in one prediction
        if loaded is None:
            return None
        import pandas as pd

        model, _ = loaded
        if self._inner_of[0] is not loaded:  # per loaded model, not per bar
            self._inner_of = (loaded, _signature_inputs(model), _signal_model(model))
        _, names, inner = self._inner_of
        missing = [n for n in names if n not in features]
        if missing:
            raise KeyError(f"feature row lacks {missing} needed by {self.model_name} v{loaded[1]}")
        if inner is not None:  # the platform's SignalModel: one row without pyfunc's DataFrame round trip
            return inner.score_one([float(features[n]) for n in inner.feature_names]), loaded[1]
        row = pd.DataFrame([{n: float(features[n]) for n in names}], columns=names)
        out = model.predict(row)
        return float(out.iloc[0] if hasattr(out, "iloc") else out[0]), loaded[1]

    @property
    def status(self) -> dict:
        loaded = self._loaded
        return {
            "model_name": self.model_name,
            "alias": self.alias,
            "version": loaded[1] if loaded else None,
            "loaded_at": self._loaded_at if loaded else None,
            "warning": self._warning,
            "reason": self._reason,
        }


def logged_feature_params(model: Any):
    """FeatureParams from a pyfunc model's metadata (ml/training.py logs them), or None."""
    from ml.features import FeatureParams

    meta = getattr(getattr(model, "metadata", None), "metadata", None) or {}
    return FeatureParams.from_dict(meta["feature_params"]) if "feature_params" in meta else None


def _signal_model(model: Any) -> Any:
    """The platform's SignalModel inside a pyfunc model (ml/pyfunc_model.py), or None for any other model."""
    from ml.pyfunc_model import SignalModel

    try:
        inner = model.unwrap_python_model()
    except Exception:  # noqa: BLE001 -- not a python_model flavour: the pyfunc path scores it
        return None
    return inner if isinstance(inner, SignalModel) and hasattr(inner, "_model") else None


def _signature_inputs(model: Any) -> list[str]:
    sig = model.metadata.get_input_schema() if getattr(model, "metadata", None) else None
    return list(sig.input_names()) if sig is not None else []
