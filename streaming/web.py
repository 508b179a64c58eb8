"""The worker's pages: /health, /ready, /metrics, the JSON views /positions /orders /risk /model, and
POST /control/{action} (a signed envelope, streaming/signing.py).

Who may ask: /health, /ready and /metrics answer anyone who can reach the worker's bind address -- the
supervisor, Kubernetes probes and Prometheus poll them without credentials, and they show liveness and
counters, not accounts. /positions /orders /risk /model (an account's positions and orders) and POST /control
answer loopback peers, or others with the bearer token (settings.get_control_token). The peer is the TCP peer:
a proxy's X-Forwarded-For is not trusted (a proxy on this machine would make every request loopback -- put the
gateway, not a proxy, in front). /control needs a valid signature on top, whoever asks."""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any, Callable

import faust
import orjson

from streaming import metrics
from streaming.app import app, settings, worker
from streaming.control import ControlError, receive
from streaming.outbox import update_gauges
from streaming.signing import ControlRefused


def trusted(request: Any) -> bool:
    """A loopback peer, or the bearer token."""
    try:
        if request.remote and ipaddress.ip_address(request.remote.split("%")[0]).is_loopback:
            return True
    except ValueError:
        pass
    auth = request.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), settings.get_control_token().encode())


def _untrusted(web: Any) -> Any:
    metrics.CONTROL_REFUSED.labels("unauthenticated").inc()
    return _json(web, {"error": "missing or wrong bearer token"}, 401)


def _json(web: Any, body: Any, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(body, default=str), content_type="application/json", status=status)


def _trader_view(web: Any, request: Any, view: Callable[[Any], Any]) -> Any:
    """``view(trader)`` as JSON to a trusted caller, or 503 until the worker has rebuilt its Trader from Postgres."""
    if not trusted(request):
        return _untrusted(web)
    trader = worker.trader
    if trader is None:
        return _json(web, {"error": "not ready"}, 503)
    return _json(web, view(trader))


@app.page("/health")
async def health(web, request):
    return web.json({"status": "ok", "uptime_s": round(time.time() - worker.since, 1)})


@app.page("/ready")
async def ready(web, request):
    trader = worker.trader
    body = {"ready": worker.ready, "ticks": trader.counters["ticks"] if trader else 0, "error": worker.error}
    return web.json(body, status=200 if worker.ready else 503)


@app.page("/metrics")
async def metrics_page(web, request):
    if worker.trader is not None:
        update_gauges(worker.trader)
    return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


@app.page("/positions")
async def positions_page(web, request):
    return _trader_view(web, request, lambda t: {"account": t.account, "positions": t.positions_view()})


@app.page("/orders")
async def orders_page(web, request):
    return _trader_view(web, request, lambda t: {"account": t.account, "open_orders": t.open_orders_view()})


@app.page("/risk")
async def risk_page(web, request):
    return _trader_view(web, request, lambda t: t.risk_view())


def _model_view(trader: Any) -> dict:
    slots = {slot: s.view() for slot, s in trader.model_driven_strategies().items()}
    return {"account": trader.account, "model_name": settings.model_name, "tracking_uri": settings.tracking_uri,
            "poll_interval_s": settings.model_poll_interval_s, "slots": slots,
            **({} if slots else {"note": "no ml_signal or target_rebalance slot configured"})}


@app.page("/model")
async def model_page(web, request):
    """What each model-driven slot serves: versions, alias status, registry warnings, why it is flat,
    last scores; for target_rebalance slots, the target_weights they hold."""
    return _trader_view(web, request, _model_view)


@app.page("/control/{action}")
class ControlView(faust.web.View):
    """POST /control/kill_switch|resume|swap_strategy|set_limits|manual_order|cancel; the body is a signed envelope
    whose body holds {"action": <the URL's>, "account": ..., "reason": ..., "flatten": bool, "slot": ...,
    "strategy": ..., "params": {...}} -- a manual order {"symbol", "side", "quantity", "order_type", "price"}, a
    cancel {"client_order_id"}. Who did it is the envelope's verified identity. A verified action that cannot be
    applied (a risk refusal, an unknown order) is 400 with the reason."""

    async def post(self, request, action: str):
        if not trusted(request):
            # not audited: anyone who can reach the port could otherwise grow the audit log at will
            return _untrusted(self.web)
        raw = await request.read()
        try:
            result = await receive(raw, f"http:{request.remote}", url_action=action,
                                   refusal_id=(request.remote, time.time_ns()))
        except ControlRefused as exc:
            return _json(self.web, {"error": str(exc), "reason": exc.reason}, 400 if exc.reason == "malformed" else 401)
        except (ControlError, ValueError) as exc:  # verified but not applicable: the reason, as the operator reads it
            return _json(self.web, {"error": str(exc)}, 400)
        return _json(self.web, result)
