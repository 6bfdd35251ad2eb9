"""Start the server: migrate, make sure the key file exists, bind, then hand the socket to uvicorn."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from livedata_cli.errors import StoreUnreachable, UsageError
from livedata_cli.server.config import ENV_VAR, ServerConfig, default_dir
from livedata_cli.server.keys import ServerKeys
from livedata_cli.server.operator import migrate
from livedata_cli.server.ratelimit import Limiter, redacted
from livedata_cli.server.scan import scan_argv
from livedata_cli.stores import LocalFolder, open_store

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "livedata_cli.server.middleware.JsonFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "livedata.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def check_store(url: str) -> None:
    """Write and delete a probe, so that a missing bucket or a read-only folder stops the start."""
    store = open_store(url)
    if isinstance(store, LocalFolder):  # the server's blob folder is made on its first start
        store.prepare()
    probe = f"tmp/start-{secrets.token_hex(4)}"
    store.put_bytes(probe, b"")
    store.delete(probe)


def clean_start(config: ServerConfig) -> int | None:
    """What a killed server left: spools no upload owns, and a folder store's half-written ``tmp/`` files.

    ``tmp/`` is emptied only when no other server uses the folder: each
    server holds a shared ``flock`` on ``server.lock`` there while it runs,
    and the one starting takes it exclusively first (and skips the cleaning
    when it cannot).  Returns the descriptor that holds the shared lock.
    """
    import fcntl
    from pathlib import Path

    from livedata_cli.server import spools
    from livedata_cli.server.db import Database

    store = open_store(config.store_url)
    database = Database(config.db_url)
    try:
        swept = spools.sweep(store, database)
    finally:
        database.dispose()
    log = logging.getLogger("livedata.server")
    if swept:
        log.info("start", extra={"fields": {"event": "orphan_spools_removed", "count": swept}})
    if spools.is_s3(store):
        return None
    root = store.root if isinstance(store, LocalFolder) else Path(config.store_url)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log.info("start", extra={"fields": {"event": "tmp_kept", "reason": "another server uses this store"}})
    else:
        gone = 0
        for path in (root / "tmp").glob("*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                gone += 1
        if gone:
            log.info("start", extra={"fields": {"event": "store_tmp_removed", "count": gone}})
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def serve(config: ServerConfig, on_listen: Callable[[str], None]) -> None:
    """Run until interrupted; ``on_listen`` gets the URL once the socket is bound."""
    import uvicorn

    import livedata_cli.server.app  # noqa: F401 (a missing package fails here, before "listening")
    from livedata_cli.server.timeouts import TimedHttpProtocol

    if bool(config.certfile) != bool(config.keyfile):
        raise UsageError("--certfile and --keyfile go together")
    if config.scan_command is not None:
        scan_argv(config.scan_command)
    if config.redis_url and not Limiter(config.redis_url).check():
        raise StoreUnreachable(f"cannot reach Redis at {redacted(config.redis_url)}")
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    scheme = "https" if config.certfile else "http"
    host_text = f"[{config.host}]" if ":" in config.host else config.host
    config = ServerConfig.from_json(config.to_env())  # a copy we may fill
    from dataclasses import replace

    config = replace(config, port=port).resolved()
    migrate(config)
    check_store(config.store_url)
    ServerKeys(config.keys_path)  # created once here, before workers race for it
    os.environ[ENV_VAR] = config.to_env()
    logging.config.dictConfig(LOG_CONFIG)
    lock_fd = clean_start(config)
    metrics_dir = None
    if config.workers > 1:
        default_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=default_dir())
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    on_listen(f"{scheme}://{host_text}:{port}")
    try:
        uvicorn.run(
            "livedata_cli.server.app:create_app_from_env",
            factory=True,
            fd=sock.fileno(),
            workers=config.workers,
            ssl_certfile=config.certfile,
            ssl_keyfile=config.keyfile,
            proxy_headers=bool(config.trust_proxy),
            forwarded_allow_ips=config.trust_proxy or "",  # only these peers' X-Forwarded-* count
            access_log=False,
            log_config=LOG_CONFIG,
            server_header=False,
            timeout_graceful_shutdown=10,
            http=TimedHttpProtocol,
        )
    finally:
        sock.close()
        if lock_fd is not None:
            os.close(lock_fd)
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


_NOTICES: list[str] | None = []  # held until the server listens; None once it does


def log_notice(message: str) -> None:
    """A notice (such as the test-only weak-KDF warning) as one line of the JSON
    log, once the server listens: a server that fails to start says only why."""
    line = json.dumps({"event": "notice", "message": message.removeprefix("livedata: ")}) + "\n"
    if _NOTICES is not None:
        _NOTICES.append(line)
    else:
        sys.stderr.write(line)
        sys.stderr.flush()


def listening_line(url: str) -> None:
    global _NOTICES
    sys.stderr.write(json.dumps({"event": "listening", "url": url}) + "\n")
    sys.stderr.writelines(_NOTICES or [])
    _NOTICES = None
    sys.stderr.flush()
