"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
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
