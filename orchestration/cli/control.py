"""`tradeloop kill-switch`, `tradeloop resume` and `tradeloop risk report`: talk to the running worker.

Plain HTTP to the worker's web server (Settings.worker_url) with the control bearer token; no Faust
import, so the commands start fast.  A worker that is not running gives one line and exit status 1.
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
    headers = {"Content-Type": "application/json"}
    data = None
    if body is not None:
        headers["Authorization"] = f"Bearer {s.get_control_token()}"
        data = json.dumps(body).encode()
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


def _who(who: str | None) -> str:
    try:
        return who or getpass.getuser()
    except (KeyError, OSError):
        return "operator"


@click.command("kill-switch")
@click.option("--flatten", is_flag=True, help="Also close every position (the risk engine's liquidation orders).")
@click.option("--reason", default="operator kill switch", show_default=True, help="Why (written to audit_log).")
@click.option("--who", default=None, help="Who (default: the current user).")
def kill_switch(flatten: bool, reason: str, who: str | None) -> None:
    """HALT trading of the account now; open orders are canceled."""
    out = _call("/control/kill_switch", {"flatten": flatten, "reason": reason, "who": _who(who)})
    click.echo(f"trading state: {out['state']} (audit event {out['event_id']})")


@click.command("resume")
@click.option("--reason", default="operator resume", show_default=True, help="Why (written to audit_log).")
@click.option("--who", default=None, help="Who (default: the current user).")
def resume(reason: str, who: str | None) -> None:
    """Clear the kill switch (and every other halt cause) of the account."""
    out = _call("/control/resume", {"reason": reason, "who": _who(who)})
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
