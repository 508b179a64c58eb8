"""The registry-backed ML strategy of the stream: MLSignal's thresholds, OnlineFeatures, ChampionModel.

``RegistrySignal`` is ``trading.strategies.ml_signal.MLSignal`` (same parameters and long / flat / short
rule) whose score comes from the model carrying the ``champion`` alias in MLflow, on the feature row
``ml.features.OnlineFeatures`` gives for each closed bar (the floats training used).  In shadow mode a
second ChampionModel follows the ``challenger`` alias on the same feature rows; its scores are recorded
(``shadow=True`` signals) and never reach the engine, so they cannot trade.  With ``online=True`` the shadow
model is instead an online learner (ml/online.py, River) that learns from every bar whose label has become
known and is scored, recorded and compared the same way.

In the stream configuration (TRADELOOP_STREAM_STRATEGIES / streaming/config.py) the strategy name
``ml_signal`` means this class; ``create_stream_strategy`` builds it with the registry settings.

Why signals are recorded here and not by the Trader's tap: the tap only sees *changes* of target (what
the engine acts on), while model monitoring and the A/B comparison need every scored bar, with the score
and the version that made it.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from typing import Any, Callable, Iterable

from ml.features import FeatureError, FeatureParams, OnlineFeatures
from ml.labels import LabelParams
from trading.records import Bar, stable_id
from trading.strategies import create_strategy
from trading.strategies.base import Context, Param, ParameterValueError, Strategy, TargetPosition
from trading.strategies.capabilities import ModelBacked, OwnSignals, Replayable, WarmsFromHistory
from trading.strategies.ml_signal import MLSignal, direction

log = logging.getLogger(__name__)

STREAM_ML_NAME = "ml_signal"
REFIT_CHOICES = ("15m", "30m", "1h", "2h", "3h", "4h", "6h", "12h", "1d")


class RegistrySignal(MLSignal, ModelBacked, OwnSignals, Replayable, WarmsFromHistory):
    name = STREAM_ML_NAME
    version = "registry"  # the model version is per signal (model_version), not a code version
    params = {
        **{k: v for k, v in MLSignal.params.items() if k != "lookback"},  # features keep their own windows
        # Features are built with the parameters the served model was logged with (ml/training.py); these
        # (defaults: ml.features.FeatureParams) only serve the warm-up before a model is loaded and models
        # registered before parameters were logged.
        "cross_window": Param(int, FeatureParams.cross_window, 2, 100_000, doc="cross-asset window of the features (bars)"),
        "regime_window": Param(int, FeatureParams.regime_window, 10, 1_000_000, doc="rows the regime mixture is fitted on"),
        "regime_min_fit": Param(int, FeatureParams.regime_min_fit, 10, 1_000_000, doc="fewest rows for a regime fit"),
        "regime_refit": Param("categorical", FeatureParams.regime_refit, choices=REFIT_CHOICES, doc="regime refit block"),
        "shadow": Param("categorical", False, choices=(False, True),
                        doc="also score the 'challenger' alias on the same bars (recorded, never traded)"),
        # ---- online learning (ml/online.py): the shadow model learns from each labelled bar ----
        "online": Param("categorical", False, choices=(False, True),
                        doc="shadow an online (River) model learning from every labelled bar (recorded, never "
                            "traded; checkpointed to MLflow and proposed as challenger)"),
        "online_checkpoint": Param("categorical", "6h", choices=REFIT_CHOICES,
                                   doc="how often the online model is checkpointed to MLflow"),
        "online_min_learned": Param(int, 100, 1, 10_000_000, doc="labelled rows learned before it is scored"),
        "label_horizon": Param(int, LabelParams.horizon, 1, 100_000,
                               doc="online labels: triple-barrier horizon (bars), as ml.labels.LabelParams"),
        "label_barrier_k": Param(float, LabelParams.barrier_k, 1e-6, 1e6,
                                 doc="online labels: barrier width in volatilities, as ml.labels.LabelParams"),
    }

    def __init__(self, champion: Any, symbols: Iterable[str], *, challenger: Any = None, interval: str = "1m",
                 inline_refresh: bool = True, online_model: Any = None, **params: Any) -> None:
        self.champion, self.challenger = champion, challenger
        self.online = online_model  # ml.online.OnlineModel when the parameter online=True
        self.symbols = sorted(symbols)
        if not self.symbols:
            raise ParameterValueError("ml_signal needs the symbol universe of its features (none given)")
        self.interval = interval
        # In the worker a timer refreshes the models off the event loop (registry calls and model loads
        # must not stall the hot path); in process (tests, replays) maybe_refresh runs per bar instead.
        self.inline_refresh = inline_refresh
        self.replaying = False  # set by Trader.restore: warm-up bars build features, no model calls
        self._sink: list | None = None
        self._slot, self._account = STREAM_ML_NAME, ""
        super().__init__(model=champion, **params)
        if self.p["shadow"] and challenger is None:
            raise ParameterValueError("parameter shadow=True needs a challenger model (ChampionModel with alias 'challenger')")
        if self.p["online"] and self.p["shadow"]:
            # one shadow per slot: the paired comparison (ml/shadow.py) pairs the champion with one model
            raise ParameterValueError("parameters online=True and shadow=True exclude each other: a slot shadows one model")
        if self.p["online"] and online_model is None:
            raise ParameterValueError("parameter online=True needs an online model (ml.online.OnlineModel)")

    def reset(self) -> None:
        p = self.p
        self.feature_params = FeatureParams(self.interval, p["cross_window"], p["regime_window"], p["regime_min_fit"],
                                            p["regime_refit"])
        # one feature state per parameter set in use: the strategy's own, and each served model's
        self._online: dict[FeatureParams, OnlineFeatures] = {
            self.feature_params: OnlineFeatures(self.symbols, self.feature_params)}
        self._in_use = (self.feature_params, self.feature_params)  # (champion's, challenger's) parameters
        # symbol -> last target given to the engine; absent until the first live score, so that the first
        # decision after a (re)start is always sent and a position restored from fills follows the model
        self._target: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        self.last: dict[str, dict] = {}  # symbol -> last champion score, for the /model view
        self.flat_reason: str | None = "no bar seen yet"
        self._logged_reason: str | None = None
        self._score_error: str | None = None
        # the bars seen, newest last, enough to rebuild the feature state with history read later
        self._seen: deque[Bar] = deque(maxlen=self.warmup_bars * len(self.symbols))
        self._seen_n = 0  # bars ever appended to _seen: a snapshot's mark
        self.cold_symbols: set[str] = set()  # symbols whose last bar left the champion's features warming up

    @property
    def warmup_bars(self) -> int:
        """Bars to replay at start so the regime fit (and every window) is warm: a full fit window,
        plus one refit block for a block boundary to fall inside, plus the longest indicator window."""
        from trading.marketdata.timeframes import interval_ns

        block = interval_ns(self.p["regime_refit"]) // interval_ns(self.interval)
        return self.p["regime_window"] + block + max(61, self.p["cross_window"] + 1)

    def bind_signals(self, slot: str, account: str, sink: list) -> None:
        """Where this strategy's per-bar signals go (the Trader's batch); called by the Trader's tap."""
        self._slot, self._account, self._sink = slot, account, sink

    def models(self) -> list[Any]:
        return [m for m in (self.champion, self.challenger) if m is not None]

    # -- decisions ---------------------------------------------------------------------------------
    def _direction(self, s: float) -> float:
        return direction(s, self.p)  # the one rule (trading/strategies/ml_signal.py), also the gate's

    def _score(self, model: Any, feats: dict[str, float], role: str) -> tuple[float, str] | None:
        """(score, version) or None; a model that cannot score this row is counted and reported, and the
        caller goes flat: a failing model must not keep an old position nor stop the hot path."""
        try:
            out = model.score(feats)
        except Exception as exc:  # noqa: BLE001 -- any model failure fails closed (flat), visibly
            self.counters[f"{role}_score_errors"] += 1
            self._score_error = f"{role} scoring failed: {type(exc).__name__}: {exc}"[:500]
            return None
        if out is not None and not math.isfinite(out[0]):
            self.counters[f"{role}_score_errors"] += 1
            self._score_error = f"{role} v{out[1]} returned a non-finite score {out[0]!r}"
            return None
        return out

    def _record(self, symbol: str, ts: int, score: float, target: float, model: Any, version: str, shadow: bool,
                features: dict[str, float] | None = None) -> None:
        if self._sink is None:
            return
        from streaming.trader import SignalOut

        sid = stable_id("signal", self._account, self._slot, symbol, ts, "shadow" if shadow else "live")
        self._sink.append(SignalOut(sid, self._slot, symbol, target, ts, model.model_name, version,
                                    score=score, shadow=shadow, features=features))

    def _say(self, reason: str | None) -> None:
        self.flat_reason = reason
        if reason is not None and reason != self._logged_reason:
            log.warning("%s is flat: %s", self._slot, reason)  # once per new reason, not per bar
        self._logged_reason = reason

    def on_bar(self, bar: Bar, ctx: Context) -> list[TargetPosition]:
        if self.inline_refresh and not self.replaying:
            for m in self.models():
                m.maybe_refresh()
            if self.online is not None:
                self.online_upkeep_inline()
        champion_params = self.params_of(self.champion)
        challenger_params = self.params_of(self.challenger) if self.challenger is not None else champion_params
        if (champion_params, challenger_params) != self._in_use:
            self._follow_models(champion_params, challenger_params)
        try:
            rows = {params: online.update(bar) for params, online in self._online.items()}
        except FeatureError as exc:  # a bar out of order or outside the universe: skipped, counted
            self.counters["feature_errors"] += 1
            log.warning("%s: bar skipped by the features: %s", self._slot, exc)
            return []
        self._seen.append(bar)
        self._seen_n += 1
        online_feats = rows[self.feature_params]
        if self.online is not None:
            # every bar, warm-up replay included: learns the bar whose label this close completes
            if self.online.observe(bar.symbol, int(bar.exchange_ts), float(bar.close), online_feats):
                self.counters["online_learned"] += 1
        feats = rows[champion_params]
        if feats is None:
            self.cold_symbols.add(bar.symbol)
            self.counters["warming_up"] += 1
            if bar.symbol not in self._target:
                self._say(f"features warming up (up to {self.warmup_bars} bars per symbol)")
            return []
        self.cold_symbols.discard(bar.symbol)
        if self.replaying:
            return []  # warm-up: the first live bar scores and gives the target
        sym, ts = bar.symbol, ctx.ts
        shadow_feats = rows[challenger_params]
        if self.challenger is not None and shadow_feats is not None:
            shadow = self._score(self.challenger, shadow_feats, "challenger")
            if shadow is not None:
                self.counters["shadow_signals"] += 1
                self._record(sym, ts, shadow[0], self._direction(shadow[0]), self.challenger, shadow[1], True)
        if self.online is not None and online_feats is not None:
            shadow = self._score(self.online, online_feats, "online")
            if shadow is not None:
                self.counters["shadow_signals"] += 1
                self._record(sym, ts, shadow[0], self._direction(shadow[0]), self.online, shadow[1], True)
        scored = self._score(self.champion, feats, "champion")
        if scored is None:
            st = self.champion.status
            self._say(self._score_error if self.champion.current() is not None and self._score_error
                      else (st.get("reason") or st.get("warning") or "no champion model loaded"))
            target = 0.0
            self.counters["flat_no_model"] += 1
        else:
            score, version = scored
            target = self._direction(score)
            self._say(None)
            self._score_error = None
            self.counters["signals"] += 1
            self.last[sym] = {"ts": ts, "score": score, "target": target, "version": version}
            self._record(sym, ts, score, target, self.champion, version, False, feats)
        if self._target.get(sym) == target:
            return []
        self._target[sym] = target
        return [TargetPosition(sym, target)]

    def online_upkeep_inline(self) -> None:
        """In process (tests, replays): resume once, then checkpoint when due, on this thread."""
        o = self.online
        if not o.resumed:
            o.resume()
        elif o.checkpoint_due():
            o.save(o.snapshot())

    # -- warming up from history that arrives while running (WarmsFromHistory) -------------------------
    def warm_snapshot(self) -> tuple[int, list[Bar], tuple[FeatureParams, ...]]:
        """(mark, the bars seen so far, the feature parameter sets in use), taken on the event loop: what
        build_warm_state needs besides the stored history."""
        return self._seen_n, list(self._seen), tuple(self._online)

    def build_warm_state(self, bars: list[Bar], params: tuple[FeatureParams, ...]) -> dict[FeatureParams, OnlineFeatures]:
        """Fresh feature states of ``params``, fed ``bars`` (time order). Touches nothing of the running
        state, so the worker builds it in a thread while bars keep arriving."""
        states = {p: OnlineFeatures(self.symbols, p) for p in params}
        for bar in bars:
            for online in states.values():
                try:
                    online.update(bar)
                except FeatureError:
                    pass  # out of order or outside the universe: skipped, as on the live path
        return states

    def install_warm_state(self, state: dict[FeatureParams, OnlineFeatures], mark: int) -> bool:
        """Swap the built states in after feeding them the bars seen since ``mark``; False (nothing changed)
        when those bars are no longer all kept or the parameter sets in use changed meanwhile."""
        missed = self._seen_n - mark
        if set(state) != set(self._online) or missed > len(self._seen):
            return False
        for bar in list(self._seen)[len(self._seen) - missed:]:
            for online in state.values():
                try:
                    online.update(bar)
                except FeatureError:
                    pass
        self._online = state
        return True

    def params_of(self, model: Any) -> FeatureParams:
        """The feature parameters ``model`` was trained with (logged with it), else the strategy's."""
        return getattr(model, "feature_params", None) or self.feature_params

    def _follow_models(self, *in_use: FeatureParams) -> None:
        """A served model with new parameters gets its own feature state (warming up from its first bar);
        states no model uses any more go, except the strategy's own."""
        for params in in_use:
            if params not in self._online:
                log.warning("%s: the served model's feature parameters %s differ from the warmed-up ones: "
                            "its features warm up from now", self._slot, params.as_dict())
                self._online[params] = OnlineFeatures(self.symbols, params)
        for params in [p for p in self._online if p not in in_use and p != self.feature_params]:
            del self._online[params]
        self._in_use = in_use

    def view(self) -> dict:
        """JSON-ready state for GET /model."""
        return {"strategy": self.name, "params": dict(self.p),
                "feature_params": self.params_of(self.champion).as_dict(),
                "champion": self.champion.status, "challenger": self.challenger.status if self.challenger else None,
                "online": self.online.status if self.online is not None else None,
                "serving_version": (self.champion.current() or (None, None))[1], "flat_reason": self.flat_reason,
                "last": self.last, "counters": dict(self.counters)}

    # Snapshots carry no state: the features are rebuilt by replaying bars (warmup_bars), and the model
    # is whatever the registry serves now -- a stored score of an older version would be wrong to reuse.
    def _state(self) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        pass


def create_stream_strategy(name: str, params: dict[str, Any] | None, *, model_name: str, tracking_uri: str,
                           poll_interval_s: float, symbols: Iterable[str], interval: str = "1m",
                           inline_refresh: bool = False,
                           model_factory: Callable[..., Any] | None = None,
                           database_url: str | None = None) -> Strategy:
    """A strategy of the stream's configuration: ``ml_signal`` is the registry-backed RegistrySignal,
    ``target_rebalance`` trades the optimiser's target_weights rows (streaming.portfolio_strategy;
    ``database_url`` unset: the settings'), every other name goes to the strategy registry
    (trading.strategies.create_strategy)."""
    if name == "target_rebalance":
        from streaming.portfolio_strategy import create_target_rebalance  # SQLAlchemy only when configured

        return create_target_rebalance(params, database_url=database_url, inline_refresh=inline_refresh)
    if name != STREAM_ML_NAME:
        return create_strategy(name, params)
    values = RegistrySignal.validate_params(dict(params or {}))  # bad params fail before any registry call
    if not model_name:
        raise ParameterValueError("ml_signal needs a registered model name (TRADELOOP_MODEL_NAME)")
    if model_factory is None:
        from ml.serving import ChampionModel as model_factory  # noqa: N813
    champion = model_factory(model_name, tracking_uri, poll_interval_s=poll_interval_s, alias="champion")
    challenger = (model_factory(model_name, tracking_uri, poll_interval_s=poll_interval_s, alias="challenger")
                  if values["shadow"] else None)
    online = None
    if values["online"]:
        from ml.online import OnlineModel

        fp = FeatureParams(interval, values["cross_window"], values["regime_window"], values["regime_min_fit"],
                           values["regime_refit"])
        online = OnlineModel(model_name, fp, LabelParams(values["label_horizon"], values["label_barrier_k"]),
                             tracking_uri=tracking_uri, database_url=database_url,
                             checkpoint_every=values["online_checkpoint"], min_learned=values["online_min_learned"])
    return RegistrySignal(champion, symbols, challenger=challenger, interval=interval, inline_refresh=inline_refresh,
                          online_model=online, **(params or {}))
