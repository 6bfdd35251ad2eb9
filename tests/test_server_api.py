"""The hosted API through its whole surface, in process (FastAPI's TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from livedata_cli.server import db
from livedata_cli.server.app import create_app
from livedata_cli.server.config import RateLimits, ServerConfig
from livedata_cli.server.operator import rotate_key
from pgserver import PASSWORD, PgServer, new_user, postgres  # noqa: F401

LOOSE = RateLimits(*(["1000/minute"] * 8))


def make_config(tmp_path: Path, db_url: str, **kw: Any) -> ServerConfig:
    base = tmp_path / "server"
    return ServerConfig(
        db_url=db_url,
        store_url=str(base / "blobs"),
        keys_path=str(base / "keys.json"),
        weaken_kdf=True,
        rate_limits=kw.pop("rate_limits", LOOSE),
        **kw,
    ).resolved()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server' / 'db.sqlite'}"
    pg: PgServer = request.getfixturevalue("postgres")
    return pg.create_database()


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """A factory of clients on a fresh server; keyword arguments override settings."""
    opened: list[TestClient] = []

    def factory(base_url: str = "http://testserver", **kw: Any) -> TestClient:
        config = make_config(tmp_path, db_url, **kw)
        db.Database(config.db_url).migrate()
        client = TestClient(create_app(config), base_url=base_url)
        client.__enter__()
        client.config = config  # type: ignore[attr-defined]
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(server: Any) -> TestClient:
    return server()  # type: ignore[no-any-return]


def _db(client: TestClient) -> db.Database:
    return client.app.state.ctx.db  # type: ignore[attr-defined,no-any-return]


# -- documents and operations ------------------------------------------------------

def test_openapi_health_and_ready(api: TestClient) -> None:
    spec = api.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/auth/login", "/api/v1/auth/refresh-token", "/api/v1/files", "/api/v1/shares",
                 "/api/v1/conversions", "/api/v1/users/me/storage", "/api/v1/users/me/audit-logs"):
        assert path in spec["paths"], path
    assert api.get("/healthz").json() == {"status": "ok"}
    r = api.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "store": "ok"}


# -- auth -------------------------------------------------------------------------

def test_register_login_refresh_rotation_and_logout(api: TestClient) -> None:
    r = api.post("/api/v1/auth/register", json={"email": "Ada@Example.com", "password": PASSWORD,
                                                 "first_name": "Ada", "last_name": "Lovelace"})
    assert r.status_code == 201
    body = r.json()
    assert body["email"] == "ada@example.com" and body["first_name"] == "Ada" and "password" not in str(body)
    assert api.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD}).status_code == 409
    assert api.post("/api/v1/auth/register", json={"email": "x@y", "password": "short"}).status_code == 422
    assert api.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "wrong password"}).status_code == 401
    assert api.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}).status_code == 401

    tokens = api.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}).json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer" and 0 < tokens["expires_in"] <= 3600
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert api.get("/api/v1/users/me", headers=auth).json()["email"] == "ada@example.com"
    assert api.get("/api/v1/users/me").status_code == 401
    assert api.get("/api/v1/users/me", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401

    new = api.post("/api/v1/auth/refresh-token", json={"refresh_token": tokens["refresh_token"]}).json()
    assert new["refresh_token"] != tokens["refresh_token"]
    new_auth = {"Authorization": f"Bearer {new['access_token']}"}
    assert api.get("/api/v1/users/me", headers=new_auth).status_code == 200
    # The old refresh token again: reuse, so the whole family is revoked.
    r = api.post("/api/v1/auth/refresh-token", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert api.post("/api/v1/auth/refresh-token", json={"refresh_token": new["refresh_token"]}).status_code == 401
    assert api.get("/api/v1/users/me", headers=new_auth).status_code == 401

    other = api.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}).json()
    other_auth = {"Authorization": f"Bearer {other['access_token']}"}
    assert api.post("/api/v1/auth/logout", headers=other_auth).status_code == 204
    assert api.get("/api/v1/users/me", headers=other_auth).status_code == 401
    assert api.post("/api/v1/auth/refresh-token", json={"refresh_token": other["refresh_token"]}).status_code == 401


def test_mfa_setup_challenge_replay_and_recovery_codes(api: TestClient) -> None:
    user = new_user(api)
    setup = user.post("/api/v1/auth/mfa/setup", json={"password": PASSWORD}).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(setup["secret"])
    wrong = "000000" if totp.now() != "000000" else "111111"
    assert user.post("/api/v1/auth/mfa/verify", json={"code": wrong, "password": PASSWORD}).status_code == 403
    code = totp.now()
    r = user.post("/api/v1/auth/mfa/verify", json={"code": code, "password": PASSWORD})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and r.json()["mfa_enabled"] is True

    login = api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()
    assert login["mfa_required"] is True and "access_token" not in login
    challenge = login["mfa_token"]
    # The code just accepted cannot be replayed, even inside its window.
    assert api.post("/api/v1/auth/mfa/challenge", json={"mfa_token": challenge, "code": code}).status_code == 401
    later = totp.at(time.time() + 30)
    r = api.post("/api/v1/auth/mfa/challenge", json={"mfa_token": challenge, "code": later})
    assert r.status_code == 200 and r.json()["token_type"] == "bearer"
    assert api.post("/api/v1/auth/mfa/challenge", json={"mfa_token": challenge, "code": later}).status_code == 401

    second = api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()["mfa_token"]
    r = api.post("/api/v1/auth/mfa/challenge", json={"mfa_token": second, "recovery_code": codes[0].upper()})
    assert r.status_code == 200
    third = api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()["mfa_token"]
    assert api.post("/api/v1/auth/mfa/challenge", json={"mfa_token": third, "recovery_code": codes[0]}).status_code == 401
    assert api.post("/api/v1/auth/mfa/challenge", json={"mfa_token": "forged", "code": later}).status_code == 401


# -- files -------------------------------------------------------------------------

def test_upload_list_metadata_download_and_ranges(api: TestClient) -> None:
    user = new_user(api)
    big = bytes(range(256)) * 2600  # 665,600 bytes: three server segments
    f = user.upload(big, "a/report.pdf", content_type="application/pdf", tag=["work", "q3"])
    assert f["size"] == len(big) and f["tags"] == ["q3", "work"] and f["content_type"] == "application/pdf"
    empty = user.upload(b"", "empty")
    assert empty["size"] == 0

    r = user.get(f"/api/v1/files/{f['id']}/download")
    assert r.status_code == 200 and r.content == big
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["accept-ranges"] == "bytes"
    for header, lo, hi in [
        ("bytes=0-9", 0, 9),
        ("bytes=262140-262150", 262140, 262150),  # across a segment boundary
        ("bytes=600000-", 600000, len(big) - 1),
        ("bytes=-100", len(big) - 100, len(big) - 1),
        ("bytes=665000-999999999", 665000, len(big) - 1),
    ]:
        r = user.get(f"/api/v1/files/{f['id']}/download", headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == big[lo : hi + 1], header
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/{len(big)}"
    r = user.get(f"/api/v1/files/{f['id']}/download", headers={"Range": f"bytes={len(big)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(big)}"
    assert user.get(f"/api/v1/files/{empty['id']}/download").content == b""

    listing = user.get("/api/v1/files", params={"per_page": 1}).json()
    assert listing["total"] == 2 and len(listing["items"]) == 1 and listing["items"][0]["id"] == empty["id"]
    page2 = user.get("/api/v1/files", params={"per_page": 1, "page": 2}).json()
    assert page2["items"][0]["id"] == f["id"]

    r = user.patch(f"/api/v1/files/{f['id']}", json={"file_name": "renamed", "description": "Quarterly",
                                                       "metadata": {"k": [1, 2]}, "tags": ["x"]})
    assert r.status_code == 200
    got = user.get(f"/api/v1/files/{f['id']}").json()
    assert (got["file_name"], got["description"], got["metadata"], got["tags"]) == ("renamed", "Quarterly", {"k": [1, 2]}, ["x"])
    r = user.post(f"/api/v1/files/{f['id']}/tags", json={"add": ["y", "z"], "remove": ["x"]})
    assert r.json()["tags"] == ["y", "z"]


def test_search_over_visible_fields(api: TestClient) -> None:
    user = new_user(api)
    a = user.upload(b"a" * 10, "Holiday_photo.jpg", content_type="image/jpeg", tag=["trip"])
    b = user.upload(b"b" * 1000, "notes.txt", content_type="text/plain", description="100% done", tag=["trip", "work"])
    user.upload(b"c", "other.bin")

    def ids(**params: Any) -> set[str]:
        r = user.get("/api/v1/files/search", params=params)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert ids(q="holiday") == {a["id"]}
    assert ids(q="_photo") == {a["id"]}
    assert ids(q="100%") == {b["id"]}
    assert ids(tag="trip") == {a["id"], b["id"]}
    assert ids(tag=["trip", "work"]) == {b["id"]}
    assert ids(content_type="image/") == {a["id"]}
    assert ids(min_size=100) == {b["id"]}
    assert ids(max_size=10, tag="trip") == {a["id"]}
    assert ids(since=time.time() + 60) == set()


def test_trash_restore_purge_and_storage(api: TestClient, tmp_path: Path) -> None:
    user = new_user(api)
    f = user.upload(b"x" * 5000)
    assert user.get("/api/v1/users/me/storage").json()["used_bytes"] == 5000
    assert user.delete(f"/api/v1/files/{f['id']}").status_code == 204
    assert user.get(f"/api/v1/files/{f['id']}/download").status_code == 404
    assert user.get("/api/v1/files").json()["total"] == 0
    assert [i["id"] for i in user.get("/api/v1/files", params={"trash": True}).json()["items"]] == [f["id"]]
    assert user.post(f"/api/v1/files/{f['id']}/restore").status_code == 200
    assert user.get(f"/api/v1/files/{f['id']}/download").content == b"x" * 5000
    blobs = [p for p in (tmp_path / "server" / "blobs" / "data").rglob("*") if p.is_file()]
    assert len(blobs) == 1 and b"x" * 100 not in blobs[0].read_bytes()  # the server's own layer
    assert user.delete(f"/api/v1/files/{f['id']}", params={"purge": True}).status_code == 204
    assert not [p for p in (tmp_path / "server" / "blobs" / "data").rglob("*") if p.is_file()]
    storage = user.get("/api/v1/users/me/storage").json()
    assert storage["used_bytes"] == 0 and storage["quota_bytes"] == 5 * 1024**3

    # The janitor purges what stayed in the trash past the retention.
    from livedata_cli.server.files import purge_trash

    g = user.upload(b"y" * 10)
    user.delete(f"/api/v1/files/{g['id']}")
    ctx = api.app.state.ctx  # type: ignore[attr-defined]
    assert purge_trash(ctx) == 0
    assert purge_trash(ctx, now=time.time() + ctx.config.trash_retention + 1) == 1
    assert user.get(f"/api/v1/files/{g['id']}").status_code == 404


def test_quota_is_enforced_with_413(server: Any, tmp_path: Path) -> None:
    api = server(quota_bytes=1000)
    user = new_user(api)
    user.upload(b"a" * 600)
    r = user.post("/api/v1/files", content=b"b" * 600)
    assert r.status_code == 413 and r.json()["code"] == "quota_exceeded"
    assert "600 of 1000 bytes used" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"c" * 100

    r = user.post("/api/v1/files", content=chunks())
    assert r.status_code == 413
    assert user.get("/api/v1/users/me/storage").json()["used_bytes"] == 600
    assert len([p for p in (tmp_path / "server" / "blobs" / "data").rglob("*") if p.is_file()]) == 1
    assert user.upload(b"d" * 400)["size"] == 400


def test_another_users_ids_are_404_everywhere(api: TestClient) -> None:
    alice, bob = new_user(api), new_user(api)
    f = alice.upload(b"secret")
    share = alice.post("/api/v1/shares", json={"file_id": f["id"]}).json()
    job = alice.post("/api/v1/conversions", json={"file_id": f["id"], "target_format": "pdf"}).json()
    fid, sid, jid = f["id"], share["id"], job["id"]
    attempts = [
        ("GET", f"/api/v1/files/{fid}", None),
        ("PATCH", f"/api/v1/files/{fid}", {"file_name": "mine"}),
        ("GET", f"/api/v1/files/{fid}/download", None),
        ("POST", f"/api/v1/files/{fid}/tags", {"add": ["t"]}),
        ("DELETE", f"/api/v1/files/{fid}", None),
        ("DELETE", f"/api/v1/files/{fid}?purge=true", None),
        ("POST", f"/api/v1/files/{fid}/restore", None),
        ("POST", "/api/v1/shares", {"file_id": fid}),
        ("GET", f"/api/v1/shares/{sid}", None),
        ("DELETE", f"/api/v1/shares/{sid}", None),
        ("POST", "/api/v1/conversions", {"file_id": fid, "target_format": "pdf"}),
        ("GET", f"/api/v1/conversions/{jid}", None),
        ("DELETE", f"/api/v1/conversions/{jid}", None),
        ("POST", f"/api/v1/conversions/{jid}/progress", {"worker": "w", "progress": 0.5}),
        ("POST", f"/api/v1/conversions/{jid}/complete", {"worker": "w", "error": "x"}),
    ]
    for method, url, body in attempts:
        r = bob.request(method, url, json=body)
        assert r.status_code == 404, (method, url, r.status_code, r.text)
    assert bob.get("/api/v1/files").json()["total"] == 0
    assert bob.get("/api/v1/files/search", params={"q": "upload"}).json()["total"] == 0
    assert bob.get("/api/v1/shares").json()["total"] == 0
    assert bob.post("/api/v1/conversions/claim", json={"worker": "w"}).status_code == 204
    # Nothing of Alice's changed.
    assert alice.get(f"/api/v1/files/{fid}/download").content == b"secret"
    assert alice.get(f"/api/v1/shares/{sid}").json()["state"] == "active"


def test_every_route_on_an_owned_object_answers_another_account_as_for_an_id_that_never_existed(
    api: TestClient,
) -> None:
    """Each kind of object a route works on (live file, any file, trashed file, share, job, upload):
    another account's id gets the very answer a made-up id gets, and changes nothing."""
    alice, bob = new_user(api), new_user(api)
    f = alice.upload(b"secret")
    gone = alice.upload(b"in the trash", "trash.bin")
    assert alice.delete(f"/api/v1/files/{gone['id']}").status_code == 204
    share = alice.post("/api/v1/shares", json={"file_id": f["id"]}).json()
    job = alice.post("/api/v1/conversions", json={"file_id": f["id"], "target_format": "pdf"}).json()
    r = alice.post("/api/v1/files/uploads", params={"file_name": "up.bin", "size": 10})
    assert r.status_code == 201, r.text
    up = r.json()["id"]
    part = {"Content-Range": "bytes 0-3/10"}
    assert alice.request("PUT", f"/api/v1/files/uploads/{up}", content=b"abcd", headers=part).status_code == 200
    nobody = "0" * 32
    routes = [  # (method, url template, body, headers); {} is the object's id
        ("GET", "/api/v1/files/{}", None, {}),
        ("PATCH", "/api/v1/files/{}", {"description": "mine"}, {}),
        ("PUT", "/api/v1/files/{}", {"description": "mine"}, {}),
        ("POST", "/api/v1/files/{}/tags", {"add": ["t"]}, {}),
        ("POST", "/api/v1/files/{}/tag", {"add": ["t"]}, {}),
        ("GET", "/api/v1/files/{}/download", None, {}),
        ("POST", "/api/v1/files/{}/copy", {"offset": 0, "length": 2, "file_name": "copy"}, {}),
        ("DELETE", "/api/v1/files/{}", None, {}),
        ("DELETE", "/api/v1/files/{}?purge=true", None, {}),
        ("POST", "/api/v1/shares", {"file_id": "{}"}, {}),
        ("POST", "/api/v1/conversions", {"file_id": "{}", "target_format": "pdf"}, {}),
    ]
    trashed = [
        ("GET", "/api/v1/files/{}", None, {}),
        ("POST", "/api/v1/files/{}/restore", None, {}),
        ("DELETE", "/api/v1/files/{}?purge=true", None, {}),
    ]
    shares = [("GET", "/api/v1/shares/{}", None, {}), ("DELETE", "/api/v1/shares/{}", None, {})]
    jobs = [
        ("GET", "/api/v1/conversions/{}", None, {}),
        ("POST", "/api/v1/conversions/{}/progress", {"worker": "w", "progress": 0.5}, {}),
        ("POST", "/api/v1/conversions/{}/complete", {"worker": "w", "error": "x"}, {}),
        ("POST", "/api/v1/conversions/{}/complete", {"worker": "w", "result_file_id": f["id"]}, {}),
        ("DELETE", "/api/v1/conversions/{}", None, {}),
    ]
    uploads = [
        ("GET", "/api/v1/files/uploads/{}", None, {}),
        ("HEAD", "/api/v1/files/uploads/{}", None, {}),
        ("PUT", "/api/v1/files/uploads/{}", b"efgh", {"Content-Range": "bytes 4-7/10"}),
        ("POST", "/api/v1/files/uploads/{}/complete", None, {}),
        ("DELETE", "/api/v1/files/uploads/{}", None, {}),
    ]
    for owned_id, kind in ((f["id"], routes), (gone["id"], trashed), (share["id"], shares), (job["id"], jobs),
                           (up, uploads)):
        for method, url, body, headers in kind:
            answers = []
            for oid in (owned_id, nobody):
                kw: dict[str, Any] = {"headers": headers}
                if isinstance(body, bytes):
                    kw["content"] = body
                elif body is not None:
                    kw["json"] = {k: (oid if v == "{}" else v) for k, v in body.items()}
                r = bob.request(method, url.format(oid), **kw)
                answers.append((r.status_code, r.content))
            assert answers[0] == answers[1], (method, url, answers)
            assert answers[0][0] == 404, (method, url, answers)
    # Nothing of Alice's changed.
    info = alice.get(f"/api/v1/files/{f['id']}").json()
    assert info["description"] == "" and info["tags"] == []
    assert alice.get(f"/api/v1/files/{f['id']}/download").content == b"secret"
    assert alice.get(f"/api/v1/files/{gone['id']}").json()["deleted_at"] is not None
    assert alice.get(f"/api/v1/shares/{share['id']}").json()["state"] == "active"
    assert alice.get(f"/api/v1/conversions/{job['id']}").json()["status"] == "queued"
    assert alice.get(f"/api/v1/files/uploads/{up}").json()["received"] == 4
    assert bob.get("/api/v1/files").json()["total"] == 0


# -- shares --------------------------------------------------------------------------

def test_share_limits_password_expiry_and_revoke(api: TestClient) -> None:
    owner = new_user(api)
    f = owner.upload(b"ciphertext from the client")
    once = owner.post("/api/v1/shares", json={"file_id": f["id"], "max_downloads": 1, "manifest": "opaque"}).json()
    assert once["state"] == "active" and once["password_protected"] is False
    pub = api.get(f"/api/v1/shares/{once['id']}/public").json()
    assert pub["manifest"] == "opaque" and pub["size"] == len(b"ciphertext from the client") and pub["downloads_left"] == 1
    assert api.get(f"/api/v1/shares/{once['id']}/download").content == b"ciphertext from the client"
    r = api.get(f"/api/v1/shares/{once['id']}/download")
    assert r.status_code == 410 and r.json()["code"] == "share_used_up"
    assert owner.get(f"/api/v1/shares/{once['id']}").json()["state"] == "used_up"

    verifier = "v" * 43
    locked = owner.post("/api/v1/shares", json={"file_id": f["id"], "password_verifier": verifier}).json()
    url = f"/api/v1/shares/{locked['id']}/download"
    assert api.get(url).status_code == 401
    assert api.get(url, headers={"X-Share-Verifier": "w" * 43}).status_code == 401
    assert api.get(url, headers={"X-Share-Verifier": verifier}).status_code == 200
    for _ in range(3):
        api.get(url, headers={"X-Share-Verifier": "w" * 43})
    r = api.get(url, headers={"X-Share-Verifier": verifier})
    assert r.status_code == 410 and r.json()["code"] == "share_locked"

    timed = owner.post("/api/v1/shares", json={"file_id": f["id"], "expires_in": 3600}).json()
    with _db(api).write() as conn:  # move the clock: the share's expiry is now in the past
        conn.execute(db.shares.update().where(db.shares.c.id == timed["id"]).values(expires_at=time.time() - 1))
    assert api.get(f"/api/v1/shares/{timed['id']}/download").json()["code"] == "share_expired"

    revoked = owner.post("/api/v1/shares", json={"file_id": f["id"]}).json()
    assert owner.delete(f"/api/v1/shares/{revoked['id']}").status_code == 204
    assert api.get(f"/api/v1/shares/{revoked['id']}/download").json()["code"] == "share_revoked"
    assert api.get("/api/v1/shares/0000/download").status_code == 404
    states = {s["id"]: s["state"] for s in owner.get("/api/v1/shares").json()["items"]}
    assert states[revoked["id"]] == "revoked" and states[timed["id"]] == "expired"


# -- conversions -----------------------------------------------------------------------

def test_conversion_queue_one_claimant_and_lease_expiry(api: TestClient) -> None:
    user = new_user(api)
    f = user.upload(b"# notes")
    assert "pdf" in user.get("/api/v1/conversions/formats").json()["formats"]["document"]
    assert user.post("/api/v1/conversions", json={"file_id": f["id"], "target_format": "exe"}).status_code == 422
    job = user.post("/api/v1/conversions", json={"file_id": f["id"], "target_format": "PDF"}).json()
    assert job["status"] == "queued" and job["target_format"] == "pdf"
    a = user.post("/api/v1/conversions/claim", json={"worker": "a"})
    assert a.status_code == 200 and a.json()["id"] == job["id"] and a.json()["worker"] == "a"
    assert user.post("/api/v1/conversions/claim", json={"worker": "b"}).status_code == 204
    assert user.post(f"/api/v1/conversions/{job['id']}/complete", json={"worker": "b", "error": "x"}).status_code == 409
    with _db(api).write() as conn:  # worker a vanished: its lease runs out
        conn.execute(db.conversions.update().where(db.conversions.c.id == job["id"]).values(lease_until=time.time() - 1))
    b = user.post("/api/v1/conversions/claim", json={"worker": "b", "formats": ["pdf"]}).json()
    assert b["worker"] == "b" and b["attempts"] == 2
    assert user.post(f"/api/v1/conversions/{job['id']}/progress", json={"worker": "b", "progress": 0.5}).json()["progress"] == 0.5
    result = user.upload(b"%PDF-")
    done = user.post(f"/api/v1/conversions/{job['id']}/complete", json={"worker": "b", "result_file_id": result["id"]}).json()
    assert done["status"] == "done" and done["result_file_id"] == result["id"]
    assert user.get(f"/api/v1/conversions/{job['id']}").json()["status"] == "done"
    assert user.get("/api/v1/conversions").json()["total"] == 1


# -- users ---------------------------------------------------------------------------

def test_profile_password_change_and_audit_log(api: TestClient) -> None:
    user = new_user(api)
    r = user.patch("/api/v1/users/me", json={"first_name": "Grace"})
    assert r.json()["first_name"] == "Grace" and r.json()["last_name"] == "L"
    other_session = api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}).json()
    bad = user.post("/api/v1/users/me/password", json={"current_password": "wrong one!", "new_password": "new password 1"})
    assert bad.status_code == 403
    ok = user.post("/api/v1/users/me/password", json={"current_password": PASSWORD, "new_password": "new password 1"})
    assert ok.status_code == 204
    assert user.get("/api/v1/users/me").status_code == 200  # this session stays
    assert api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {other_session['access_token']}"}).status_code == 401
    assert api.post("/api/v1/auth/login", json={"email": user.email, "password": "new password 1"}).status_code == 200

    f = user.upload(b"z", headers={"User-Agent": "pytest-agent/1"})
    user.get(f"/api/v1/files/{f['id']}/download")
    logs = user.get("/api/v1/users/me/audit-logs", params={"per_page": 200}).json()["items"]
    actions = [e["action"] for e in logs]
    for action in ("account.register", "auth.login", "account.update", "account.password", "file.upload", "file.download"):
        assert action in actions, action
    upload = next(e for e in logs if e["action"] == "file.upload")
    assert upload["object_id"] == f["id"] and upload["ip"] and upload["user_agent"] == "pytest-agent/1"
    assert any(e["action"] == "account.password" and e["status"] == "failed" for e in logs)
    only = user.get("/api/v1/users/me/audit-logs", params={"action": "file.download"}).json()
    assert only["total"] == 1


# -- security -------------------------------------------------------------------------

def test_rate_limits_answer_429_with_retry_after(server: Any) -> None:
    tight = RateLimits(login="3/minute", login_ip="5/minute", mfa="2/minute", mfa_ip="100/minute",
                       reset="100/minute", reset_ip="100/minute", share_password="2/minute", share_password_ip="100/minute")
    api = server(rate_limits=tight)
    user = new_user(api)  # one login
    for _ in range(2):
        assert api.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong password"}).status_code == 401
    r = api.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    # Per IP: other accounts from the same address run out too.
    codes = [api.post("/api/v1/auth/login", json={"email": f"x{i}@example.com", "password": "p" * 8}).status_code for i in range(3)]
    assert codes[-1] == 429

    # MFA changes ask for the password again, counted as a login: this account's and address's budgets are spent.
    r = user.post("/api/v1/auth/mfa/verify", json={"code": "123456", "password": PASSWORD})
    assert r.status_code == 429 and "retry-after" in r.headers

    f = user.upload(b"q")
    s = user.post("/api/v1/shares", json={"file_id": f["id"], "password_verifier": "v" * 20}).json()
    for _ in range(2):
        assert api.get(f"/api/v1/shares/{s['id']}/public", headers={"X-Share-Verifier": "w" * 20}).status_code == 401
    assert api.get(f"/api/v1/shares/{s['id']}/public", headers={"X-Share-Verifier": "v" * 20}).status_code == 429


def test_security_headers_request_id_and_hsts(server: Any) -> None:
    plain = server()
    r = plain.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123" and r.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in r.headers
    r = plain.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces" and len(r.headers["x-request-id"]) == 16
    tls = server(base_url="https://testserver")
    r = tls.get("/api/v1/openapi.json")
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert r.headers["cache-control"] == "no-store"


def test_metrics_count_requests_bytes_and_queue(server: Any) -> None:
    from livedata_cli.server.security import token_hash

    api = server(metrics_token_hash=token_hash("scrape-token"))
    user = new_user(api)
    f = user.upload(b"m" * 1234)
    user.post("/api/v1/conversions", json={"file_id": f["id"], "target_format": "png"})
    assert api.get("/metrics").status_code == 401
    text = api.get("/metrics", headers={"Authorization": "Bearer scrape-token"}).text
    assert 'livedata_http_requests_total{method="POST",route="/api/v1/files",status="201"}' in text
    assert "livedata_http_request_duration_seconds_bucket" in text
    assert "livedata_bytes_stored 1234.0" in text
    assert 'livedata_conversion_queue_depth{status="queued"} 1.0' in text


def test_rotate_key_keeps_old_blobs_readable(api: TestClient) -> None:
    user = new_user(api)
    old = user.upload(b"before rotation" * 1000)
    config: ServerConfig = api.config  # type: ignore[attr-defined]
    rotated = rotate_key(config)
    assert rotated.version == 2 and rotated.rewrapped == 1
    new = user.upload(b"after rotation")
    with _db(api).read() as conn:
        versions = dict(conn.execute(sa.select(db.files.c.id, db.files.c.key_version)).all())
    assert versions == {old["id"]: 2, new["id"]: 2}
    assert user.get(f"/api/v1/files/{old['id']}/download").content == b"before rotation" * 1000
    assert user.get(f"/api/v1/files/{new['id']}/download").content == b"after rotation"
    # A blob still wrapped under version 1 (re-wrap not yet done) still opens.
    rotate_key(replace(config))
    assert user.get(f"/api/v1/files/{old['id']}/download").status_code == 200

