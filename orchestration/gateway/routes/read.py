"""Read endpoints (scope ``read``): accounts, positions, orders, fills, risk, strategy releases, models, audit log.

Filters are pydantic models (unknown parameters are refused, values checked) bound into fixed SQL: a filter left
out is ``CAST(:x AS type) IS NULL``, never a string added to a query. Lists are pages: ``limit`` (1-500) and
``offset``; the answer's ``next_offset`` is null on the last page.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from orchestration.gateway.security import Identity, require

router = APIRouter(tags=["read"])
MAX_LIMIT = 500
NAME = r"^[A-Za-z0-9_.:/\-]{1,64}$"  # accounts, strategies, actors: plain names
SYMBOL = r"^[A-Za-z0-9._\-]{1,20}/[A-Za-z0-9._\-]{1,20}$"


class Page(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(100, ge=1, le=MAX_LIMIT, description=f"Rows per page (at most {MAX_LIMIT}).")
    offset: int = Field(0, ge=0, le=1_000_000, description="Rows to skip.")


class TimeRange(Page):
    since: datetime | None = Field(None, description="From this time (ISO 8601, inclusive).")
    until: datetime | None = Field(None, description="Before this time (ISO 8601, exclusive).")


class PositionFilter(Page):
    account: str | None = Field(None, pattern=NAME)
    strategy: str | None = Field(None, pattern=NAME)
    symbol: str | None = Field(None, pattern=SYMBOL)
    open_only: bool = Field(False, description="Only positions with a non-zero quantity.")


class OrderFilter(TimeRange):
    account: str | None = Field(None, pattern=NAME)
    strategy: str | None = Field(None, pattern=NAME)
    symbol: str | None = Field(None, pattern=SYMBOL)
    side: Literal["buy", "sell"] | None = None
    status: Literal["new", "submitting", "ack", "partially_filled", "cancel_pending", "unknown", "filled",
                    "canceled", "rejected", "expired"] | None = None


class FillFilter(TimeRange):
    account: str | None = Field(None, pattern=NAME)
    strategy: str | None = Field(None, pattern=NAME)
    symbol: str | None = Field(None, pattern=SYMBOL)
    side: Literal["buy", "sell"] | None = None


class AuditFilter(TimeRange):
    actor: str | None = Field(None, pattern=NAME)
    action: str | None = Field(None, pattern=NAME)
    scope: str | None = Field(None, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$",  # no control bytes (NUL: a 500)
                              description="Exact scope, e.g. account:paper.")


class ReleaseFilter(Page):
    account: str | None = Field(None, pattern=NAME, description="Default: the configured account.")
    strategy: str | None = Field(None, pattern=NAME)
    status: Literal["candidate", "refused", "live", "retired", "rolled_back"] | None = None


class AccountQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str | None = Field(None, pattern=NAME, description="Default: the configured account.")


class ModelQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_name: str | None = Field(None, pattern=NAME, description="Default: the configured model.")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money and quantities stay exact
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _rows(result) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r._mapping.items()} for r in result]


async def _read(gw, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a read on the event loop (aioreads.py: no thread hop), values made plain as ``_rows`` does."""
    return [{k: _plain(v) for k, v in r.items()} for r in await gw.reads.rows(sql, params)]


async def _page(gw, sql: str, params: dict[str, Any], page: Page) -> dict[str, Any]:
    items = await _read(gw, sql + " LIMIT :_limit OFFSET :_offset",
                        {**params, "_limit": page.limit + 1, "_offset": page.offset})
    more = len(items) > page.limit
    return {"items": items[:page.limit], "limit": page.limit, "offset": page.offset,
            "next_offset": page.offset + page.limit if more else None}


def visible_accounts(identity: Identity, requested: str | None) -> list[str] | None:
    """The accounts a query may touch: the requested one if the identity may see it (403 otherwise: object-level
    authorisation), else every account it may see (None: no restriction)."""
    if requested is not None:
        if not identity.may_see(requested):
            raise HTTPException(403, f"forbidden: no access to account {requested!r}")
        return [requested]
    return sorted(identity.accounts) if identity.accounts is not None else None


def one_account(identity: Identity, requested: str | None, default: str) -> str:
    account = requested or default
    visible_accounts(identity, account)
    return account


def _filters(f: BaseModel, identity: Identity) -> dict[str, Any]:
    params = f.model_dump(exclude={"limit", "offset", "account"})
    params["accounts"] = visible_accounts(identity, getattr(f, "account", None))
    return params


ACCOUNT_IN = "(CAST(:accounts AS text[]) IS NULL OR account = ANY(:accounts))"


@router.get("/accounts", summary="Accounts with positions or orders")
async def accounts(request: Request, identity: Identity = Depends(require("read"))) -> dict:
    gw = request.app.state.gateway
    items = await _read(gw, """
            SELECT a.account,
                   (SELECT count(*) FROM positions p WHERE p.account = a.account AND p.quantity <> 0) AS open_positions,
                   (SELECT count(*) FROM orders o WHERE o.account = a.account
                     AND o.status IN ('new', 'submitting', 'ack', 'partially_filled', 'cancel_pending', 'unknown')) AS open_orders
            FROM (SELECT account FROM positions UNION SELECT account FROM orders) a
            WHERE (CAST(:accounts AS text[]) IS NULL OR a.account = ANY(:accounts)) ORDER BY a.account
        """, {"accounts": visible_accounts(identity, None)})
    return {"items": items, "configured": gw.settings.account}


@router.get("/positions", summary="Positions per account, strategy and symbol")
async def positions(request: Request, f: Annotated[PositionFilter, Query()],
              identity: Identity = Depends(require("read"))) -> dict:
    return await _page(request.app.state.gateway, f"""
        SELECT account, strategy, symbol, quantity, avg_price, realized_pnl, fees, updated_at FROM positions
        WHERE {ACCOUNT_IN}
          AND (CAST(:strategy AS text) IS NULL OR strategy = :strategy)
          AND (CAST(:symbol AS text) IS NULL OR symbol = :symbol)
          AND (NOT :open_only OR quantity <> 0)
        ORDER BY account, strategy, symbol""", _filters(f, identity), f)


@router.get("/orders", summary="Orders, newest first")
async def orders(request: Request, f: Annotated[OrderFilter, Query()],
           identity: Identity = Depends(require("read"))) -> dict:
    return await _page(request.app.state.gateway, f"""
        SELECT client_order_id, account, strategy, exchange, symbol, side, order_type, quantity, price, stop_price,
               time_in_force, status, filled_quantity, reason, parent_id, mode, venue_order_id, created_at, updated_at
        FROM orders
        WHERE {ACCOUNT_IN}
          AND (CAST(:strategy AS text) IS NULL OR strategy = :strategy)
          AND (CAST(:symbol AS text) IS NULL OR symbol = :symbol)
          AND (CAST(:side AS text) IS NULL OR side = :side)
          AND (CAST(:status AS text) IS NULL OR status = :status)
          AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)
          AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until)
        ORDER BY created_at DESC, client_order_id""", _filters(f, identity), f)


@router.get("/fills", summary="Fills (trades), newest first")
async def fills(request: Request, f: Annotated[FillFilter, Query()],
          identity: Identity = Depends(require("read"))) -> dict:
    return await _page(request.app.state.gateway, f"""
        SELECT fill_id, client_order_id, account, strategy, exchange, symbol, side, price, quantity, fee,
               fee_currency, liquidity, ts, mode
        FROM trades
        WHERE {ACCOUNT_IN}
          AND (CAST(:strategy AS text) IS NULL OR strategy = :strategy)
          AND (CAST(:symbol AS text) IS NULL OR symbol = :symbol)
          AND (CAST(:side AS text) IS NULL OR side = :side)
          AND (CAST(:since AS timestamptz) IS NULL OR ts >= :since)
          AND (CAST(:until AS timestamptz) IS NULL OR ts < :until)
        ORDER BY ts DESC, fill_id""", _filters(f, identity), f)


@router.get("/risk", summary="Latest risk metrics of an account, and the worker's live view when it answers")
def risk(request: Request, q: Annotated[AccountQuery, Query()],
         identity: Identity = Depends(require("read"))) -> dict:
    gw = request.app.state.gateway
    account = one_account(identity, q.account, gw.settings.account)
    with gw.engine.connect() as conn:
        rows = _rows(conn.execute(sa.text("""
            SELECT DISTINCT ON (scope, metric) scope, metric, value, ts FROM risk_metrics
            WHERE account = :a AND ts >= (SELECT max(ts) FROM risk_metrics WHERE account = :a) - interval '1 hour'
            ORDER BY scope, metric, ts DESC"""), {"a": account}))
    answer: dict[str, Any] = {"account": account, "metrics": rows, "worker": None}
    if account == gw.settings.account:  # the worker trades the configured account only
        answer.update(_worker_risk(gw.settings))
    return answer


def _worker_risk(settings) -> dict:
    import httpx

    try:
        resp = httpx.get(settings.worker_url + "/risk", timeout=2.0,
                         headers={"Authorization": f"Bearer {settings.get_control_token()}"})
        resp.raise_for_status()
        return {"worker": resp.json()}
    except (httpx.HTTPError, ValueError) as exc:
        return {"worker": None, "worker_error": f"the worker did not answer ({type(exc).__name__})"}


@router.get("/strategies/releases", summary="Strategy releases of an account, newest first")
async def releases(request: Request, f: Annotated[ReleaseFilter, Query()],
             identity: Identity = Depends(require("read"))) -> dict:
    gw = request.app.state.gateway
    params = {"account": one_account(identity, f.account, gw.settings.account), "strategy": f.strategy,
              "status": f.status}
    page = await _page(gw, """
        SELECT account, strategy, version, params, source, status, shadow, reason, created_at, promoted_at
        FROM strategy_releases
        WHERE account = :account
          AND (CAST(:strategy AS text) IS NULL OR strategy = :strategy)
          AND (CAST(:status AS text) IS NULL OR status = :status)
        ORDER BY strategy, version DESC""", params, f)
    return page


@router.get("/strategies/running", summary="The live and shadow release of each strategy of an account")
def running(request: Request, q: Annotated[AccountQuery, Query()],
            identity: Identity = Depends(require("read"))) -> dict:
    from storage import releases as rel

    gw = request.app.state.gateway
    account = one_account(identity, q.account, gw.settings.account)
    with gw.engine.connect() as conn:
        found = rel.running(conn, account)
    return {"account": account,
            "strategies": {s: {k: r.brief() for k, r in kinds.items()} for s, kinds in found.items()}}


@router.get("/models", summary="Versions of a model as the platform recorded them (ml_models)")
def models(request: Request, q: Annotated[ModelQuery, Query()],
           identity: Identity = Depends(require("read"))) -> dict:
    from storage.ml import model_versions

    gw = request.app.state.gateway
    name = q.model_name or gw.settings.model_name
    with gw.engine.connect() as conn:
        versions = [{k: _plain(v) for k, v in row.items()} for row in model_versions(conn, name)]
    return {"model_name": name, "versions": versions}


@router.get("/models/aliases", summary="A model's aliases in the MLflow registry (503 when MLflow is unreachable)")
def model_aliases(request: Request, q: Annotated[ModelQuery, Query()],
                  identity: Identity = Depends(require("read"))) -> dict:
    gw = request.app.state.gateway
    name = q.model_name or gw.settings.model_name
    uri = gw.settings.tracking_uri
    if uri.startswith("http"):
        import httpx

        try:  # ask first: the MLflow client retries an unreachable server for minutes
            httpx.get(uri.rstrip("/") + "/health", timeout=2.0).raise_for_status()
        except httpx.HTTPError:
            raise HTTPException(503, "the MLflow registry is unreachable: model aliases are not available") from None
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(name)
        except MlflowException:
            raise HTTPException(404, f"no registered model {name!r}") from None
    except ImportError:
        raise HTTPException(503, "the MLflow client is not installed") from None
    return {"model_name": name, "aliases": dict(model.aliases or {})}


@router.get("/audit", summary="The audit log, newest first")
async def audit(request: Request, f: Annotated[AuditFilter, Query()],
          identity: Identity = Depends(require("read"))) -> dict:
    return await _page(request.app.state.gateway, """
        SELECT event_id, ts, actor, action, scope, reason, details, identity, source FROM audit_log
        WHERE (CAST(:actor AS text) IS NULL OR actor = :actor)
          AND (CAST(:action AS text) IS NULL OR action = :action)
          AND (CAST(:scope AS text) IS NULL OR scope = :scope)
          AND (CAST(:since AS timestamptz) IS NULL OR ts >= :since)
          AND (CAST(:until AS timestamptz) IS NULL OR ts < :until)
          AND (CAST(:scopes AS text[]) IS NULL OR scope = ANY(:scopes))
          AND (CAST(:admin AS boolean) OR NOT starts_with(scope, 'user:'))
        ORDER BY ts DESC, event_id""", _audit_filters(f, identity), f)


def _audit_filters(f: AuditFilter, identity: Identity) -> dict[str, Any]:
    """An identity limited to some accounts sees only their audit rows (scope account:<name>); the gateway's own
    rows about users and keys (scope user:<name>: logins locked, keys made, tokens reused) need the admin scope."""
    params = _filters(f, identity)
    accounts = params.pop("accounts")
    params["scopes"] = [f"account:{a}" for a in accounts] if accounts is not None else None
    params["admin"] = "admin" in identity.scopes
    return params


RUNS_QUERY = """
query($limit: Int) {
  runsOrError(limit: $limit) {
    __typename
    ... on Runs { results { runId status jobName creationTime startTime endTime } }
    ... on PythonError { message }
    ... on InvalidPipelineRunsFilterError { message }
  }
}"""


class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)


@router.get("/pipeline/runs", summary="The batch pipeline's latest Dagster runs (503 when Dagster is unreachable)")
def pipeline_runs(request: Request, q: Annotated[RunsQuery, Query()],
                  identity: Identity = Depends(require("read"))) -> dict:
    from orchestration.dagster_client import DagsterClientError, graphql

    settings = request.app.state.gateway.settings
    try:
        data = graphql(f"http://{settings.host}:{settings.dagster_port}", RUNS_QUERY, {"limit": q.limit}, timeout=5)
    except DagsterClientError:
        raise HTTPException(503, "the Dagster webserver is unreachable: pipeline runs are not available") from None
    answer = data["runsOrError"]
    if answer.get("__typename") != "Runs":
        raise HTTPException(502, "Dagster could not list its runs")
    return {"items": answer["results"]}
