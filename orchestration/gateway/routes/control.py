"""Control endpoints: kill switch, resume, flatten, limits (scope ``risk``); strategy swap, manual order, cancel
(scope ``trade``). Each becomes one control message to the worker (publisher.publish_control) carrying the
authenticated identity; bodies are closed pydantic models (an unknown field is refused: no mass assignment)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestration.gateway.routes.read import NAME, SYMBOL
from orchestration.gateway.security import Identity, require

router = APIRouter(prefix="/control", tags=["control"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500, description="Why (written to the audit log).")
    account: str | None = Field(None, pattern=NAME, description="Default: the configured account.")

    @model_validator(mode="before")
    @classmethod
    def _sendable(cls, data: Any) -> Any:
        problem = _unsendable(data)
        if problem:
            raise ValueError(problem)
        return data


MAX_DEPTH = 16


def _unsendable(value: Any) -> str | None:
    """Why a body cannot go to the worker, or None: a NUL (the worker writes the body to audit_log; PostgreSQL text
    and jsonb cannot hold it), NaN or Infinity (JSON has neither), or free-form params nested deeper than MAX_DEPTH (serialising them would exhaust
    the stack: a 500). Iterative, so a deep body cannot exhaust it here either."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"values may be nested at most {MAX_DEPTH} levels deep"
        if isinstance(item, str):
            if "\x00" in item:
                return "text may not contain NUL characters"
        elif isinstance(item, float) and not math.isfinite(item):  # else sent on as null, silently
            return "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, dict):
            stack.extend((x, depth + 1) for pair in item.items() for x in pair)
        elif isinstance(item, (list, tuple)):
            stack.extend((x, depth + 1) for x in item)
    return None


class KillSwitch(_Body):
    flatten: bool = Field(False, description="Also close every position.")


class Limits(_Body):
    params: dict[str, Any] = Field(description="Limit overrides, as the risk limits file names them.")


class Swap(_Body):
    slot: str = Field(pattern=NAME)
    strategy: str = Field(pattern=NAME)
    params: dict[str, Any] = Field(default_factory=dict)


class ManualOrder(_Body):
    symbol: str = Field(pattern=SYMBOL)
    side: Literal["buy", "sell"]
    quantity: Decimal = Field(gt=0, max_digits=30, decimal_places=12)
    order_type: Literal["market", "limit"] = "market"
    price: Decimal | None = Field(None, gt=0, max_digits=30, decimal_places=12)

    @model_validator(mode="after")
    def _price_for_limit(self) -> "ManualOrder":
        if (self.order_type == "limit") != (self.price is not None):
            raise ValueError("a limit order needs a price, a market order has none")
        return self


class Cancel(_Body):
    pass


def _send(request: Request, identity: Identity, action: str, body: BaseModel, **extra: Any) -> dict:
    from orchestration.gateway.publisher import PublishError, publish_control

    settings = request.app.state.gateway.settings
    fields = body.model_dump(mode="json", exclude_none=True)
    fields.setdefault("account", settings.account)
    if not identity.may_see(fields["account"]):
        raise HTTPException(403, f"forbidden: no access to account {fields['account']!r}")
    try:
        answer = publish_control(settings, {"action": action, **fields, **extra}, identity)
    except PublishError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return {"action": action, "worker": answer}


@router.post("/kill-switch", summary="HALT trading now (open orders canceled; flatten closes positions)")
def kill_switch(request: Request, body: KillSwitch, identity: Identity = Depends(require("risk"))) -> dict:
    return _send(request, identity, "kill_switch", body)


@router.post("/resume", summary="Clear the kill switch and every other halt cause")
def resume(request: Request, body: _Body, identity: Identity = Depends(require("risk"))) -> dict:
    return _send(request, identity, "resume", body)


@router.post("/flatten", summary="Kill switch and close every position")
def flatten(request: Request, body: _Body, identity: Identity = Depends(require("risk"))) -> dict:
    return _send(request, identity, "kill_switch", body, flatten=True)


@router.post("/limits", summary="Change risk limits of the running worker")
def set_limits(request: Request, body: Limits, identity: Identity = Depends(require("risk"))) -> dict:
    return _send(request, identity, "set_limits", body)


@router.post("/swap-strategy", summary="Run another strategy (or parameters) in a slot")
def swap_strategy(request: Request, body: Swap, identity: Identity = Depends(require("trade"))) -> dict:
    return _send(request, identity, "swap_strategy", body)


@router.post("/orders", summary="Send a manual order through the OMS and the risk engine")
def manual_order(request: Request, body: ManualOrder, identity: Identity = Depends(require("trade"))) -> dict:
    return _send(request, identity, "manual_order", body)


@router.post("/orders/{client_order_id}/cancel", summary="Cancel an open order")
def cancel(request: Request, body: Cancel,
           client_order_id: str = Path(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$"),
           identity: Identity = Depends(require("trade"))) -> dict:
    return _send(request, identity, "cancel", body, client_order_id=client_order_id)
