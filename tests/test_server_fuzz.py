"""Fuzz the API from its own OpenAPI document (schemathesis): no input gives a 500."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from livedata_cli.server.app import create_app
from livedata_cli.server.config import RateLimits, ServerConfig
from livedata_cli.server.db import Database
from pgserver import free_port

_home = Path(tempfile.mkdtemp(prefix="livedata-fuzz-"))
atexit.register(shutil.rmtree, _home, True)
_config = ServerConfig(
    db_url=f"sqlite:///{_home / 'db.sqlite'}",
    store_url=str(_home / "blobs"),
    keys_path=str(_home / "keys.json"),
    weaken_kdf=True,
    smtp_host="127.0.0.1",
    smtp_port=free_port(),  # nothing listens: reset mail fails quietly, as it must
    rate_limits=RateLimits(*(["100000/minute"] * 8)),
)
Database(_config.db_url).migrate()
app = create_app(_config)
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)

with TestClient(app) as _c:
    _c.post("/api/v1/auth/register", json={"email": "fuzz@example.com", "password": "fuzz password 1"})
    _TOKEN = _c.post("/api/v1/auth/login", json={"email": "fuzz@example.com", "password": "fuzz password 1"}).json()[
        "access_token"
    ]


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_input_makes_a_500(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {_TOKEN}"})
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
