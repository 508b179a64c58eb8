"""Live exchange adapters implementing the live venue port (PLAN.md): ccxt.pro Binance spot and Coinbase
Advanced Trade, with the account's request budget, the IP-ban breaker and a staleness watchdog; Interactive
Brokers (US stocks) through TWS / IB Gateway with ib_async (streaming/venues/ib.py, imported when used).

``make_venue(settings, secrets, account, instruments)`` builds the adapter the settings name (None for paper:
the caller keeps its simulated venue).  ``await venue.start()`` before use, ``await venue.close()`` after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streaming.venues.binance import BinanceVenue
from streaming.venues.ccxt_venue import CcxtVenue
from streaming.venues.coinbase import CoinbaseVenue
from trading.oms.reconcile import VenueOrder, VenueSnapshot, VenueTrade

VENUES: dict[str, type[CcxtVenue]] = {"binance": BinanceVenue, "coinbase": CoinbaseVenue}

__all__ = ["BinanceVenue", "CcxtVenue", "CoinbaseVenue", "VENUES", "VenueOrder", "VenueSnapshot", "VenueTrade",
           "make_venue"]


def _reveal(value) -> str:
    return value.reveal() if hasattr(value, "reveal") else ("" if value is None else str(value))


def credentials(secrets, key_name: str | None) -> tuple[str, str]:
    """(api key, secret) from what the caller has: a key record (``ccxt_config()``), a secret provider
    (``get(name)`` -> key record), or a mapping with apiKey/api_key and secret."""
    record = secrets
    if not hasattr(record, "ccxt_config") and not isinstance(record, Mapping) and hasattr(record, "get"):
        if not key_name:
            raise ValueError("no API key name configured (TRADELOOP_VENUE_KEY)")
        record = record.get(key_name)
    if hasattr(record, "ccxt_config"):
        config = record.ccxt_config()
        return _reveal(config.get("apiKey")), _reveal(config.get("secret"))
    if isinstance(record, Mapping):
        return _reveal(record.get("apiKey", record.get("api_key"))), _reveal(record.get("secret"))
    raise ValueError(f"cannot read exchange credentials from a {type(secrets).__name__}")


def make_venue(settings, secrets, account: str, instruments: Iterable, **overrides):
    """The live adapter of ``settings.venue`` for ``account`` trading ``instruments`` (symbols or Instruments):
    a CcxtVenue or an IBVenue (``secrets`` unused); None when the venue is ``paper``.  ``overrides`` go to the
    adapter's constructor (tests: short timeouts)."""
    venue = settings.venue
    if venue == "paper":
        return None
    if venue == "ib":  # no keys: the gateway is logged in; sandbox must be its paper account (checked at start)
        from streaming.venues.ib import IBVenue

        kwargs = dict(account=account, symbols=[getattr(i, "symbol", i) for i in instruments],
                      host=settings.ib_host, port=settings.ib_port, client_id=settings.ib_client_id,
                      timeout_s=settings.venue_timeout_s, unreachable_halt_s=settings.venue_unreachable_halt_s,
                      sandbox=getattr(settings, "mode", "paper") == "sandbox")
        kwargs.update(overrides)
        return IBVenue(**kwargs)
    cls = VENUES.get(venue)
    if cls is None:
        raise ValueError(f"unknown venue {venue!r}: expected paper, {', '.join(VENUES)}, ib")
    api_key, secret = credentials(secrets, getattr(settings, "venue_key", None))
    symbols = [getattr(i, "symbol", i) for i in instruments]
    kwargs = dict(account=account, api_key=api_key, secret=secret, symbols=symbols,
                  api_url=settings.venue_api_url, budget_per_min=settings.venue_account_budget_per_min,
                  stale_after_s=settings.venue_stale_after_s, unreachable_halt_s=settings.venue_unreachable_halt_s,
                  timeout_s=settings.venue_timeout_s, sandbox=getattr(settings, "mode", "paper") == "sandbox")
    kwargs.update(overrides)
    return cls(**kwargs)
