"""The API docs, offline: Swagger UI at /api/docs and ReDoc at /api/docs/redoc.

Their scripts and styles are the files the ``fastapi-offline`` wheel ships (Swagger UI 5, ReDoc 2), served from
/api/docs/assets/<name>: nothing on these pages loads from a CDN or any other origin. The pages carry no inline
script (Swagger UI starts from a small script served here too), so their Content-Security-Policy allows scripts
from this origin only. Public, like the OpenAPI document they render: they hold no data.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

DOCS_URL = "/api/docs"
ASSETS_URL = DOCS_URL + "/assets"
# style-src 'unsafe-inline': both UIs set style attributes from script; data: images are Swagger UI's icons;
# blob: workers are ReDoc's search index
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
VENDOR_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
CACHE = {"Cache-Control": "public, max-age=86400"}

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def vendor_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{ASSETS_URL}/favicon.png">
{head}
</head>
<body>
{body}
</body>
</html>
""")


@router.get(DOCS_URL)
def swagger_ui(request: Request) -> HTMLResponse:
    title = request.app.title + " - Swagger UI"
    return _page(title, f'<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">',
                 f'<div id="swagger-ui"></div>\n<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>\n'
                 f'<script src="{ASSETS_URL}/swagger-init.js"></script>')


@router.get(DOCS_URL + "/redoc")
def redoc(request: Request) -> HTMLResponse:
    title = request.app.title + " - ReDoc"
    return _page(title, "<style>body { margin: 0; padding: 0; }</style>",
                 f'<redoc spec-url="{request.app.openapi_url}"></redoc>\n'
                 f'<script src="{ASSETS_URL}/redoc.standalone.js"></script>')


@router.get(ASSETS_URL + "/{name}")
def asset(request: Request, name: str) -> Response:
    if name == "swagger-init.js":
        # FastAPI's own Swagger UI settings; validatorUrl null: no badge fetched from the public validator
        config = {"url": request.app.openapi_url, "dom_id": "#swagger-ui", "layout": "BaseLayout",
                  "deepLinking": True, "showExtensions": True, "showCommonExtensions": True, "validatorUrl": None,
                  "persistAuthorization": False}
        script = (f"window.ui = SwaggerUIBundle(Object.assign({json.dumps(config)}, "
                  "{presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]}));\n")
        return Response(script, media_type="text/javascript")
    if name not in VENDOR_FILES:  # a fixed list: no path from the caller reaches the file system
        raise HTTPException(404, "Not Found")
    return FileResponse(vendor_dir() / name, headers=CACHE)
