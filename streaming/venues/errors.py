"""What a failed venue request means for the order, and error text that is safe to log.

``classify`` maps a ccxt exception (plus the HTTP status the request got, when it got one) to an ``Outcome``:
  rejected      the venue refused it; nothing happened (REJECTED with a snake_case reason);
  unknown       the request may have been processed (timeout, 5xx, dropped connection, unparsable answer,
                "duplicate client order id"): the order's fate is resolved by asking the venue, never by resending;
  rate_limited  HTTP 429: the venue did not process it; wait Retry-After, send again;
  banned        HTTP 418: IP banned; the breaker opens;
  clock_skew    the venue refused the request's timestamp (Binance -1021): re-read the venue's clock, send again;
  not_found     the venue has no such order (query, cancel).
ccxt's messages can carry the request URL with its signed query string: ``redact`` strips it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ccxt


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # rejected | unknown | rate_limited | banned | clock_skew | not_found
    reason: str  # snake_case, goes into OrderEvent.reason and the errors metric's kind
    unreachable: bool = False  # counts toward "venue unreachable" (network, timeout, 5xx, maintenance)


# message text -> (kind, reason), first match wins; matched case-insensitively on the venue's message
TEXT_TABLE: tuple[tuple[str, str, str], ...] = (
    ("duplicate", "unknown", "duplicate_client_order_id"),  # Binance -2010 "Duplicate order sent."
    ("would immediately match", "rejected", "post_only_would_take"),
    ("post_only", "rejected", "post_only_would_take"),  # Coinbase INVALID_LIMIT_PRICE_POST_ONLY
    ("post only", "rejected", "post_only_would_take"),
    ("post-only", "rejected", "post_only_would_take"),
    ("insufficient", "rejected", "insufficient_funds"),
    ("min_notional", "rejected", "below_min_notional"),
    ("notional", "rejected", "below_min_notional"),
    ("lot_size", "rejected", "lot_size"),
    ("price_filter", "rejected", "invalid_price"),
)

# ccxt class -> (kind, reason), most specific first (isinstance order matters: subclasses before bases)
CLASS_TABLE: tuple[tuple[type[BaseException], str, str], ...] = (
    (ccxt.InvalidNonce, "clock_skew", "clock_skew"),
    (ccxt.OnMaintenance, "rejected", "venue_unreachable"),
    (ccxt.RequestTimeout, "unknown", "timeout"),
    (ccxt.OrderImmediatelyFillable, "rejected", "post_only_would_take"),
    (ccxt.DuplicateOrderId, "unknown", "duplicate_client_order_id"),
    (ccxt.OrderNotFound, "not_found", "not_found_at_venue"),
    (ccxt.InsufficientFunds, "rejected", "insufficient_funds"),
    (ccxt.BadSymbol, "rejected", "bad_symbol"),
    (ccxt.InvalidOrder, "rejected", "invalid_order"),
    (ccxt.AccountSuspended, "rejected", "account_suspended"),
    (ccxt.PermissionDenied, "rejected", "permission_denied"),
    (ccxt.AuthenticationError, "rejected", "authentication_failed"),
    (ccxt.BadRequest, "rejected", "invalid_order"),
    (ccxt.BadResponse, "unknown", "unparsable"),
    (ccxt.NullResponse, "unknown", "unparsable"),
    (ccxt.ExchangeNotAvailable, "unknown", "network"),
    (ccxt.NetworkError, "unknown", "network"),
    (ccxt.OperationFailed, "unknown", "venue_status_unknown"),  # Binance -1006/-1000: "execution status unknown"
)

_UNREACHABLE = {"timeout", "network", "http_5xx", "venue_unreachable"}


def classify(exc: BaseException, status: int | None = None) -> Outcome:
    """What ``exc`` (raised by a ccxt call whose HTTP status was ``status``, None if no answer came) means."""
    text = str(exc).lower()
    if status == 418 or (isinstance(exc, ccxt.DDoSProtection) and re.search(r"\b418\b", text)):
        return Outcome("banned", "venue_ip_banned")
    if status == 429 or isinstance(exc, ccxt.RateLimitExceeded) or (
            isinstance(exc, ccxt.DDoSProtection) and re.search(r"\b429\b", text)):
        return Outcome("rate_limited", "rate_limited")
    if isinstance(exc, ccxt.DDoSProtection):  # Binance -2015 after a successful login: a temporary key ban
        return Outcome("rejected", "venue_throttled")
    if isinstance(exc, ccxt.OnMaintenance):
        return Outcome("rejected", "venue_unreachable", True)
    if status is not None and status >= 500 and not isinstance(exc, ccxt.InvalidNonce):
        # a 5xx may come after the order was accepted, whatever the body says
        return Outcome("unknown", "http_5xx", True)
    if not isinstance(exc, ccxt.BaseError):  # KeyError/TypeError/ValueError from parsing the answer
        return Outcome("unknown", "unparsable")
    if isinstance(exc, ccxt.ExchangeError) and not isinstance(exc, (ccxt.InsufficientFunds, ccxt.OrderNotFound,
                                                                   ccxt.BadSymbol, ccxt.AuthenticationError)):
        for needle, kind, reason in TEXT_TABLE:
            if needle in text:
                return Outcome(kind, reason)
    for cls, kind, reason in CLASS_TABLE:
        if isinstance(exc, cls):
            return Outcome(kind, reason, reason in _UNREACHABLE)
    if isinstance(exc, ccxt.ExchangeError):
        if status is None:  # aiohttp.ClientError without an answer
            return Outcome("unknown", "network", True)
        return Outcome("rejected", "venue_rejected")
    return Outcome("unknown", "unparsable")


_URL_QUERY = re.compile(r"((?:https?|wss?)://[^\s?\"']+)\?[^\s\"']*", re.I)
_SECRET_PARAM = re.compile(
    r"(?i)((?:signature|apikey|api_key|secret|x-mbx-apikey|cb-access-(?:key|sign)|jwt|authorization)"
    r"[\"']?\s*[=:]\s*[\"']?(?:bearer\s+)?)[^\s&\"',;}]+")
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def redact(text: str, secrets: tuple[str, ...] = (), limit: int = 300) -> str:
    """``text`` without query strings of URLs (signed parameters), key/secret/signature values, JWTs and the
    given secret values; one line, at most ``limit`` characters."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "****")
    text = _URL_QUERY.sub(r"\1?****", text)
    text = _JWT.sub("****", text)
    text = _SECRET_PARAM.sub(lambda m: m.group(1) + "****", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
