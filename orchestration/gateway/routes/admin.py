"""Admin endpoints (scope ``admin``): users and API keys. The same rules as `tradeloop users` and
`tradeloop api-keys` (orchestration/gateway/users.py); an API key's secret is in the creation answer only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from orchestration.gateway.security import Identity, require

router = APIRouter(prefix="/admin", tags=["admin"])
USERNAME = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
Role = Literal["viewer", "trader", "risk_officer", "admin"]
Scope = Literal["read", "trade", "risk", "admin"]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=USERNAME)
    password: str = Field(max_length=1024)
    role: Role
    must_change: bool = True
    accounts: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/\-]{1,64}$")]] | None = Field(
        None, description="The trading accounts the user may see and act on; null: every one.")


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: str = Field(pattern=USERNAME)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    scopes: list[Scope] = Field(min_length=1)


def _engine(request: Request):
    return request.app.state.gateway.engine


def _refuse(exc: Exception) -> HTTPException:
    return HTTPException(400, str(exc))


@router.get("/users", summary="Users (no password hashes)")
def users(request: Request, identity: Identity = Depends(require("admin"))) -> dict:
    from orchestration.gateway import users as u

    return {"items": [x.brief() for x in u.list_users(_engine(request))]}


@router.post("/users", status_code=201, summary="Add a user")
def add_user(request: Request, body: NewUser, identity: Identity = Depends(require("admin"))) -> dict:
    from orchestration.gateway import users as u

    try:
        user = u.add_user(_engine(request), body.username, body.password, body.role, must_change=body.must_change,
                          accounts=body.accounts, actor=identity.subject, source=identity.source)
    except u.UserError as exc:
        raise _refuse(exc) from None
    return user.brief()


@router.post("/users/{username}/disable", summary="Disable a user (its tokens stop working at once)")
def disable_user(request: Request, username: str = Path(pattern=USERNAME),
                 identity: Identity = Depends(require("admin"))) -> dict:
    from orchestration.gateway import users as u

    if identity.kind == "user" and username == identity.subject:
        raise HTTPException(400, "an admin cannot disable itself")
    try:
        return u.set_disabled(_engine(request), username, True, actor=identity.subject,
                              source=identity.source).brief()
    except u.UserError as exc:
        raise _refuse(exc) from None


@router.get("/api-keys", summary="API keys (no secrets)")
def api_keys(request: Request, identity: Identity = Depends(require("admin"))) -> dict:
    from orchestration.gateway import users as u

    return {"items": [k.brief() for k in u.list_api_keys(_engine(request))]}


@router.post("/api-keys", status_code=201, summary="Create an API key: its secret is in this answer only")
def create_api_key(request: Request, body: NewKey, identity: Identity = Depends(require("admin"))) -> dict:
    from fastapi.responses import JSONResponse

    from orchestration.gateway import users as u

    try:
        key, secret = u.create_api_key(_engine(request), body.owner, body.name, body.scopes, actor=identity.subject,
                                       source=identity.source)
    except u.UserError as exc:
        raise _refuse(exc) from None
    return JSONResponse({**key.brief(), "client_id": key.key_id, "client_secret": secret}, status_code=201,
                        headers={"Cache-Control": "no-store"})


@router.post("/api-keys/{key_id}/revoke", summary="Revoke an API key")
def revoke_api_key(request: Request, key_id: str = Path(pattern=r"^[A-Za-z0-9_]{1,64}$"),
                   identity: Identity = Depends(require("admin"))) -> dict:
    from orchestration.gateway import users as u

    try:
        return u.revoke_api_key(_engine(request), key_id, actor=identity.subject, source=identity.source).brief()
    except u.UserError as exc:
        raise _refuse(exc) from None
