"""The ASGI application: compose the parts once, mount the routers under ``/api/v1``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from livedata_cli import __version__
from livedata_cli.server import (
    account_data,
    admin_api,
    auth,
    conversions,
    db,
    devices,
    file_copy,
    filelocks,
    files,
    form_upload,
    ops,
    retention,
    share_page,
    shares,
    uploads,
    users,
)
from livedata_cli.server.auditq import AuditQueue
from livedata_cli.server.bodylimit import BodyLimitMiddleware
from livedata_cli.server.config import ServerConfig
from livedata_cli.server.deps import ApiError, Context
from livedata_cli.server.keys import ServerKeys
from livedata_cli.server.mail import Mailer
from livedata_cli.server.middleware import RequestMiddleware
from livedata_cli.server.ratelimit import Limiter, LimiterUnavailable
from livedata_cli.server.security import Passwords, Tokens
from livedata_cli.stores import LocalFolder, open_store

API = "/api/v1"
log = logging.getLogger("livedata.server")


def build_context(config: ServerConfig) -> Context:
    keys = ServerKeys(config.keys_path)
    store = open_store(config.store_url)
    if isinstance(store, LocalFolder):  # the server's blob folder is its own: made when missing
        store.prepare()
    database = db.Database(config.db_url)
    return Context(
        config=config,
        db=database,
        store=store,
        keys=keys,
        passwords=Passwords(config.hash_concurrency, weaken=config.weaken_kdf),
        tokens=Tokens(keys.token_secret, config.access_ttl),
        limiter=Limiter(config.redis_url),
        mailer=Mailer(config),
        audit_queue=AuditQueue(database, config.audit_batch_ms / 1000) if config.audit_batch_ms > 0 else None,
    )


async def _janitor(c: Context) -> None:
    """Purge files whose time in the trash is over, and IPs past their retention, every ten minutes."""
    while True:
        try:
            await to_thread.run_sync(files.purge_trash, c)
        except Exception:
            log.exception("trash purge failed")
        try:
            await to_thread.run_sync(uploads.expire, c)
        except Exception:
            log.exception("expiring unfinished uploads failed")
        try:
            await to_thread.run_sync(retention.purge_ips, c.db, c.config.ip_retention_days)
        except Exception:
            log.exception("erasing old IP addresses failed")
        await asyncio.sleep(600)


def create_app(config: ServerConfig | None = None, *, context: Context | None = None) -> FastAPI:
    config = (config or ServerConfig()).resolved() if context is None else context.config
    c = context or build_context(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_janitor(c))
        batcher = asyncio.create_task(c.audit_queue.run()) if c.audit_queue is not None else None
        try:
            yield
        finally:
            task.cancel()
            if batcher is not None:
                batcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await batcher
            c.db.dispose()

    app = FastAPI(
        title="Live-Data API",
        version=__version__,
        description="The hosted store of livedata vaults: accounts, files (client-encrypted), shares, conversions.",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = c
    for router in (
        auth.router, uploads.router, form_upload.router, files.router, shares.router, conversions.router,
        users.router, filelocks.router, devices.router, file_copy.router,
    ):
        app.include_router(router, prefix=API)
    app.include_router(account_data.router, prefix=API)
    app.include_router(admin_api.router, prefix=API)
    app.include_router(ops.router)
    app.include_router(share_page.router)  # /s/<id>: a share link opened in a browser
    app.add_middleware(BodyLimitMiddleware, default=config.json_limit)
    app.add_middleware(RequestMiddleware)  # outermost: it logs and counts the refusals too

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"detail": e.message, "code": e.code}, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        # What was wrong and where, without echoing the input: a body of bytes
        # that are not UTF-8 cannot be written back as JSON.
        errors = [
            {"type": str(err.get("type", "")), "loc": [str(part) for part in err.get("loc", ())],
             "msg": str(err.get("msg", ""))}
            for err in e.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(LimiterUnavailable)
    async def _limiter_down(_request: Request, e: LimiterUnavailable) -> JSONResponse:
        log.error("rate-limit counts unreachable", extra={"fields": {"event": "redis_unreachable", "error": str(e)}})
        return JSONResponse(
            {"detail": "the rate-limit counts cannot be reached; try again later", "code": "unavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return app


def create_app_from_env() -> FastAPI:
    """The factory uvicorn's workers call: the settings come from LIVEDATA_SERVER_CONFIG."""
    return create_app(ServerConfig.from_env())
