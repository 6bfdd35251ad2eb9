"""Resumable uploads to a Live-Data server: a cut connection goes on from the server's offset."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx
from test_api_store import account, other_home, proxies, server, tokens_file  # noqa: F401

from conftest import Cli, write

MIB = 1024 * 1024


def _token(cli: Cli) -> dict[str, str]:
    (token,) = [t["access_token"] for t in json.loads(tokens_file(cli).read_text()).values()]
    return {"Authorization": f"Bearer {token}"}


def test_a_cut_upload_resumes_from_the_servers_offset(cli: Cli, server: Any, proxies: Any) -> None:  # noqa: F811
    srv = server()
    proxy = proxies(srv.url)
    account(cli, proxy.url, "re@example.com")
    cli.ok("init", "--store", proxy.url)
    data = os.urandom(20 * MIB + 5)
    write(cli.cwd / "big.bin", data)

    before = proxy.bytes["up"]
    proxy.cut_after(15 * MIB + MIB // 2, "up")  # near the end of the second 8 MiB part
    assert cli.ok("upload", "big.bin", "--json").json()["counts"] == {"new": 1}
    assert proxy.cuts == 1
    sent = proxy.bytes["up"] - before
    # Resumed from the server's offset: the object once, plus what the cut lost in socket
    # buffers, headers and the vault's small records; sending the object again would add
    # 15.5 MiB, sending the cut part again 7.5 MiB.
    assert len(data) < sent < len(data) + 6 * MIB < 2 * len(data)

    out = cli.cwd / "back.bin"
    cli.ok("download", "big.bin", "-o", str(out))
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    # Nothing unfinished is left behind on the server.
    assert not list((srv.home / "server" / "uploads").glob("*.part"))


def test_an_upload_is_its_owners_alone_and_checks_its_offsets(cli: Cli, server: Any) -> None:  # noqa: F811
    srv = server()
    account(cli, srv.url, "own@example.com")
    mallory = other_home(cli, "mallory")
    account(mallory, srv.url, "mallory@example.com")
    own, theirs = _token(cli), _token(mallory)
    with httpx.Client(base_url=srv.url + "/api/v1") as c:
        r = c.post("/files/uploads", params={"file_name": "data/x", "size": 10}, headers=own)
        assert r.status_code == 201, r.text
        up = r.json()["id"]
        part = {"Content-Range": "bytes 0-5/10", **own}
        assert c.put(f"/files/uploads/{up}", content=b"abcdef", headers=part).json()["received"] == 6
        # Another user's token: 404 everywhere, as for an id that never existed.
        for method, path in (("GET", ""), ("HEAD", ""), ("PUT", ""), ("POST", "/complete"), ("DELETE", "")):
            got = c.request(method, f"/files/uploads/{up}{path}", content=b"ghij",
                            headers={"Content-Range": "bytes 6-9/10", **theirs})
            assert got.status_code == 404, (method, path)
        # A part at the wrong offset is refused and changes nothing; an early commit too.
        wrong = c.put(f"/files/uploads/{up}", content=b"zz", headers={"Content-Range": "bytes 3-4/10", **own})
        assert wrong.status_code == 409
        assert c.head(f"/files/uploads/{up}", headers=own).headers["upload-offset"] == "6"
        assert c.post(f"/files/uploads/{up}/complete", headers=own).status_code == 409
        last = {"Content-Range": "bytes 6-9/10", **own}
        assert c.put(f"/files/uploads/{up}", content=b"ghij", headers=last).json()["received"] == 10
        made = c.post(f"/files/uploads/{up}/complete", headers=own)
        assert made.status_code == 201 and made.json()["size"] == 10
        assert c.get(f"/files/{made.json()['id']}/download", headers=own).content == b"abcdefghij"
        assert c.get(f"/files/uploads/{up}", headers=own).status_code == 404  # committed: gone
        # The owner drops an unfinished one.
        up2 = c.post("/files/uploads", params={"file_name": "data/y"}, headers=own).json()["id"]
        assert c.delete(f"/files/uploads/{up2}", headers=own).status_code == 204
        assert c.get(f"/files/uploads/{up2}", headers=own).status_code == 404
        # Over the quota from the start: refused before a byte is sent.
        huge = c.post("/files/uploads", params={"file_name": "data/z", "size": 2**50}, headers=own)
        assert huge.status_code == 413
