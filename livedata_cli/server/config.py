"""Server settings: one frozen dataclass, passed to worker processes as JSON in the environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from livedata_cli.config import home
from livedata_cli.crypto.kdf import test_only_weakened

ENV_VAR = "LIVEDATA_SERVER_CONFIG"
GIB = 1024**3


def default_dir() -> Path:
    return home() / "server"


@dataclass(frozen=True)
class RateLimits:
    """``limits`` strings ("5/minute") for the guarded actions, per account and per IP."""

    login: str = "10/minute"
    login_ip: str = "60/minute"
    mfa: str = "10/minute"
    mfa_ip: str = "60/minute"
    reset: str = "5/hour"
    reset_ip: str = "30/hour"
    share_password: str = "10/minute"
    share_password_ip: str = "60/minute"


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server process needs; no secrets (those live in the key file)."""

    db_url: str = ""
    store_url: str = ""
    keys_path: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    certfile: str | None = None
    keyfile: str | None = None
    redis_url: str | None = None
    scan_command: str | None = None
    scan_timeout: float = 60.0
    public_url: str = ""
    quota_bytes: int = 5 * GIB
    access_ttl: int = 15 * 60
    refresh_ttl: int = 30 * 24 * 3600
    reset_ttl: int = 3600
    mfa_challenge_ttl: int = 300
    trash_retention: int = 30 * 24 * 3600
    ip_retention_days: int = 30  # IPs in audit records and sessions are erased after this (server/retention.py)
    device_trust_days: int = 30
    mfa_policy: str = "untrusted"  # untrusted: a trusted device skips the TOTP step; always: it never does
    share_max_failures: int = 5
    conversion_lease: int = 600
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "livedata@localhost"
    smtp_starttls: bool = False
    smtp_user: str | None = None
    trust_proxy: bool = False
    hash_concurrency: int = 0
    weaken_kdf: bool = False
    metrics_dir: str | None = None
    rate_limits: RateLimits = field(default_factory=RateLimits)

    def resolved(self) -> ServerConfig:
        """Fill the defaults that depend on LIVEDATA_HOME."""
        base = default_dir()
        return replace(
            self,
            db_url=self.db_url or f"sqlite:///{base / 'server.sqlite'}",
            store_url=self.store_url or str(base / "blobs"),
            keys_path=self.keys_path or str(base / "keys.json"),
            public_url=self.public_url
            or f"{'https' if self.certfile else 'http'}://{self.host}:{self.port}",
            hash_concurrency=self.hash_concurrency or max(2, os.cpu_count() or 2),
            weaken_kdf=self.weaken_kdf or test_only_weakened(),
        )

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> ServerConfig:
        data: dict[str, Any] = json.loads(text)
        limits = RateLimits(**data.pop("rate_limits", {}))
        return ServerConfig(**data, rate_limits=limits)

    @staticmethod
    def from_env() -> ServerConfig:
        text = os.environ.get(ENV_VAR)
        return ServerConfig.from_json(text) if text else ServerConfig().resolved()
