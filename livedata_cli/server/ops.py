"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from livedata_cli.server import metrics
from livedata_cli.server.deps import ApiError, CtxDep
from livedata_cli.server.security import token_hash

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and migrated, blob store writable, Redis answering")
def readyz(c: CtxDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with c.db.read() as conn:
            conn.execute(text("SELECT 1"))
        pending = c.db.pending()
        checks["database"] = "ok" if not pending else f"migrations pending: {', '.join(pending)}"
    except Exception as e:
        checks["database"] = f"unreachable: {type(e).__name__}"
    try:
        probe = f"tmp/readyz-{secrets.token_hex(4)}"
        c.store.put_bytes(probe, b"")
        c.store.delete(probe)
        checks["store"] = "ok"
    except Exception as e:
        checks["store"] = f"unwritable: {type(e).__name__}"
    if c.limiter.redis_url:
        checks["redis"] = "ok" if c.limiter.check() else "unreachable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def prometheus(request: Request, c: CtxDep) -> Response:
    """Prometheus metrics, only to a scraper holding the ``--metrics-token``: request counts per route,
    bytes stored and accounts are nobody else's business."""
    expected = c.config.metrics_token_hash
    if not expected:
        raise ApiError(404, "not_found", "metrics are not served: start the server with --metrics-token")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token_hash(token.strip()), expected):
        raise ApiError(401, "unauthorized", "the metrics token is missing or wrong", {"WWW-Authenticate": "Bearer"})
    return Response(metrics.exposition(c.db), media_type="text/plain; version=0.0.4; charset=utf-8")
