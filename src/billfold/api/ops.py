"""Operations routes: liveness, readiness and Prometheus metrics; the API docs (/docs), whose
Swagger UI assets ship in the package (static/swagger-ui) so they work without internet."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from billfold import __version__
from billfold.api.deps import ContainerDep
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.db.migrate import current_revisions, script_heads
from billfold.observability import REGISTRY

router = APIRouter(tags=["operations"])


@router.get("/healthz")
@rate_limit(RateLimitClass.EXEMPT)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    responses={503: {"description": "The database or its migrations are not ready (same body)"}},
)
@rate_limit(RateLimitClass.EXEMPT)
async def readyz(container: ContainerDep) -> JSONResponse:
    """The database answers and its schema is at the newest migration."""
    checks: dict[str, str] = {}
    try:
        async with container.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if checks["database"] == "ok":
        current = await current_revisions(container.db.engine)
        expected = script_heads()
        checks["migrations"] = (
            "ok"
            if current == expected
            else (f"behind: at {sorted(current)}, expected {sorted(expected)}")
        )
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    responses={
        200: {
            "description": "Prometheus's text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
@rate_limit(RateLimitClass.EXEMPT)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


DOCS_ASSETS_PATH = "/docs-assets"
_SWAGGER_UI = Path(__file__).resolve().parent / "static" / "swagger-ui"


@router.get("/docs", include_in_schema=False)
@rate_limit(RateLimitClass.EXEMPT)
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI from billfold's own assets (no CDN), reading this app's OpenAPI document."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    assets = root + DOCS_ASSETS_PATH
    return get_swagger_ui_html(
        openapi_url=root + (request.app.openapi_url or "/openapi.json"),
        title=f"{request.app.title} API",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon-32x32.png",
        # No badge from validator.swagger.io: the page calls no other host.
        swagger_ui_parameters={"validatorUrl": None},
    )


def mount_docs_assets(app: FastAPI) -> None:
    """Serve Swagger UI's files (Apache-2.0, licence beside them) under DOCS_ASSETS_PATH."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=_SWAGGER_UI), name="docs-assets")
