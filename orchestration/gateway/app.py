"""create_app(settings): the gateway's FastAPI app; main(): serve it with uvicorn.

Everything is under /api/v1 (OpenAPI at /api/v1/openapi.json, Swagger UI at /api/docs). Around every request:
a body size limit (413), security headers, and a last-resort handler that answers 500 with a request id and
nothing else -- no exception text, no traceback (the log has the exception, redacted).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestration.gateway import docs

log = logging.getLogger("tradeloop.gateway")

API_PREFIX = "/api/v1"
API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
DOCS_CSP = docs.CSP  # the docs pages run Swagger UI / ReDoc from this origin's files: only they load scripts


class Gateway:
    """What the routes share: settings, the database engine, the token service, limits, the access-token
    deny list (in memory, shared with the gateway's other processes through PostgreSQL NOTIFY; entries leave when
    the token would have expired anyway) and the identity cache (revocation.py says why neither weakens
    revocation)."""

    def __init__(self, settings, engine: sa.Engine, tokens, limits) -> None:
        from orchestration.gateway.revocation import IdentityCache

        self.settings, self.engine, self.tokens, self.limits = settings, engine, tokens, limits
        self._denied: dict[str, int] = {}
        self._lock = threading.Lock()
        self.identities = IdentityCache(settings.gateway_identity_cache_s)
        self.events = None  # revocation.Events, started by the app's lifespan
        from orchestration.gateway.aioreads import AsyncReads

        self.reads = AsyncReads(engine)  # the read routes' queries, on the event loop

    def start_events(self) -> None:
        from orchestration.gateway.revocation import Events

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.events = Events(conninfo, self.identities, self._deny_local)
        self.events.start()

    def stop_events(self) -> None:
        if self.events is not None:
            self.events.stop()
            self.events = None

    def _deny_local(self, jti: str, expires_at: int) -> None:
        now = int(time.time())
        with self._lock:
            self._denied = {j: e for j, e in self._denied.items() if e > now}
            self._denied[jti] = expires_at

    def deny(self, jti: str, expires_at: int) -> None:
        """Revoke an access token here at once, and in the gateway's other processes (NOTIFY); raises when the
        database cannot be told (the caller's answer is then an error, not a false "revoked")."""
        from orchestration.gateway.revocation import notify

        self._deny_local(jti, expires_at)
        with self.engine.begin() as conn:
            notify(conn, f"deny {jti} {int(expires_at)}")

    def is_denied(self, jti: str) -> bool:
        return jti in self._denied

    def is_active(self, kind: str, subject: str) -> bool:
        """Asks the database (no cache)."""
        from storage.auth import active

        with self.engine.connect() as conn:
            return active(conn, kind, subject)

    def cached_active(self, kind: str, subject: str) -> bool:
        """True when this process found the identity active less than gateway_identity_cache_s ago; False:
        unknown (ask ``check_active``)."""
        return self.identities.get(kind + ":" + subject)

    def check_active(self, kind: str, subject: str) -> bool:
        """Asks the database and remembers an "active" answer for the cache's time."""
        key, cache = kind + ":" + subject, self.identities
        asked_at, generation = cache.clock(), cache.generation()
        found = self.is_active(kind, subject)
        if found:
            cache.put(key, asked_at, generation)
        return found


def database_url(settings) -> str:
    """The gateway's own role (the only one that reads the login tables; deploy/stack/pgroles.py)."""
    return settings.database_url_for("gateway")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict]]:
    # the submitted values are left out on purpose: they may be passwords or secrets
    details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
               for e in exc.errors()]
    first = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
    return f"invalid request: {first}", details


def _install_handlers(app: FastAPI) -> None:
    from orchestration.gateway.routes.auth import NO_STORE, OAuthError

    @app.exception_handler(OAuthError)
    async def oauth_error(request: Request, exc: OAuthError):
        return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                            headers={**NO_STORE, **exc.headers})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        message, details = _validation_message(exc)
        return JSONResponse({"error": message, "details": details}, status_code=422)


class Guard:
    """Pure ASGI middleware, outermost: security headers on every answer, the request body limit, and a 500
    with only a request id when anything inside raises."""

    def __init__(self, app, max_body_bytes: int, hsts: bool) -> None:
        self.app, self.max_body_bytes, self.hsts = app, max_body_bytes, hsts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(API_HEADERS)
        if scope["path"].startswith("/api/docs"):
            headers["Content-Security-Policy"] = DOCS_CSP
        if self.hsts:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in raw_headers if h[0] not in present]
            await send(message)

        async def reply(status: int, body: dict):
            import json

            raw = json.dumps(body).encode()
            await send_with_headers({"type": "http.response.start", "status": status,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(raw)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": raw})

        too_large = {"error": f"request body larger than {self.max_body_bytes} bytes"}
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await reply(400, {"error": "malformed Content-Length"})
            if declared > self.max_body_bytes:
                return await reply(413, too_large)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:  # chunked or lying about its length
                    raise StarletteHTTPException(413, too_large["error"])
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 -- the last resort: log it, answer without details
            request_id = uuid.uuid4().hex[:12]
            from deploy.redaction import scrub_exception

            log.error("request %s %s failed (request id %s): %s: %s", scope.get("method"), scope.get("path"),
                      request_id, type(exc).__name__, scrub_exception(exc))
            if not started:
                if isinstance(exc, StarletteHTTPException) and exc.status_code == 413:
                    return await reply(413, too_large)
                await reply(500, {"error": "internal error", "request_id": request_id})


def create_app(settings=None, *, engine: sa.Engine | None = None, processes: int = 1) -> FastAPI:
    """The gateway app. ``settings``: deploy.settings.Settings (default: get_settings()); ``engine``: a SQLAlchemy
    engine of the system of record (default: one for settings' database); ``processes``: how many server
    processes serve it (each enforces its share of the rate limits). Reads the JWT key from the secret provider
    (entry ``gateway-jwt``, created on first use)."""
    from deploy.settings import get_settings
    from orchestration.gateway.limits import Limits
    from orchestration.gateway.routes import admin, auth, control, read, ws
    from orchestration.gateway.tokens import TokenService, signing_key
    from storage import db

    settings = settings or get_settings()
    engine = engine or db.create_engine(database_url(settings), pool_size=5, max_overflow=5)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from starlette.concurrency import run_in_threadpool

        gateway = app.state.gateway
        await run_in_threadpool(gateway.start_events)  # waits for the listener a few seconds at most
        try:
            yield
        finally:
            await gateway.reads.close()
            await run_in_threadpool(gateway.stop_events)

    app = FastAPI(title="tradeloop gateway", version="1", openapi_url=f"{API_PREFIX}/openapi.json", lifespan=lifespan,
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,  # docs.py: offline docs
                  redirect_slashes=False,  # a slash redirect's Location is built from the caller's Host header
                  description="The one authenticated door to tradeloop: reads for viewers, trading for traders, "
                              "kill switch and limits for risk officers, users and keys for admins.")
    app.state.gateway = Gateway(settings, engine, TokenService(signing_key(settings), settings.gateway_access_ttl_s),
                                Limits.from_settings(settings, processes))
    _install_handlers(app)

    api = APIRouter(prefix=API_PREFIX)

    @api.get("/health", tags=["meta"], summary="Liveness and database reachability (no authentication)")
    def health() -> Any:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return _error(503, "database unreachable")
        return {"status": "ok"}

    api.include_router(auth.router)
    api.include_router(read.router)
    api.include_router(control.router)
    api.include_router(admin.router)
    api.include_router(ws.router)
    app.include_router(api)
    app.include_router(docs.router)

    if settings.gateway_cors_origins:  # closed unless origins are configured: no CORS headers at all
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.gateway_cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"],
                           allow_credentials=False, max_age=600)
    app.add_middleware(Guard, max_body_bytes=settings.gateway_max_body_bytes,
                       hsts=bool(settings.tls_cert_file and settings.tls_key_file))
    return app


def worker_count(settings) -> int:
    """settings.gateway_workers, or one per CPU core (at most 4) when it is 0."""
    import os

    return settings.gateway_workers or max(1, min(4, os.cpu_count() or 1))


def log_config() -> dict:
    """uvicorn's logging, with a plain formatter for the access log: the redaction filter (deploy/redaction.py)
    merges a record's arguments into its message, and uvicorn's AccessFormatter, which unpacks them again, then
    failed on every request (a logging traceback per request: most of the gateway's time under load)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"] = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
                                      "use_colors": False}
    return config


def worker_app() -> FastAPI:
    """The app of one server process (uvicorn's factory): settings from the environment, as main() read them;
    the rate limits split among worker_count processes (limits.py)."""
    from deploy.redaction import install
    from deploy.settings import get_settings

    install()
    settings = get_settings()
    return create_app(settings, processes=worker_count(settings))


def main() -> None:
    """Serve the gateway on settings.gateway_host:gateway_port with worker_count(settings) server processes
    (uvicorn's supervisor restarts one that dies); HTTPS when tls_cert_file and tls_key_file are set."""
    import uvicorn

    from deploy.redaction import install
    from deploy.settings import get_settings

    install()
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as exc:  # a bad setting: one line per problem naming the variable, as the CLI does
        from deploy.settings import error_lines

        raise SystemExit("\n".join(error_lines(exc))) from None
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise SystemExit("error: configuration: TRADELOOP_TLS_CERT_FILE and TRADELOOP_TLS_KEY_FILE go together")
    tls = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)} \
        if settings.tls_cert_file else {}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from deploy.secrets import SecretsError
    from orchestration.gateway.tokens import signing_key

    try:  # here, once: processes started together must not each generate a different key
        signing_key(settings)
    except SecretsError as exc:  # e.g. the env key store without TRADELOOP_SECRET_GATEWAY_JWT: one line, no trace
        raise SystemExit(f"error: gateway: {exc}") from None
    workers = worker_count(settings)
    log.info("gateway: %d server process%s", workers, "" if workers == 1 else "es")
    # uvloop and httptools are used when installed (uvicorn's "auto"); the processes share one listening socket
    uvicorn.run("orchestration.gateway.app:worker_app", factory=True, workers=workers,
                host=settings.gateway_host, port=settings.gateway_port, log_config=log_config(),
                proxy_headers=False, server_header=False, log_level="info",
                ws_max_size=settings.gateway_max_body_bytes, **tls)
