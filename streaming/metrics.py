"""Prometheus metrics of the worker (served at /metrics in the text exposition format)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
TICKS = Counter("tradeloop_ticks", "Ticks through the hot path (rate() gives ticks/s)", registry=REGISTRY)
DECISION_SECONDS = Histogram(
    "tradeloop_decision_seconds", "Tick in -> order decision out (strategy, sizing, risk, paper venue)",
    buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1), registry=REGISTRY)
TICKS_NOT_TRADED = Counter("tradeloop_ticks_not_traded",
                           "Ticks skipped: their symbol is not one this worker trades (TRADELOOP_SYMBOLS)",
                           ["symbol"], registry=REGISTRY)
ORDERS = Counter("tradeloop_order_events", "Order events by status", ["status"], registry=REGISTRY)
REJECTS = Counter("tradeloop_rejects", "Orders rejected, by reason (risk or venue)", ["reason"], registry=REGISTRY)
FILLS = Counter("tradeloop_fills", "Fills", registry=REGISTRY)
PNL = Gauge("tradeloop_pnl", "Account P&L by kind", ["kind"], registry=REGISTRY)
STATE = Gauge("tradeloop_trading_state", "0 active, 1 reducing, 2 halted", registry=REGISTRY)
DEADLETTERS = Counter("tradeloop_deadletters", "Messages parked on the deadletter topic", ["topic"], registry=REGISTRY)
STORE_RETRIES = Gauge("tradeloop_store_retries", "Postgres connection failures retried", registry=REGISTRY)
BATCH_WRITE_SECONDS = Histogram("tradeloop_store_write_seconds", "One batch written to Postgres", registry=REGISTRY)
MODEL_VERSION = Gauge("tradeloop_model_version", "Registered model version an ML slot serves; 0 = none (flat)",
                      ["slot", "alias"], registry=REGISTRY)
MODEL_WARNING = Gauge("tradeloop_model_registry_warning",
                      "1 while the registry or model cannot be refreshed (the last loaded model keeps serving)",
                      ["slot", "alias"], registry=REGISTRY)
MODEL_FLAT = Gauge("tradeloop_model_flat", "1 while an ML slot is held flat (no champion, warm-up, model error)",
                   ["slot"], registry=REGISTRY)
WEIGHTS_AGE = Gauge("tradeloop_target_weights_age_hours",
                    "Age of the target weights a target_rebalance slot trades: hours since their day ended "
                    "(fresh: 0-24; +Inf = none loaded); stale beyond TRADELOOP_WEIGHTS_MAX_AGE_HOURS",
                    ["slot"], registry=REGISTRY)
CONTROL_REFUSED = Counter("tradeloop_control_refused", "Control messages refused, nothing applied (unsigned, "
                          "malformed, unknown_key, bad_signature, expired, replayed; unauthenticated: a page or "
                          "POST /control from off the machine without the bearer token)", ["reason"],
                          registry=REGISTRY)
VAR_SCENARIOS = Gauge("tradeloop_var_scenarios", "Return scenarios loaded for VaR (0 = none, see GET /risk)",
                      registry=REGISTRY)

# ---- live venues (streaming/venues): labels venue, account and a bounded kind ----
VENUE_REQUESTS = Counter("tradeloop_venue_requests", "REST requests sent to a live venue, by ccxt method",
                         ["venue", "account", "kind"], registry=REGISTRY)
VENUE_ERRORS = Counter("tradeloop_venue_errors", "Failed venue requests, by error kind (timeout, http_5xx, "
                       "network, rejected, ...)", ["venue", "account", "kind"], registry=REGISTRY)
VENUE_RATE_LIMITED = Counter("tradeloop_venue_rate_limited", "HTTP 429 answers (waited Retry-After, sent again)",
                             ["venue", "account"], registry=REGISTRY)
VENUE_IP_BANS = Counter("tradeloop_venue_ip_bans", "HTTP 418 answers (IP banned: the breaker opens)",
                        ["venue", "account"], registry=REGISTRY)
VENUE_USED_WEIGHT = Gauge("tradeloop_venue_used_weight", "Request weight used in the current minute, as the venue "
                          "reports it (Binance X-MBX-USED-WEIGHT-1M)", ["venue", "account"], registry=REGISTRY)
VENUE_BUDGET_WAIT = Counter("tradeloop_venue_budget_wait_seconds", "Time requests waited for the account's request "
                            "budget", ["venue", "account"], registry=REGISTRY)
VENUE_WS_RECONNECTS = Counter("tradeloop_venue_ws_reconnects", "User-data WebSocket failures that led to a "
                              "reconnect", ["venue", "account"], registry=REGISTRY)
VENUE_RESYNCS = Counter("tradeloop_venue_resyncs", "Open orders and fills re-read over REST, by cause (stale, "
                        "reconnect, fallback, fills_missing, recovered)", ["venue", "account", "kind"],
                        registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
