"""Signed control messages: the one place that knows the envelope's format.

The gateway (and, for now, the CLI) signs; the worker verifies. An envelope is a JSON object::

    {"v": 1, "alg": "HMAC-SHA256", "kid": ..., "ts": <ns>, "nonce": ..., "identity": ..., "source": ...,
     "body": {...}, "sig": ...}

``sig`` is HMAC-SHA256, keyed by the key named ``kid``, over the canonical bytes of every other field (orjson,
keys sorted at every depth), base64url without padding. ``identity`` is who was authenticated (the worker
never takes a self-declared ``who``), ``source`` where they came from; ``ts`` and ``nonce`` bound a message's
life: older (or further in the future) than ``max_age_s`` is ``expired``, a nonce seen within that window is
``replayed``. Pure: standard library and orjson, no Faust, no settings -- importable from the gateway and CLI.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

VERSION = 1
ALG = "HMAC-SHA256"
FIELDS = frozenset({"v", "alg", "kid", "ts", "nonce", "identity", "source", "body", "sig"})
REASONS = ("unsigned", "malformed", "unknown_key", "bad_signature", "expired", "replayed")
MAX_TEXT = 256  # identity, source, kid, nonce: short labels, never documents
MIN_KEY_BYTES = 32  # HMAC-SHA256's block-size-worth of key material is what the provider generates


class ControlRefused(Exception):
    """A control message that is not applied. ``reason`` is one of REASONS (a metric label); ``detail`` a
    one-line explanation that never contains a key or a signature."""

    def __init__(self, reason: str, detail: str = "", identity: str | None = None) -> None:
        assert reason in REASONS, reason
        # identity: set when the signature was good (expired, replayed): who signed is known even so
        self.reason, self.detail, self.identity = reason, detail, identity
        super().__init__(f"control refused ({reason}){': ' + detail if detail else ''}")


@dataclass(frozen=True)
class Verified:
    """What a verified envelope vouches for."""

    body: dict
    identity: str
    source: str
    ts: int  # ns since the epoch, as signed
    nonce: str
    kid: str


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def _canonical(envelope: Mapping[str, Any]) -> bytes:
    return orjson.dumps({k: v for k, v in envelope.items() if k != "sig"}, option=orjson.OPT_SORT_KEYS)


def _mac(key: bytes, data: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, data, hashlib.sha256).digest()).rstrip(b"=").decode()


def _check_json(value: Any, where: str = "body") -> None:
    """Only what survives a JSON round trip unchanged may be signed: the worker verifies the parsed message."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"sign: {where} holds {value!r}, which JSON cannot carry")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"sign: {where} has a key {k!r} that is not a string")
            _check_json(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        raise ValueError(f"sign: {where} holds an integer beyond 64 bits")


def _label(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ValueError(f"sign: {name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def sign(payload: dict, key: bytes, *, kid: str, identity: str, source: str, now_ns: int | None = None,
         nonce: str | None = None) -> dict:
    """The envelope of ``payload`` signed with ``key`` (named ``kid``) for an authenticated ``identity``
    coming from ``source``. Raises ValueError for what cannot be signed (never echoing the key)."""
    if not isinstance(payload, dict):
        raise ValueError("sign: the payload must be a dict")
    if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"sign: the key must be at least {MIN_KEY_BYTES} bytes")
    _check_json(payload)
    body = orjson.loads(orjson.dumps(payload))  # tuples become lists: what the receiver will see
    envelope = {"v": VERSION, "alg": ALG, "kid": _label(kid, "kid"), "ts": time.time_ns() if now_ns is None else now_ns,
                "nonce": _label(new_nonce() if nonce is None else nonce, "nonce"),
                "identity": _label(identity, "identity"), "source": _label(source, "source"), "body": body}
    if not isinstance(envelope["ts"], int) or isinstance(envelope["ts"], bool) or envelope["ts"] <= 0:
        raise ValueError("sign: now_ns must be a positive integer (ns since the epoch)")
    envelope["sig"] = _mac(bytes(key), _canonical(envelope))
    return envelope


def encode(envelope: dict) -> bytes:
    """The bytes to send (topic value or HTTP body)."""
    return orjson.dumps(envelope)


class NonceCache:
    """Nonces seen within the replay window, bounded by age and by size.

    A nonce older than the window needs no remembering: its message is refused as expired anyway. When more
    than ``max_entries`` live nonces arrive, the oldest are forgotten and ``floor`` rises to their time, so a
    message at or before the floor is refused (fail closed) instead of possibly being a forgotten replay."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("NonceCache: max_entries must be >= 1")
        self.max_entries = max_entries
        self._ts: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self.floor = 0  # ns: messages at or before this time can no longer be vouched for

    def __len__(self) -> int:
        return len(self._ts)

    def __contains__(self, nonce: str) -> bool:
        return nonce in self._ts

    def prune(self, now_ns: int, max_age_s: float) -> None:
        horizon = now_ns - int(max_age_s * 1e9)
        while self._heap and self._heap[0][0] < horizon:
            _, nonce = heapq.heappop(self._heap)
            self._ts.pop(nonce, None)

    def add(self, nonce: str, ts_ns: int) -> None:
        """Remember ``nonce`` (caller checked it is new); forget the oldest beyond the size bound."""
        self._ts[nonce] = ts_ns
        heapq.heappush(self._heap, (ts_ns, nonce))
        while len(self._ts) > self.max_entries:
            ts, old = heapq.heappop(self._heap)
            self._ts.pop(old, None)
            self.floor = max(self.floor, ts)


def _text(envelope: dict, name: str) -> str:
    value = envelope.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ControlRefused("malformed", f"field {name!r} must be a non-empty string of at most {MAX_TEXT} "
                                          f"characters")
    return value


def verify(envelope: Any, keys: Mapping[str, bytes], *, now_ns: int, max_age_s: float, seen: NonceCache) -> Verified:
    """What ``envelope`` (the parsed JSON) vouches for, or ControlRefused. Checks, in order: shape, key,
    signature (so that nothing unsigned can touch the nonce cache), age, nonce. A verified nonce is then
    remembered in ``seen``."""
    if not isinstance(envelope, dict) or "sig" not in envelope:
        raise ControlRefused("unsigned", "not a signed envelope (no `sig`)")
    unknown = sorted(set(envelope) - FIELDS)
    missing = sorted(FIELDS - set(envelope))
    if unknown or missing:
        raise ControlRefused("malformed", "; ".join(p for p in (
            f"unknown fields {unknown[:5]}" if unknown else "", f"missing fields {missing}" if missing else "") if p))
    if envelope["v"] != VERSION or envelope["alg"] != ALG:
        raise ControlRefused("malformed", f"version/algorithm must be {VERSION}/{ALG}")
    kid, nonce = _text(envelope, "kid"), _text(envelope, "nonce")
    identity, source = _text(envelope, "identity"), _text(envelope, "source")
    ts, body, sig = envelope["ts"], envelope["body"], envelope["sig"]
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ControlRefused("malformed", "field 'ts' must be an integer (ns since the epoch)")
    if not isinstance(body, dict):
        raise ControlRefused("malformed", "field 'body' must be an object")
    if not isinstance(sig, str) or len(sig) > 128:
        raise ControlRefused("malformed", "field 'sig' must be a string")
    key = keys.get(kid)
    if key is None:
        raise ControlRefused("unknown_key", f"no key {kid[:32]!r} on this worker")
    try:
        expected = _mac(key, _canonical(envelope))
    except (TypeError, orjson.JSONEncodeError):
        raise ControlRefused("malformed", "the envelope cannot be serialised canonically") from None
    if not hmac.compare_digest(expected.encode(), sig.encode("ascii", "replace")):
        raise ControlRefused("bad_signature", "the signature does not match the message")
    window = int(max_age_s * 1e9)
    age = now_ns - ts
    if age > window:
        raise ControlRefused("expired", f"signed {age / 1e9:.1f} s ago, more than the {max_age_s:g} s allowed",
                             identity)
    if -age > window:
        raise ControlRefused("expired", f"signed {-age / 1e9:.1f} s in the future (clock skew over {max_age_s:g} s)",
                             identity)
    seen.prune(now_ns, max_age_s)
    if ts <= seen.floor:
        raise ControlRefused("expired", "older than the replay window this worker can still vouch for "
                                        "(nonce cache full)", identity)
    if nonce in seen:
        raise ControlRefused("replayed", f"nonce {nonce[:32]!r} was already used", identity)
    seen.add(nonce, ts)
    return Verified(body=body, identity=identity, source=source, ts=ts, nonce=nonce, kid=kid)


def decode(raw: bytes | str) -> Any:
    """The parsed message, or ControlRefused('malformed') when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ControlRefused("malformed", "not JSON") from None
