"""The API docs offline (orchestration/gateway/docs.py): Swagger UI and ReDoc pages that reference only this
origin, assets that load, a CSP allowing scripts from this origin only, and -- in a real Chromium against the
gateway served by uvicorn -- pages that render with every request outside this origin refused."""

from __future__ import annotations

import re
import threading
import time
from html.parser import HTMLParser

import pytest

from tests.browser import artefacts_dir, browser  # noqa: F401

PAGES = ("/api/docs", "/api/docs/redoc")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "spec-url", "action"):
            if attrs.get(name):
                self.refs.append(attrs[name])
        self._in_script = tag == "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag):
        self._in_script = False


def _same_origin(ref: str) -> bool:
    return ref.startswith("/") and not ref.startswith("//")


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_pages_reference_only_same_origin_urls_and_those_load(client, page):
    resp = client.get(page)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    parser = _Refs()
    parser.feed(resp.text)
    assert parser.refs and all(_same_origin(r) for r in parser.refs), parser.refs
    assert parser.inline_scripts == 0  # so the CSP can forbid inline script
    assert not re.search(r"https?://", resp.text)
    csp = resp.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert script_src == "'self'" and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for ref in parser.refs:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        if ref.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], ref
        if ref.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")
        assert asset.headers["x-content-type-options"] == "nosniff"


def test_the_swagger_start_script_points_at_this_origin_and_no_validator(client):
    script = client.get("/api/docs/assets/swagger-init.js")
    assert script.status_code == 200 and '"url": "/api/v1/openapi.json"' in script.text
    assert '"validatorUrl": null' in script.text and "http" not in script.text


@pytest.mark.parametrize("name", ["../app.py", "..%2F..%2Fapp.py", "swagger-ui.js", "%2Fetc%2Fpasswd",
                                  "favicon.png%00.js"])
def test_only_the_listed_asset_files_are_served(client, name):
    resp = client.get(f"/api/docs/assets/{name}")
    assert resp.status_code == 404, (name, resp.text[:100])
    assert "root:" not in resp.text and "import" not in resp.text


@pytest.fixture(scope="module")
def served(settings, engine):
    """The gateway on a loopback port (uvicorn in a thread): the browser needs a real HTTP server."""
    import uvicorn

    from deploy.stack.process import free_port
    from orchestration.gateway.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.timeout(120)
def test_the_docs_render_in_a_browser_with_the_network_refused(browser, served, artefacts_dir):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    outside, failed, errors = [], [], []

    def gate(route):
        if route.request.url.startswith(served + "/"):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", gate)
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(served + "/api/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "tradeloop gateway" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector(".opblock", timeout=30_000)
        spec = page.request.get(served + "/api/v1/openapi.json").json()
        assert page.locator(".opblock").count() == sum(len(ops) for ops in spec["paths"].values())
        assert page.locator(".auth-wrapper .authorize").count() == 1  # the OAuth2 password flow is offered
        page.screenshot(path=str(artefacts_dir / "swagger-ui.png"), full_page=False)

        page.goto(served + "/api/docs/redoc")
        page.wait_for_selector("h1", timeout=30_000)
        page.wait_for_function("document.body.innerText.includes('/api/v1/control/kill-switch')", timeout=30_000)
        assert "tradeloop gateway" in page.inner_text("h1")
        page.screenshot(path=str(artefacts_dir / "redoc.png"), full_page=False)
    finally:
        page.close()
    # nothing left this origin: the router saw no other request, and the only failed one is ReDoc's footer logo
    # (an <img> of cdn.redoc.ly that hides itself on error), refused by the page's CSP before any connection
    assert outside == [], outside
    assert failed in ([], [REDOC_LOGO]), failed
    assert [e for e in errors if REDOC_LOGO not in e] == [], errors  # any other CSP violation is a console error
