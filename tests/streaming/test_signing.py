"""streaming/signing.py: envelopes signed with HMAC-SHA256, verified with age and nonce checks (no worker here;
tests/streaming/test_signed_control.py sends them to a real one)."""

from __future__ import annotations

import copy
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from streaming.signing import (
    ControlRefused, NonceCache, encode, sign, verify,
)

KEY = b"k" * 32
KID = "test-kid"
NOW = 1_800_000_000_000_000_000
BODY = {"action": "kill_switch", "account": "a1", "reason": "test", "flatten": True, "params": {"x": [1, 2.5]}}


def _sign(body=BODY, **kw):
    kw = {"kid": KID, "identity": "user:alice", "source": "127.0.0.1", "now_ns": NOW, **kw}
    return sign(body, KEY, **kw)


def _verify(env, seen=None, now_ns=NOW, keys=None, max_age_s=30):
    return verify(env, {KID: KEY} if keys is None else keys, now_ns=now_ns, max_age_s=max_age_s,
                  seen=NonceCache() if seen is None else seen)


def _reason(fn) -> str:
    with pytest.raises(ControlRefused) as exc:
        fn()
    return exc.value.reason


def test_round_trip_through_the_wire_gives_what_was_signed():
    env = _sign()
    assert set(env) == {"v", "alg", "kid", "ts", "nonce", "identity", "source", "body", "sig"}
    got = _verify(orjson.loads(encode(env)))
    assert (got.body, got.identity, got.source, got.ts, got.kid) == (BODY, "user:alice", "127.0.0.1", NOW, KID)
    assert got.nonce == env["nonce"] and len(got.nonce) >= 16


def test_each_refusal_reason():
    env = _sign()
    assert _reason(lambda: _verify({"action": "kill_switch", "who": "me"})) == "unsigned"
    assert _reason(lambda: _verify([1, 2])) == "unsigned"
    assert _reason(lambda: _verify({**env, "extra": 1})) == "malformed"
    assert _reason(lambda: _verify({k: v for k, v in env.items() if k != "nonce"})) == "malformed"
    assert _reason(lambda: _verify({**env, "v": 2})) == "malformed"
    assert _reason(lambda: _verify({**env, "body": [1]})) == "malformed"
    assert _reason(lambda: _verify({**env, "ts": "1"})) == "malformed"
    assert _reason(lambda: _verify(env, keys={"other": KEY})) == "unknown_key"
    assert _reason(lambda: _verify(env, keys={KID: b"x" * 32})) == "bad_signature"  # forged: another key
    assert _reason(lambda: _verify({**env, "body": {**BODY, "flatten": False}})) == "bad_signature"
    assert _reason(lambda: _verify({**env, "identity": "user:admin"})) == "bad_signature"
    assert _reason(lambda: _verify(env, now_ns=NOW + 31 * 10**9)) == "expired"  # too old
    assert _reason(lambda: _verify(env, now_ns=NOW - 31 * 10**9)) == "expired"  # too far in the future
    seen = NonceCache()
    _verify(env, seen)
    assert _reason(lambda: _verify(copy.deepcopy(env), seen, now_ns=NOW + 10**9)) == "replayed"


def test_refusals_never_show_the_key_or_signature():
    env = _sign()
    for bad in ({**env, "sig": env["sig"][::-1]}, {**env, "kid": "nope"}, {**env, "ts": 1}):
        with pytest.raises(ControlRefused) as exc:
            _verify(bad)
        assert KEY.decode() not in str(exc.value) and env["sig"] not in str(exc.value)


def test_a_signature_does_not_touch_the_nonce_cache_unless_valid():
    env = _sign()
    seen = NonceCache()
    with pytest.raises(ControlRefused):
        _verify({**env, "sig": "A" * 43}, seen)
    assert len(seen) == 0
    _verify(env, seen)  # the genuine one still passes: a forgery cannot burn its nonce


def test_nonce_cache_is_bounded_by_age_and_size():
    seen = NonceCache(max_entries=3)
    for i in range(3):
        _verify(_sign(nonce=f"n{i:030d}", now_ns=NOW + i), seen, now_ns=NOW + 3)
    assert len(seen) == 3
    _verify(_sign(nonce="n" * 31, now_ns=NOW + 3), seen, now_ns=NOW + 3)  # forgets the oldest, floor = NOW
    assert len(seen) == 3 and seen.floor == NOW
    # the forgotten nonce cannot come back: at or before the floor is refused (fail closed)
    assert _reason(lambda: _verify(_sign(nonce=f"n{0:030d}", now_ns=NOW), seen, now_ns=NOW + 3)) == "expired"
    # age: everything older than the window goes on the next verify
    _verify(_sign(nonce="late" * 8, now_ns=NOW + 40 * 10**9), seen, now_ns=NOW + 40 * 10**9)
    assert len(seen) == 1


def test_sign_refuses_what_json_cannot_carry_and_weak_keys():
    with pytest.raises(ValueError, match="JSON"):
        _sign({"x": float("nan")})
    with pytest.raises(ValueError, match="not a string"):
        _sign({1: "a"})
    with pytest.raises(ValueError, match="at least 32 bytes"):
        sign(BODY, b"short", kid="k", identity="i", source="s")
    with pytest.raises(ValueError, match="identity"):
        _sign(identity="")


def test_importable_without_faust():
    code = "import sys, streaming.signing; assert 'faust' not in sys.modules and 'sqlalchemy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
bodies = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(body=bodies, data=st.data())
def test_any_change_to_any_field_is_refused(body, data):
    env = orjson.loads(encode(_sign(body)))
    assert _verify(copy.deepcopy(env)).body == env["body"]
    field = data.draw(st.sampled_from(sorted(env)))
    changed = copy.deepcopy(env)
    if field == "body":
        new = data.draw(bodies.filter(lambda b: orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
                                      != orjson.dumps(env["body"], option=orjson.OPT_SORT_KEYS)))
    elif field in ("ts", "v"):
        new = env[field] + data.draw(st.integers(1, 10**6))
    else:
        new = data.draw(st.text(min_size=1, max_size=40).filter(lambda s: s != env[field]))
    changed[field] = new
    with pytest.raises(ControlRefused) as exc:
        _verify(changed, now_ns=NOW + 10**7)
    assert exc.value.reason in ("bad_signature", "malformed", "unknown_key")


@settings(max_examples=100, deadline=None)
@given(body=bodies)
def test_whatever_is_signed_verifies_after_the_wire(body):
    env = _sign(body)
    assert _verify(orjson.loads(encode(env))).body == orjson.loads(orjson.dumps(body))
