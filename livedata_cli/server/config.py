"""Server settings: one frozen dataclass, passed to worker processes as JSON in the environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from livedata_cli.crypto.kdf import test_only_weakened
from livedata_cli.settings import home

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
    register: str = "5/hour"
    register_ip: str = "60/hour"


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
    trust_proxy: str = ""  # proxies whose X-Forwarded-* headers count: addresses and CIDRs, comma-separated
    metrics_token_hash: str = ""  # SHA-256 of the --metrics-token; /metrics is not served without one
    hash_concurrency: int = 0
    weaken_kdf: bool = False
    metrics_dir: str | None = None
    json_limit: int = 64 * 1024  # request bodies other than file content (server/bodylimit.py)
    # Resumable uploads (server/spools.py) and slow clients (server/timeouts.py).
    max_open_uploads: int = 20
    upload_idle_timeout: int = 3600
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    audit_batch_ms: int = 0  # >0: read records are written in batches this often (server/auditq.py)
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
        if isinstance(data.get("trust_proxy"), bool):  # a setting written before the list of proxies
            data["trust_proxy"] = ""
        limits = RateLimits(**data.pop("rate_limits", {}))
        return ServerConfig(**data, rate_limits=limits)

    @staticmethod
    def from_env() -> ServerConfig:
        text = os.environ.get(ENV_VAR)
        return ServerConfig.from_json(text) if text else ServerConfig().resolved()


def proxy_networks(values: list[str]) -> str:
    """``--trust-proxy`` values (each an address or a CIDR, or several with commas) as uvicorn's
    ``forwarded_allow_ips``; anything else is a usage error."""
    import ipaddress

    from livedata_cli.errors import UsageError

    found: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                found.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise UsageError(
                    f"--trust-proxy: {item!r} is not an IP address or network (such as 10.0.0.0/8 or 127.0.0.1)"
                ) from None
    if values and not found:
        raise UsageError("--trust-proxy needs the proxies' addresses (such as 10.0.0.0/8 or 127.0.0.1)")
    return ",".join(found)
