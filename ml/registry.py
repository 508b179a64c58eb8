"""Registry and promotion: the gate decision, moving the ``champion`` alias, rollback, and the history in
ml_models and audit_log (idempotent rows: deterministic event ids, upserts).

Order of effects: the MLflow alias moves first, then one Postgres transaction records it; if that
transaction fails the alias is moved back, so the registry and the system of record never disagree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from storage import ml as ml_store

CHAMPION, CHALLENGER = "champion", "challenger"


class PromotionError(RuntimeError):
    """A promotion or rollback that cannot be done (nothing to roll back to, unknown version...)."""


@dataclass(frozen=True)
class GateConfig:
    sharpe_margin: float = 0.1
    """The challenger's Sharpe must exceed the champion's by this much (annualised units)."""
    max_drawdown_limit: float = 0.05
    """Largest acceptable drawdown on the window, as a positive fraction."""
    min_sharpe: float = 0.0
    """With no champion: the challenger's Sharpe must exceed this."""
    min_t_stat: float = 2.0
    """The challenger's per-bar returns (after fees and slippage, traded by the live rule: ml/gate.py) must
    beat flat (no champion) or the champion's on the same bars (paired, as shadow mode) by this many
    standard errors.  Why: an annualised Sharpe from a day of 1-minute bars has a standard error of about
    sqrt(525600 / 1440) ~ 19, so "Sharpe > 0" alone promotes a model that merely held a rising market about
    half the time (tests/ml/test_gate_integrity.py: the null sim over many seeds)."""


def gate_decision(challenger: dict[str, float], champion: dict[str, float] | None, cfg: GateConfig) -> dict[str, Any]:
    """Pure decision with its numbers. Metrics dicts hold ``sharpe`` and ``max_drawdown`` (<= 0) of the live
    rule's backtest (ml/gate.py); the challenger's also ``t_stat`` (vs flat) and, with a champion,
    ``paired_t_stat`` (vs the champion on the same bars)."""
    ch_sharpe, ch_dd = float(challenger["sharpe"]), float(challenger["max_drawdown"])
    out: dict[str, Any] = {"config": asdict(cfg), "challenger": challenger, "champion": champion}
    if not (math.isfinite(ch_sharpe) and math.isfinite(ch_dd)):
        return {**out, "passed": False, "reason": "challenger metrics are not finite"}
    if -ch_dd > cfg.max_drawdown_limit:
        return {**out, "passed": False,
                "reason": f"drawdown {-ch_dd:.4f} exceeds the limit {cfg.max_drawdown_limit:.4f}"}
    # evidence recorded before the t statistic existed has none: judged on Sharpe alone, as it was
    t = challenger.get("t_stat" if champion is None else "paired_t_stat")
    t_ok = t is None or float(t) >= cfg.min_t_stat
    t_why = "" if t is None else f"; t {float(t):.2f} {'>=' if t_ok else '<'} {cfg.min_t_stat:.2f}" + (
        "" if champion is None else " (paired vs champion)")
    if champion is None:
        ok = ch_sharpe > cfg.min_sharpe
        return {**out, "passed": ok and t_ok, "reason": (
            f"no champion; Sharpe {ch_sharpe:.3f} {'>' if ok else '<='} absolute threshold {cfg.min_sharpe:.3f}{t_why}")}
    need = float(champion["sharpe"]) + cfg.sharpe_margin
    ok = ch_sharpe > need
    return {**out, "passed": ok and t_ok, "reason": (
        f"Sharpe {ch_sharpe:.3f} {'>' if ok else '<='} champion {float(champion['sharpe']):.3f} + margin "
        f"{cfg.sharpe_margin:.3f}{t_why}")}


def promotion_problems(recorded: dict, gate: GateConfig, champion_now: str | None) -> list[str]:
    """What is wrong with a recorded promotion decision (ml_promotion's metadata), given the gate config and
    the registry's champion now: a pure function, so the check has no side effect."""
    decision = recorded["decision"]
    problems = []
    if decision.get("reason") != "already champion":
        again = gate_decision(decision["challenger"], decision["champion"], gate)
        if again["passed"] != decision["passed"]:
            problems.append(f"the evidence gives passed={again['passed']} under the gate config, "
                            f"the decision recorded passed={decision['passed']}")
    expected = recorded["challenger_version"] if decision["passed"] else decision.get("champion_version")
    if recorded["champion_after"] != str(expected):
        problems.append(f"the decision should leave champion v{expected}, it recorded v{recorded['champion_after']}")
    if str(champion_now) != recorded["champion_after"]:
        problems.append(f"the registry's champion is v{champion_now}, the last decision left v{recorded['champion_after']}")
    return problems


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri).get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower() or getattr(exc, "error_code", "") in (
                "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _set_alias(tracking_uri: str, model_name: str, alias: str, version: str | None) -> None:
    c = _client(tracking_uri)
    if version is None:
        c.delete_registered_model_alias(model_name, alias)
    else:
        c.set_registered_model_alias(model_name, alias, version)


def apply_gate(engine: sa.Engine, tracking_uri: str, model_name: str, version: str, decision: dict[str, Any],
               actor: str = "ml.gate") -> bool:
    """Record the gate decision; on pass move ``champion`` to ``version`` (previous champion -> retired)."""
    scope = f"model:{model_name}"
    if not decision["passed"]:
        with engine.begin() as conn:
            ml_store.reject_model(conn, model_name, version, gate=decision)
            ml_store.audit(conn, "gate_reject", scope, decision["reason"], {"version": version, **decision},
                  model_name, version, actor=actor)
        return False
    previous = alias_version(tracking_uri, model_name, CHAMPION)
    _set_alias(tracking_uri, model_name, CHAMPION, version)
    try:
        with engine.begin() as conn:
            ml_store.make_champion(conn, model_name, version, gate=decision)
            ml_store.audit(conn, "promote", scope, decision["reason"],
                  {"version": version, "previous": previous, **decision}, model_name, version, actor=actor)
    except Exception:
        _set_alias(tracking_uri, model_name, CHAMPION, previous)  # registry and Postgres must agree
        raise
    return True


def rollback(engine: sa.Engine, tracking_uri: str, model_name: str, reason: str, actor: str = "cli") -> tuple[str, str]:
    """Give ``champion`` back to the previously promoted version; the current one becomes rejected.
    Returns (from_version, to_version)."""
    current = alias_version(tracking_uri, model_name, CHAMPION)
    if current is None:
        raise PromotionError(f"{model_name} has no champion to roll back")
    with engine.connect() as conn:
        prev = ml_store.previous_champion(conn, model_name, current)
    if prev is None:
        raise PromotionError(f"{model_name} v{current} has no previous champion in ml_models to roll back to")
    _set_alias(tracking_uri, model_name, CHAMPION, prev)
    try:
        with engine.begin() as conn:
            ml_store.reject_model(conn, model_name, current)
            ml_store.make_champion(conn, model_name, prev)
            ml_store.audit(conn, "rollback", f"model:{model_name}", reason, {"from": current, "to": prev},
                  model_name, current, prev, actor=actor)
    except Exception:
        _set_alias(tracking_uri, model_name, CHAMPION, current)
        raise
    return current, prev


def model_status(engine: sa.Engine, tracking_uri: str, model_name: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = ml_store.model_versions(conn, model_name)
    return {"model_name": model_name, "champion": alias_version(tracking_uri, model_name, CHAMPION),
            "challenger": alias_version(tracking_uri, model_name, CHALLENGER), "versions": rows}
