"""The one place the gateway hands a control action to the worker.

Today: POST <worker_url>/control/{action} with the worker's bearer token (deploy.settings.get_control_token), the
authenticated identity as ``who`` and its address as ``source``. When signed control lands (streaming/signing.py),
this function signs the same body and publishes it instead; its callers do not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestration.gateway.security import Identity


class PublishError(Exception):
    """The worker did not take the action: ``status`` is the HTTP status the gateway answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def publish_control(settings, body: dict, identity: Identity) -> dict:
    """Send ``body`` (``action`` plus the action's fields) to the worker as ``identity``; the worker's answer.
    Raises PublishError: 503 the worker is unreachable, 409 it refused the action, 502 it failed."""
    import httpx

    payload: dict[str, Any] = {k: v for k, v in body.items() if k != "action"}
    action = str(body["action"])
    payload.update(who=identity.subject, source=identity.source,
                   identity={"subject": identity.subject, "kind": identity.kind, "role": identity.role,
                             "owner": identity.owner})
    url = f"{settings.worker_url}/control/{action}"
    try:
        resp = httpx.post(url, json=payload, timeout=10.0,
                          headers={"Authorization": f"Bearer {settings.get_control_token()}"})
    except httpx.HTTPError as exc:
        raise PublishError(503, f"the worker is unreachable at {settings.worker_url} ({type(exc).__name__})") from None
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    if resp.status_code >= 500:
        raise PublishError(502, f"the worker failed the action ({resp.status_code})")
    if resp.status_code >= 400:
        detail = answer.get("error", "") if isinstance(answer, dict) else ""
        raise PublishError(409, f"the worker refused {action}: {detail or resp.status_code}")
    return answer if isinstance(answer, dict) else {"answer": answer}
