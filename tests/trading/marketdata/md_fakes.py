"""Offline stand-ins for exchanges: real ccxt exchange objects whose HTTP layer (``exchange.fetch``) is
replaced by a function serving raw JSON shaped exactly like each venue's REST API, so ccxt's own request
building, parsing and error mapping run. The data is a small recorded-style history built from the sim.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import ccxt

from trading.marketdata.sim import SimConfig, SimVenue

T0_MS = SimConfig().origin_ns // 1_000_000  # 2024-01-01T00:00Z
MINUTE_MS = 60_000


def spot_market(base: str, quote: str, market_id: str) -> dict:
    """A unified spot market as ``load_markets`` would build it (only what fetch_* needs is meaningful)."""
    return {
        "id": market_id, "symbol": f"{base}/{quote}", "base": base, "quote": quote, "baseId": base, "quoteId": quote,
        "type": "spot", "spot": True, "margin": False, "swap": False, "future": False, "option": False,
        "contract": False, "linear": None, "inverse": None, "active": True, "settle": None, "settleId": None,
        "contractSize": None, "expiry": None, "expiryDatetime": None, "strike": None, "optionType": None,
        "precision": {"amount": 1e-8, "price": 0.01}, "limits": {}, "info": {},
    }  # fmt: skip


def recorded_candles(n: int = 3000) -> list[tuple[int, str, str, str, str, str]]:
    """1m candles (ms, open, high, low, close, volume as exact strings) from the sim."""
    venue = SimVenue()
    return [
        (b.exchange_ts // 1_000_000, str(b.open), str(b.high), str(b.low), str(b.close), str(b.volume))
        for b in venue.bars(venue.config.origin_ns, n)
        if b.symbol == "BTC/USDT"
    ]


def recorded_trades(minutes: int = 30) -> list[dict]:
    """Trades (id, ms, price, amount, side) from the sim, one every few ms."""
    venue = SimVenue()
    start = venue.config.origin_ns
    out = []
    for i, t in enumerate(venue.ticks(start, start + minutes * MINUTE_MS * 1_000_000)):
        if t.symbol == "BTC/USDT":
            out.append({"id": 1000 + i, "ms": t.exchange_ts // 1_000_000, "price": str(t.price), "amount": str(t.amount), "side": t.side.value})
    return out


class RecordedVenue:
    """Replaces ``exchange.fetch``: routes by URL path like the real venue and records every request."""

    def __init__(self, exchange: ccxt.Exchange, candles=(), trades=(), now_ms: int | None = None) -> None:
        self.ex = exchange
        self.candles = list(candles)
        self.trades = list(trades)
        self.now_ms = now_ms if now_ms is not None else T0_MS + 10**9
        self.failures: list[Exception] = []  # raised (in order) by the next requests
        self.error: tuple[int, object] | None = None  # (http status, json body) served instead of data
        self.requests: list[str] = []
        exchange.fetch = self.fetch
        exchange.milliseconds = lambda: self.now_ms

    def fetch(self, url, method="GET", headers=None, body=None):
        self.requests.append(url)
        if self.failures:
            raise self.failures.pop(0)
        if self.error is not None:
            status, payload = self.error
            text = json.dumps(payload)
            # what ccxt's real fetch does with an error response
            self.ex.handle_errors(status, "Error", url, method, {}, text, payload, headers, body)
            self.ex.handle_http_status_code(status, "Error", url, method, text)
            raise ccxt.ExchangeError(f"{self.ex.id} {method} {url}")
        u = urlparse(url)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        return getattr(self, "_" + self.ex.id)(u.path, q)

    # --- binance: /api/v3/klines arrays, /api/v3/aggTrades dicts
    def _binance(self, path: str, q: dict):
        limit = int(q.get("limit", 500))
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        if path == "/api/v3/klines":
            rows = [c for c in self.candles if start <= c[0] <= end][:limit]
            return [[c[0], c[1], c[2], c[3], c[4], c[5], c[0] + MINUTE_MS - 1, "0", 10, "0", "0", "0"] for c in rows]
        if path == "/api/v3/aggTrades":
            rows = [t for t in self.trades if start <= t["ms"] <= end][:limit]
            return [{"a": t["id"], "p": t["price"], "q": t["amount"], "f": t["id"], "l": t["id"], "T": t["ms"],
                     "m": t["side"] == "sell", "M": True} for t in rows]  # fmt: skip
        raise AssertionError(path)

    # --- kraken: {"error": [], "result": {pair: rows, "last": ...}}
    def _kraken(self, path: str, q: dict):
        pair = q["pair"]
        since_s = int(q.get("since", 0))
        if path == "/0/public/OHLC":
            rows = [c for c in self.candles if c[0] // 1000 > since_s][:720]
            data = [[c[0] // 1000, c[1], c[2], c[3], c[4], c[4], c[5], 7] for c in rows]
            return {"error": [], "result": {pair: data, "last": data[-1][0] if data else since_s}}
        if path == "/0/public/Trades":
            rows = [t for t in self.trades if t["ms"] // 1000 >= since_s][: int(q.get("count", 1000))]
            data = [[t["price"], t["amount"], t["ms"] / 1000, t["side"][0], "l", "", t["id"]] for t in rows]
            return {"error": [], "result": {pair: data, "last": str(rows[-1]["ms"] * 10**6) if rows else "0"}}
        raise AssertionError(path)

    # --- coinbase advanced trade: candles newest first, at most 350 per request
    def _coinbase(self, path: str, q: dict):
        start, end = int(q["start"]), int(q["end"])
        if path.endswith("/candles"):
            if (end - start) // 60 > 350:
                self.error = None
                raise ccxt.BadRequest("coinbase number of candles requested should be less than 350")
            rows = [c for c in self.candles if start <= c[0] // 1000 < end][::-1]
            return {"candles": [{"start": str(c[0] // 1000), "low": c[3], "high": c[2], "open": c[1], "close": c[4], "volume": c[5]} for c in rows]}
        if path.endswith("/ticker"):
            rows = [t for t in self.trades if start <= t["ms"] // 1000 <= end][::-1][: int(q.get("limit", 100))]
            iso = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
            return {"trades": [{"trade_id": str(t["id"]), "product_id": "BTC-USD", "price": t["price"], "size": t["amount"],
                                "time": iso(t["ms"]), "side": t["side"].upper(), "bid": "", "ask": ""} for t in rows]}  # fmt: skip
        raise AssertionError(path)


def make_exchange(name: str, **kw) -> tuple[ccxt.Exchange, RecordedVenue]:
    """An offline ccxt exchange (markets set, HTTP replaced). Symbol: BTC/USDT on binance, BTC/USD elsewhere."""
    ex = getattr(ccxt, name)({"enableRateLimit": False})
    market = {"binance": ("BTC", "USDT", "BTCUSDT"), "kraken": ("BTC", "USD", "XXBTZUSD"), "coinbase": ("BTC", "USD", "BTC-USD")}[name]
    ex.set_markets([spot_market(*market)])
    return ex, RecordedVenue(ex, **kw)
