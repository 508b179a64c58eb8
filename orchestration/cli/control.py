"""`tradeloop kill-switch`, `tradeloop resume` and `tradeloop risk report`: talk to the running worker.

Plain HTTP to the worker's web server (Settings.worker_url) with the control bearer token; no Faust
import, so the commands start fast.  A worker that is not running gives one line and exit status 1.
Control actions are signed envelopes (streaming/signing.py) with the ``control-signing`` key of the secret
provider (generated on first use); the worker takes who did it from the signature: ``cli:<os user>``.
"""

from __future__ import annotations

import getpass
import json
import urllib.error
import urllib.request
from typing import Any

import click


def _settings() -> Any:
    from deploy.settings import get_settings

    return get_settings()


def _call(path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    s = _settings()
    url = s.worker_url + path
    # the token: the worker's pages answer other hosts only with it (loopback needs none)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {s.get_control_token()}"}
    data = None if body is None else _signed(s, body)
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", "")
        except ValueError:
            detail = ""
        raise click.ClickException(f"worker at {s.worker_url} answered {exc.code} {exc.reason}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise click.ClickException(f"worker is not running at {s.worker_url} ({reason})") from None


def _signed(settings: Any, body: dict) -> bytes:
    """``body`` as an envelope signed for ``cli:<os user>`` (the lead will route this through the gateway)."""
    import socket

    from deploy.secrets import SecretsError, control_signing_key
    from streaming.signing import encode, sign

    try:
        kid, key = control_signing_key(settings, create=True)
    except SecretsError as exc:
        raise click.ClickException(f"cannot sign the control message: {exc}") from None
    return encode(sign({**body, "account": settings.account}, key, kid=kid, identity=f"cli:{_user()}",
                       source=f"cli@{socket.gethostname()}"))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.command("kill-switch")
@click.option("--flatten", is_flag=True, help="Also close every position (the risk engine's liquidation orders).")
@click.option("--reason", default="operator kill switch", show_default=True, help="Why (written to audit_log).")
def kill_switch(flatten: bool, reason: str) -> None:
    """HALT trading of the account now; open orders are canceled."""
    out = _call("/control/kill_switch", {"action": "kill_switch", "flatten": flatten, "reason": reason})
    click.echo(f"trading state: {out['state']} (audit event {out['event_id']})")


@click.command("resume")
@click.option("--reason", default="operator resume", show_default=True, help="Why (written to audit_log).")
def resume(reason: str) -> None:
    """Clear the kill switch (and every other halt cause) of the account."""
    out = _call("/control/resume", {"action": "resume", "reason": reason})
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
