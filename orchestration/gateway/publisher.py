"""The one place the gateway hands a control action to the worker.

POST <worker_url>/control/{action} with the worker's bearer token (deploy.settings.get_control_token). The body:
- with signed control (streaming/signing.py, branch h/signing): an envelope signed with the secret provider's
  ``control-signing`` key, whose identity is the authenticated subject and whose source is the caller's address
  -- the worker takes who did it from the verified signature;
- before that module is merged: the plain body with the subject as ``who`` (the worker of today).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestration.gateway.security import Identity


class PublishError(Exception):
    """The worker did not take the action: ``status`` is the HTTP status the gateway answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _body(settings, payload: dict[str, Any], identity: Identity) -> bytes:
    try:
        from streaming.signing import encode, sign
    except ModuleNotFoundError as exc:
        if exc.name != "streaming.signing":
            raise
        return json.dumps({**payload, "who": identity.subject, "source": identity.source}).encode()
    kid, key = _signing_key(settings)
    return encode(sign(payload, key, kid=kid, identity=identity.subject, source=identity.source))


_KEY_CACHE: dict[tuple, tuple[float, str, bytes]] = {}
KEY_CACHE_S = 60.0  # opening the key file costs a Scrypt derivation (~0.1 s); a rotated key is seen within this


def _signing_key(settings) -> tuple[str, bytes]:
    import time

    from deploy.secrets import SecretsError, control_signing_key

    where = (settings.secrets_backend, str(settings.secrets_file or settings.home), settings.vault_url)
    cached = _KEY_CACHE.get(where)
    if cached and cached[0] > time.monotonic():
        return cached[1], cached[2]
    try:
        kid, key = control_signing_key(settings, create=True)
    except SecretsError as exc:
        raise PublishError(503, f"cannot sign the control message: {exc}") from None
    _KEY_CACHE[where] = (time.monotonic() + KEY_CACHE_S, kid, key)
    return kid, key


def publish_control(settings, body: dict, identity: Identity) -> dict:
    """Send ``body`` (``action`` plus the action's fields; ``account`` defaults to the configured one) to the
    worker as ``identity``; the worker's answer. Raises PublishError: 503 the worker is unreachable (or the
    signing key unreadable), 409 it refused the action, 502 it failed."""
    import httpx

    action = str(body["action"])
    payload = {**body, "account": body.get("account") or settings.account}
    data = _body(settings, payload, identity)
    try:
        resp = httpx.post(f"{settings.worker_url}/control/{action}", content=data, timeout=10.0,
                          headers={"Authorization": f"Bearer {settings.get_control_token()}",
                                   "Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise PublishError(503, f"the worker is unreachable at {settings.worker_url} ({type(exc).__name__})") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    if not (resp.is_success or resp.is_client_error):  # 5xx, and a redirect (not followed) took nothing either
        raise PublishError(502, f"the worker failed the action ({resp.status_code})")
    if resp.status_code >= 400:
        detail = answer.get("error", "") if isinstance(answer, dict) else ""
        raise PublishError(409, f"the worker refused {action}: {str(detail)[:300] or resp.status_code}")
    return answer if isinstance(answer, dict) else {"answer": answer}
