"""The worker's pages: /health, /ready, /metrics, the JSON views /positions /orders /risk /model, and
POST /control/{action} (bearer token)."""

from __future__ import annotations

import hmac
import time
from typing import Any, Callable

import faust
import orjson

from streaming import metrics
from streaming.app import app, settings, worker
from streaming.control import apply_control, from_http
from streaming.outbox import update_gauges


def _json(web: Any, body: Any, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(body, default=str), content_type="application/json", status=status)


def _trader_view(web: Any, view: Callable[[Any], Any]) -> Any:
    """``view(trader)`` as JSON, or 503 until the worker has rebuilt its Trader from Postgres."""
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
    return _trader_view(web, lambda t: {"account": t.account, "positions": t.positions_view()})


@app.page("/orders")
async def orders_page(web, request):
    return _trader_view(web, lambda t: {"account": t.account, "open_orders": t.open_orders_view()})


@app.page("/risk")
async def risk_page(web, request):
    return _trader_view(web, lambda t: t.risk_view())


def _model_view(trader: Any) -> dict:
    slots = {slot: s.view() for slot, s in trader.model_driven_strategies().items()}
    return {"account": trader.account, "model_name": settings.model_name, "tracking_uri": settings.tracking_uri,
            "poll_interval_s": settings.model_poll_interval_s, "slots": slots,
            **({} if slots else {"note": "no ml_signal or target_rebalance slot configured"})}


@app.page("/model")
async def model_page(web, request):
    """What each model-driven slot serves: versions, alias status, registry warnings, why it is flat,
    last scores; for target_rebalance slots, the target_weights they hold."""
    return _trader_view(web, _model_view)


@app.page("/control/{action}")
class ControlView(faust.web.View):
    """POST /control/kill_switch|resume|swap_strategy|set_limits with a bearer token; JSON body:
    {"who": ..., "reason": ..., "flatten": bool, "slot": ..., "strategy": ..., "params": {...}}."""

    async def post(self, request, action: str):
        auth = request.headers.get("Authorization", "")
        token = settings.get_control_token()
        if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:].encode(), token.encode()):
            return _json(self.web, {"error": "missing or wrong bearer token"}, 401)
        try:
            result = await apply_control(from_http(action, orjson.loads(await request.read() or b"{}")))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _json(self.web, {"error": f"{type(exc).__name__}: {exc}"}, 400)
        return _json(self.web, result)
