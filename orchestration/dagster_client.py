"""A small client for the running Dagster webserver's GraphQL API (what the UI itself uses).

Plain urllib, no Dagster import: the CLI stays fast and talks to the same instance the UI shows.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class DagsterClientError(RuntimeError):
    pass


def graphql(url: str, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
    req = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the configured Dagster URL
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        raise DagsterClientError(f"Dagster webserver not reachable at {url} ({exc}); is the platform up?") from None
    if body.get("errors"):
        raise DagsterClientError(f"Dagster rejected the request: {body['errors'][0].get('message')}")
    return body["data"]


LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""

TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def launch_backfill(url: str, partitions: list[str], asset_paths: list[list[str]]) -> str:
    """Submit a backfill of `partitions` for the assets; the daemon runs it. Returns the backfill id."""
    data = graphql(url, LAUNCH_BACKFILL, {"params": {
        "partitionNames": partitions, "assetSelection": [{"path": p} for p in asset_paths]}})
    result = data["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        detail = result.get("message") or result.get("invalidStepKey") or result.get("stepKey") or ""
        raise DagsterClientError(f"backfill refused ({result['__typename']}): {detail.strip().splitlines()[0] if detail else ''}")
    return result["backfillId"]


def backfill_status(url: str, backfill_id: str) -> str:
    result = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise DagsterClientError(f"backfill {backfill_id}: {result.get('message', result['__typename'])}")
    return result["status"]


def wait_backfill(url: str, backfill_id: str, timeout_s: float = 600.0, poll_s: float = 2.0) -> str:
    from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

    # a busy (or just restarted) webserver can fail one poll; five in a row is an answer
    poll = retry(retry=retry_if_exception_type(DagsterClientError), stop=stop_after_attempt(5),
                 wait=wait_fixed(poll_s), reraise=True)(backfill_status)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = poll(url, backfill_id)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)
    raise DagsterClientError(f"backfill {backfill_id} still running after {timeout_s:.0f} s")
