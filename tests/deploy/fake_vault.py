"""A tiny HashiCorp Vault on 127.0.0.1: the KV v2 HTTP endpoints hvac calls for read, write (with cas),
list and delete-all-versions, and token checking. It fakes Vault at its HTTP boundary (as the fake exchange fakes
one), so the real hvac client and its error mapping are what the tests run."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeVault:
    def __init__(self, token: str, mount: str = "secret") -> None:
        self.token, self.mount = token, mount
        self.data: dict[str, list[dict]] = {}  # path -> versions
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for the tests
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the test reads self.requests
                pass

            def _answer(self, status: int, body: dict | None = None) -> None:
                raw = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                if method == "GET" and parse_qs(url.query).get("list") == ["true"]:
                    method = "LIST"
                vault.requests.append((method, url.path))
                if self.headers.get("X-Vault-Token") != vault.token:
                    return self._answer(403, {"errors": ["permission denied"]})
                prefix = f"/v1/{vault.mount}/"
                if not url.path.startswith(prefix):
                    return self._answer(404, {"errors": ["no handler for route"]})
                kind, _, path = url.path[len(prefix):].partition("/")
                path = path.strip("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                if kind == "data" and method == "GET":
                    versions = vault.data.get(path)
                    if not versions:
                        return self._answer(404, {"errors": []})
                    return self._answer(200, {"data": {"data": versions[-1]["data"],
                                                       "metadata": versions[-1]["metadata"]}})
                if kind == "data" and method in ("POST", "PUT"):
                    versions = vault.data.setdefault(path, [])
                    cas = (body.get("options") or {}).get("cas")
                    if cas is not None and cas != len(versions):
                        return self._answer(400, {"errors": ["check-and-set parameter did not match the current "
                                                             "version"]})
                    meta = {"created_time": datetime.now(timezone.utc).isoformat(), "deletion_time": "",
                            "destroyed": False, "version": len(versions) + 1}
                    versions.append({"data": body["data"], "metadata": meta})
                    return self._answer(200, {"data": meta})
                if kind == "metadata" and method == "LIST":
                    folder = path + "/" if path else ""
                    keys = sorted({p[len(folder):].split("/")[0] + ("/" if "/" in p[len(folder):] else "")
                                   for p in vault.data if p.startswith(folder)})
                    if not keys:
                        return self._answer(404, {"errors": []})
                    return self._answer(200, {"data": {"keys": keys}})
                if kind == "metadata" and method == "DELETE":
                    vault.data.pop(path, None)
                    self.send_response(204)
                    self.end_headers()
                    return None
                return self._answer(405, {"errors": [f"{method} not supported on {url.path}"]})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

            def do_DELETE(self):
                self._route("DELETE")

            def do_LIST(self):
                self._route("LIST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeVault:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
