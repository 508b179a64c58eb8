"""The online model kind: a River classifier that learns from every labelled bar of the stream.

One definition of everything it sees: the feature rows are ``ml.features.OnlineFeatures``' (the stream's
``FeatureParams``), the labels are the batch training's triple-barrier labels (``ml.labels.triple_barrier``
on the same closes and the same 20-bar volatility), and its score has the batch models' meaning:
P(label = +1) - P(label = -1), in [-1, 1].

No look-ahead: a bar's label needs the ``horizon`` bars after it, so bar t is learned when bar t + h closes
(``OnlineLabels``), and a bar is scored with what was learned before it.

Persistence and promotion (docs/ARCHITECTURE.md, "Models"): the learner's state is checkpointed to MLflow as
an ordinary pyfunc version of the same registered model (``OnlinePyfunc``: it scores a frame like every
other version, so ``ChampionModel``, the gate and rollback need nothing new).  The newest checkpoint carries
the ``online`` alias, where a restarted worker resumes learning.  At each checkpoint the *previous* one is
proposed as the ``challenger`` (an ``ml_models`` row) with a holdout window it never learned from: from
``horizon + 1`` bars after its last learned bar (purged) to the newest bar seen.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections import deque
from itertools import islice
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ml.features import FEATURE_NAMES, FeatureParams
from ml.labels import LabelParams, triple_barrier
from trading import indicators as ind
from trading.marketdata.timeframes import interval_ns

log = logging.getLogger(__name__)

ONLINE_ALIAS = "online"
KIND = "river"


class OnlineError(ValueError):
    """An online model that cannot be built, restored or checkpointed as asked."""


# ---- labels as they become known ---------------------------------------------------------------

class _Pending:
    __slots__ = ("vol", "items")

    def __init__(self, vol_window: int) -> None:
        self.vol = ind.RollingVolatility(vol_window)  # the incremental twin of labels.py's rolling_volatility
        self.items: deque[tuple[int, dict[str, float] | None, float, float]] = deque()  # ts, feats, close, vol


class OnlineLabels:
    """Triple-barrier labels of a stream of bars, each released when it is known and not before.

    ``update(symbol, ts, close, feats)`` for every bar of a symbol, in time order; it returns
    ``(ts, feats, label)`` of the bar ``horizon`` bars back once this bar has closed its window (None
    otherwise, or when that bar had no volatility yet / no feature row).  Same rule, same numbers as
    ``ml.labels.compute_labels`` over the same bars (a test holds them equal)."""

    def __init__(self, params: LabelParams = LabelParams()) -> None:
        if params.horizon < 1 or params.barrier_k <= 0:
            raise OnlineError(f"horizon must be >= 1 and barrier_k > 0, got {params}")
        self.params = params
        self._by_symbol: dict[str, _Pending] = {}

    def update(self, symbol: str, ts: int, close: float, feats: dict[str, float] | None
               ) -> tuple[int, dict[str, float] | None, int] | None:
        p = self.params
        st = self._by_symbol.get(symbol)
        if st is None:
            st = self._by_symbol[symbol] = _Pending(p.vol_window)
        v = st.vol.update(close)
        st.items.append((ts, feats, close, math.nan if v is None else v))
        if len(st.items) <= p.horizon:
            return None
        t0, f0, c0, vol0 = st.items.popleft()
        if math.isnan(vol0):
            return None
        # the batch function on exactly this bar's window: the label definition lives in one place
        closes = np.array([c0] + [it[2] for it in islice(st.items, p.horizon)])
        vols = np.full(len(closes), math.nan)
        vols[0] = vol0
        label, _ = triple_barrier(closes, vols, p.horizon, p.barrier_k)
        return t0, f0, int(label[0])

    @property
    def pending(self) -> int:
        return sum(len(s.items) for s in self._by_symbol.values())


# ---- the River model -----------------------------------------------------------------------------

def new_river_model() -> Any:
    """Standardised features into one-vs-rest logistic regressions over the labels {-1, 0, 1}: cheap per
    bar (tens of microseconds) and well behaved from few rows."""
    from river import compose, linear_model, multiclass, optim, preprocessing

    return compose.Pipeline(
        preprocessing.StandardScaler(),
        multiclass.OneVsRestClassifier(linear_model.LogisticRegression(optimizer=optim.SGD(0.01))),
    )


def river_score(model: Any, feats: dict[str, float]) -> float:
    proba = model.predict_proba_one({k: float(feats[k]) for k in FEATURE_NAMES})
    if not proba:
        return 0.0
    total = sum(proba.values()) or 1.0  # one-vs-rest probabilities need not sum to one
    return (float(proba.get(1, 0.0)) - float(proba.get(-1, 0.0))) / total


@dataclass
class LearnerState:
    """What a checkpoint holds besides the River model: the last learned bar of each symbol (replayed bars
    at or before it are not learned twice), how many rows it learned, and the parameters it is bound to."""

    feature_params: dict[str, Any]
    label_params: dict[str, Any]
    learned_until: dict[str, int] = field(default_factory=dict)
    learned_from: int | None = None  # the first learned bar: the start of its "training window"
    n_learned: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)


class OnlineModel:
    """The stream's online learner: ``observe`` every bar (learns the bars whose labels just became known),
    ``score`` a feature row (``(score, version)``, or None until ``min_learned`` rows were learned).

    ``version`` names the state the scores come from: ``online`` before any checkpoint, ``online@vN`` after
    checkpoint (or resume from) registered version N.  Checkpoints and the resume go to MLflow (module doc);
    ``save`` and ``resume`` block: the worker calls them in a thread, ``snapshot`` on the event loop."""

    def __init__(self, model_name: str, feature_params: FeatureParams, label_params: LabelParams = LabelParams(), *,
                 tracking_uri: str = "", database_url: str | None = None, checkpoint_every: str = "6h",
                 min_learned: int = 100, clock: Any = time.monotonic) -> None:
        if min_learned < 1:
            raise OnlineError(f"min_learned must be >= 1, got {min_learned}")
        self.model_name, self.tracking_uri, self.database_url = model_name, tracking_uri, database_url
        self.feature_params, self.label_params = feature_params, label_params
        self.min_learned = min_learned
        self.checkpoint_s = interval_ns(checkpoint_every) / 1e9
        self._clock = clock
        self.model = new_river_model()
        self.labels = OnlineLabels(label_params)
        self.state = LearnerState(feature_params.as_dict(), asdict(label_params))
        self.base_version: str | None = None  # the registered checkpoint this state continues from
        self.base_learned_until: dict[str, int] = {}
        self.base_learned_from: int | None = None
        self.last_bar_ts: int | None = None
        self.resumed = False  # resume() was tried (found a checkpoint or not)
        self._last_save = clock()
        self.warning: str | None = None

    # -- the hot path ------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return "online" if self.base_version is None else f"online@v{self.base_version}"

    def observe(self, symbol: str, ts: int, close: float, feats: dict[str, float] | None) -> bool:
        """Feed one closed bar (with its feature row, None while warming up); learn the bar whose label it
        completes.  True when a row was learned."""
        self.last_bar_ts = ts if self.last_bar_ts is None else max(self.last_bar_ts, ts)
        done = self.labels.update(symbol, ts, close, feats)
        if done is None:
            return False
        t0, f0, label = done
        if f0 is None or t0 <= self.state.learned_until.get(symbol, -1):
            return False  # no feature row, or learned already by the checkpoint this state resumed from
        self.model.learn_one({k: float(f0[k]) for k in FEATURE_NAMES}, label)
        st = self.state
        st.learned_until[symbol] = t0
        st.learned_from = t0 if st.learned_from is None else min(st.learned_from, t0)
        st.n_learned += 1
        st.class_counts[str(label)] = st.class_counts.get(str(label), 0) + 1
        return True

    def score(self, feats: dict[str, float]) -> tuple[float, str] | None:
        if self.state.n_learned < self.min_learned:
            return None
        return river_score(self.model, feats), self.version

    @property
    def status(self) -> dict:
        st = self.state
        return {"kind": KIND, "model_name": self.model_name, "version": self.version, "n_learned": st.n_learned,
                "min_learned": self.min_learned, "class_counts": dict(st.class_counts),
                "learned_until": {s: int(t) for s, t in st.learned_until.items()}, "pending_labels": self.labels.pending,
                "label_params": st.label_params, "checkpoint_every_s": self.checkpoint_s, "warning": self.warning}

    # -- checkpoints -------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """The model and its bookkeeping as bytes; cheap, and taken between bars so it is consistent."""
        return pickle.dumps((self.model, self.state, self.last_bar_ts), protocol=pickle.HIGHEST_PROTOCOL)

    def checkpoint_due(self) -> bool:
        return self.last_bar_ts is not None and self._clock() - self._last_save >= self.checkpoint_s

    def save(self, snapshot: bytes) -> str | None:
        """Register ``snapshot`` as a new version with the ``online`` alias, and propose the previous
        checkpoint as ``challenger`` on the bars it never learned from.  Returns the new version, or None
        (with ``warning`` set) when the registry or Postgres is unavailable: learning goes on regardless."""
        self._last_save = self._clock()
        try:
            model, state, last_ts = pickle.loads(snapshot)
            previous, previous_until = self.base_version, dict(self.base_learned_until)
            version = log_checkpoint(model, state, self.tracking_uri, self.model_name)
            if previous is not None and previous_until and last_ts is not None and self.database_url:
                propose(self.database_url, self.tracking_uri, self.model_name, previous, previous_until,
                        self.base_learned_from, last_ts, LabelParams(**state.label_params),
                        FeatureParams.from_dict(state.feature_params))
        except Exception as exc:  # noqa: BLE001 -- a checkpoint failure must not stop the hot path; it is shown
            self.warning = f"online checkpoint failed: {type(exc).__name__}: {exc}"[:500]
            log.warning("%s", self.warning)
            return None
        self.base_version, self.base_learned_until = version, dict(state.learned_until)
        self.base_learned_from = state.learned_from
        self.warning = None
        log.info("online model %s checkpointed as v%s (%d rows learned)", self.model_name, version, state.n_learned)
        return version

    def resume(self) -> bool:
        """Continue from the version carrying the ``online`` alias, if any (once, before the warm-up).  A
        checkpoint with other feature or label parameters is not resumed (its rows would mean something
        else): the learner starts fresh and says why."""
        self.resumed = True
        if not self.tracking_uri:
            return False
        from ml.registry import alias_version

        try:
            version = alias_version(self.tracking_uri, self.model_name, ONLINE_ALIAS)
            if version is None:
                return False
            model, state = load_checkpoint(self.tracking_uri, self.model_name, version)
        except Exception as exc:  # noqa: BLE001 -- no registry: learn from scratch, visibly
            self.warning = f"online resume failed, learning from scratch: {type(exc).__name__}: {exc}"[:500]
            log.warning("%s", self.warning)
            return False
        if state.feature_params != self.feature_params.as_dict() or state.label_params != asdict(self.label_params):
            self.warning = (f"online checkpoint v{version} has other feature/label parameters "
                            f"({state.feature_params}, {state.label_params}); learning from scratch")
            log.warning("%s", self.warning)
            return False
        self.model, self.state = model, state
        self.base_version, self.base_learned_until = version, dict(state.learned_until)
        self.base_learned_from = state.learned_from
        log.info("online model %s resumed from v%s (%d rows learned)", self.model_name, version, state.n_learned)
        return True


# ---- MLflow ----------------------------------------------------------------------------------------

try:
    import mlflow.pyfunc as _pyfunc

    _PythonModel = _pyfunc.PythonModel
except ImportError:  # pragma: no cover -- mlflow is a dependency; this keeps the module importable alone
    _PythonModel = object


class OnlinePyfunc(_PythonModel):
    """A checkpoint as a pyfunc: one score per row, like ``ml.pyfunc_model.SignalModel``."""

    def load_context(self, context) -> None:
        with open(context.artifacts["state"], "rb") as fh:
            self._model, self._state = pickle.load(fh)

    def predict(self, context, model_input, params=None) -> np.ndarray:
        import pandas as pd

        X = pd.DataFrame(model_input)[FEATURE_NAMES].astype(float)
        return np.array([river_score(self._model, row) for row in X.to_dict("records")], dtype=float)


def log_checkpoint(model: Any, state: LearnerState, tracking_uri: str, model_name: str,
                   experiment: str = "tradeloop-online") -> str:
    """Log (model, state) as a pyfunc in a run of ``experiment``, register it under ``model_name`` and move
    the ``online`` alias to it.  Returns the version."""
    import tempfile
    from pathlib import Path

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    if not tracking_uri:
        raise OnlineError("an online checkpoint needs an MLflow tracking URI")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    example = pd.DataFrame([{n: 0.0 for n in FEATURE_NAMES}])
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="tradeloop-online-") as tmp, mlflow.start_run(experiment_id=exp_id) as run:
        path = Path(tmp) / "river_state.pkl"
        path.write_bytes(pickle.dumps((model, state), protocol=pickle.HIGHEST_PROTOCOL))
        mlflow.log_params({"kind": KIND, "n_learned": state.n_learned, **{f"label.{k}": v for k, v in state.label_params.items()}})
        mlflow.log_dict({"learned_until": state.learned_until, "class_counts": state.class_counts}, "online_state.json")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=OnlinePyfunc(), artifacts={"state": str(path)},
            signature=infer_signature(example, np.zeros(1)), pip_requirements=["mlflow", "pandas", "numpy", "river"],
            metadata={"feature_params": state.feature_params, "label_params": state.label_params, "kind": KIND})
        data_hash = f"online;n={state.n_learned};until={max(state.learned_until.values(), default=0)}"
        version = _register(client, model_name, info, run.info.run_id, data_hash)
    return version


def _register(client: Any, model_name: str, info: Any, run_id: str, data_hash: str) -> str:
    """A new version with the ``online`` alias only: ml.training.register would also move ``challenger``,
    displacing the batch challenger at every checkpoint (a checkpoint becomes challenger by ``propose``)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    mv = client.create_model_version(model_name, info.model_uri, run_id=run_id, tags={"training_data_hash": data_hash},
                                     model_id=info.model_id)
    client.set_registered_model_alias(model_name, ONLINE_ALIAS, mv.version)
    return str(mv.version)


def load_checkpoint(tracking_uri: str, model_name: str, version: str) -> tuple[Any, LearnerState]:
    """(River model, LearnerState) of a registered online checkpoint."""
    from ml.serving import load_version

    pyfunc = load_version(model_name, version, tracking_uri)
    inner = pyfunc.unwrap_python_model()
    if not isinstance(inner, OnlinePyfunc):
        raise OnlineError(f"{model_name} v{version} is not an online checkpoint ({type(inner).__name__})")
    return inner._model, inner._state


def propose(database_url: str, tracking_uri: str, model_name: str, version: str, learned_until: dict[str, int],
            learned_from: int | None, last_bar_ts: int, label_params: LabelParams, feature_params: FeatureParams) -> dict[str, Any] | None:
    """Make checkpoint ``version`` the ``challenger`` with the holdout window the promotion gate
    (assets/ml.py ``ml_promotion``, ml/registry.py) backtests it on: from ``horizon + 1`` bars after its
    last learned bar (purged: that label's path overlaps the bars after it) to the newest bar seen.
    None when the window holds no bar yet."""
    from mlflow import MlflowClient

    from ml.registry import CHALLENGER
    from storage import db
    from storage.ml import record_model

    step = interval_ns(feature_params.interval)
    start = max(learned_until.values()) + (label_params.horizon + 1) * step
    end = last_bar_ts + step
    if end <= start:
        return None
    # window_start_ns..holdout_start_ns: what it learned from (drift monitoring's reference, ml/monitoring.py)
    metrics = {"kind": KIND, "holdout_start_ns": start, "window_end_ns": end, "window_start_ns": learned_from,
               "learned_until": learned_until, "online": True}
    engine = db.create_engine(database_url)
    try:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mv = client.get_model_version(model_name, version)
        with engine.begin() as conn:
            record_model(conn, model_name, version, mv.run_id, (mv.tags or {}).get("training_data_hash", "online"),
                         "challenger", metrics)
        client.set_registered_model_alias(model_name, CHALLENGER, version)
    finally:
        engine.dispose()
    log.info("online checkpoint %s v%s proposed as challenger on [%d, %d)", model_name, version, start, end)
    return metrics
