"""`tradeloop kill-switch`, `tradeloop resume` and `tradeloop risk report`.

Control actions go through the gateway, as every other control path: the command logs in (an API key from
TRADELOOP_API_CLIENT_ID / TRADELOOP_API_CLIENT_SECRET, else a user from TRADELOOP_USERNAME / TRADELOOP_PASSWORD,
else a prompt), and the gateway checks the role (risk) and signs the message for the worker with the caller's
identity. ``--break-glass`` is for a gateway that is down: it signs on this machine with the key store's
``control-signing`` key (whoever can open the key store can do it) as ``break-glass:<os user>``, and the audit
row says so. `risk report` reads the worker's page (loopback, or the control token). Plain HTTP; no Faust or
FastAPI import, so the commands start fast.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

CLIENT_ID_ENV, CLIENT_SECRET_ENV = "TRADELOOP_API_CLIENT_ID", "TRADELOOP_API_CLIENT_SECRET"
USERNAME_ENV, PASSWORD_ENV = "TRADELOOP_USERNAME", "TRADELOOP_PASSWORD"


def _settings() -> Any:
    from deploy.settings import get_settings

    return get_settings()


def _http(req: urllib.request.Request, who: str, timeout: float, context=None) -> dict:
    """One request; its JSON answer, or one line naming what went wrong."""
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
            # OAuth2's (RFC 6749: error, error_description) or the API's ({"error": ...})
            detail = ": ".join(str(answer[k]) for k in ("error", "error_description", "detail") if answer.get(k))
        except ValueError:
            detail = ""
        raise click.ClickException(f"{who} answered {exc.code} {exc.reason}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(f"{who} is not reachable ({reason}): is the platform up? (tradeloop status)"
                                   ) from None


def _call(path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    """The worker's own page (GET), or a control action signed here (--break-glass)."""
    s = _settings()
    # the token: the worker's pages answer other hosts only with it (loopback needs none)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {s.get_control_token()}"}
    data = None if body is None else _signed(s, body)
    req = urllib.request.Request(s.worker_url + path, data=data, headers=headers,
                                 method="POST" if body is not None else "GET")
    return _http(req, f"worker at {s.worker_url}", timeout)


def _signed(settings: Any, body: dict) -> bytes:
    """``body`` as an envelope signed on this machine for ``break-glass:<os user>``."""
    import socket

    from deploy.secrets import SecretsError, control_signing_key
    from streaming.signing import encode, sign

    try:
        kid, key = control_signing_key(settings, create=False)
    except SecretsError as exc:
        raise click.ClickException(f"cannot sign the control message: {exc}") from None
    return encode(sign({**body, "account": settings.account}, key, kid=kid, identity=f"break-glass:{_user()}",
                       source=f"cli@{socket.gethostname()}"))


def _tls_context(settings: Any):
    if not settings.gateway_url.startswith("https"):
        return None
    import ssl

    # our own certificate (maybe self-signed by `tradeloop certs`) is the one to trust
    return ssl.create_default_context(cafile=str(settings.tls_cert_file))


def _credentials() -> dict[str, str]:
    client_id, secret = os.environ.get(CLIENT_ID_ENV), os.environ.get(CLIENT_SECRET_ENV)
    if client_id and secret:
        return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    username, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
    if not (username and password):
        if not sys.stdin.isatty():
            raise click.ClickException(
                f"log in to the gateway: set {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV} (an API key with scope risk) "
                f"or {USERNAME_ENV} and {PASSWORD_ENV}; or --break-glass when the gateway is down")
        username = username or click.prompt("gateway user")
        password = password or click.prompt("password", hide_input=True)
    return {"grant_type": "password", "username": username, "password": password}


def _through_gateway(path: str, body: dict, timeout: float = 15.0) -> dict:
    """Log in at the gateway and POST a control action; the worker's answer (the gateway passes it on)."""
    s = _settings()
    ctx, who = _tls_context(s), f"gateway at {s.gateway_url}"
    login = urllib.request.Request(f"{s.gateway_url}/api/v1/auth/token", method="POST",
                                   data=urllib.parse.urlencode(_credentials()).encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    token = _http(login, who, timeout, ctx)["access_token"]
    req = urllib.request.Request(f"{s.gateway_url}/api/v1/control/{path}", method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return _http(req, who, timeout, ctx)["worker"]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


BREAK_GLASS = click.option(
    "--break-glass", is_flag=True,
    help="The gateway is down: sign on this machine with the key store's control key (audited as break-glass).")


@click.command("kill-switch")
@click.option("--flatten", is_flag=True, help="Also close every position (the risk engine's liquidation orders).")
@click.option("--reason", default="operator kill switch", show_default=True, help="Why (written to audit_log).")
@BREAK_GLASS
def kill_switch(flatten: bool, reason: str, break_glass: bool) -> None:
    """HALT trading of the account now; open orders are canceled (through the gateway: scope risk)."""
    if break_glass:
        out = _call("/control/kill_switch", {"action": "kill_switch", "flatten": flatten, "reason": reason})
    else:
        out = _through_gateway("flatten" if flatten else "kill-switch", {"reason": reason})
    click.echo(f"trading state: {out['state']} (audit event {out['event_id']})")


@click.command("resume")
@click.option("--reason", default="operator resume", show_default=True, help="Why (written to audit_log).")
@BREAK_GLASS
def resume(reason: str, break_glass: bool) -> None:
    """Clear the kill switch (and every other halt cause) of the account (through the gateway: scope risk)."""
    if break_glass:
        out = _call("/control/resume", {"action": "resume", "reason": reason})
    else:
        out = _through_gateway("resume", {"reason": reason})
    click.echo(f"trading state: {out['state']} (audit event {out['event_id']})")


@click.group("risk")
def risk() -> None:
    """Risk of the running stream."""


def _num(x: Any) -> str:
    try:
        return f"{float(x):,.2f}"
    except (TypeError, ValueError):
        return str(x)


@risk.command("report")
@click.option("--json", "as_json", is_flag=True, help="Print the worker's full JSON.")
def report(as_json: bool) -> None:
    """Current P&L, VaR, exposure and trading state."""
    m = _call("/risk")
    if as_json:
        click.echo(json.dumps(m, indent=2, sort_keys=True))
        return
    click.echo(f"account {m['account']}  state {m['state'].upper()}")
    click.echo(f"equity {_num(m['equity'])}  total P&L {_num(m['total_pnl'])}  daily P&L {_num(m['daily_pnl'])}"
               f"  realized {_num(m['realized_pnl'])}  unrealized {_num(m['unrealized_pnl'])}  fees {_num(m['fees'])}")
    click.echo(f"exposure gross {_num(m['gross_exposure'])}  net {_num(m['net_exposure'])}"
               f"  leverage {_num(m['leverage'])}  drawdown {float(m['drawdown']):.2%}  open orders {m['open_orders']}")
    var = (m.get("var") or {}).get("account")
    click.echo("VaR " + (", ".join(f"{k} {_num(v)}" for k, v in var.items()) if var
                         else f"n/a ({m.get('var_error', 'no return scenarios loaded')})"))
    for p in m.get("positions", []):
        click.echo(f"  {p['strategy']:<16} {p['symbol']:<10} qty {p['quantity']:>14}  avg {_num(p['avg_price'])}"
                   f"  unrealized {_num(p['unrealized_pnl'])}")
    if m.get("rejects"):
        click.echo("rejects: " + ", ".join(f"{k}={v}" for k, v in sorted(m["rejects"].items())))
