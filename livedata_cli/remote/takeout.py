"""Take an account's data away from a Live-Data server, or erase the account.

``export`` streams the server's zip (``server/account_data.py``) into a
temporary file beside the target, checks that the zip is whole (its central
directory and manifest are read), and only then renames it into place: a
cut connection or a full disk leaves no partial file under the name asked.
Memory stays at one network chunk.

``delete`` sends the password (and a TOTP or recovery code) again, reports
what the server erased, and forgets this home's tokens for the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livedata_cli import interrupt, localfs
from livedata_cli.errors import IntegrityError, StoreUnreachable, UsageError
from livedata_cli.remote.client import Client

MANIFEST = "manifest.json"
FORMAT = "livedata-account-export"


def export_account(
    server: str, dest: Path, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Write the account's export zip to ``dest``; returns its manifest."""
    import httpx

    dest = dest.expanduser().absolute()
    if dest.is_dir():
        raise UsageError(f"{dest} is a folder: give a file name such as {dest / 'my-data.zip'}")
    if not dest.parent.is_dir():
        raise UsageError(f"no such folder: {dest.parent}")
    c = Client(server)
    tmp: Path | None = None
    try:
        resp = c.request("GET", "/users/me/export", what="account export", stream=True, ok=(200,))
        try:
            tmp, fd = localfs.create_temporary(dest.parent)
            with os.fdopen(fd, "wb") as f:
                for chunk in resp.iter_raw():
                    f.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except httpx.TransportError as e:
            raise StoreUnreachable(
                f"the export from {c.server} stopped before its end ({type(e).__name__}); nothing was written"
            ) from None
        finally:
            resp.close()
        manifest = _manifest(tmp, c.server)
        os.replace(tmp, dest)
        return manifest
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            interrupt.kept(tmp)
        c.close()


def _manifest(path: Path, server: str) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            manifest: dict[str, Any] = json.loads(zf.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, ValueError):
        raise IntegrityError(
            f"the export from {server} is incomplete or damaged; nothing was written"
        ) from None
    if manifest.get("format") != FORMAT:
        raise IntegrityError(
            f"{server} sent something other than an account export; nothing was written"
        )
    return manifest


def delete_account(
    server: str, password: str, code: str | None, recovery_code: str | None
) -> dict[str, Any]:
    """Erase the account on the server, then forget the tokens here; returns what was removed."""
    c = Client(server)
    c.relogin = False
    try:
        body: dict[str, Any] = {"password": password}
        if recovery_code:
            body["recovery_code"] = recovery_code
        elif code:
            body["code"] = code
        resp = c.request(
            "POST", "/users/me/delete", what="account delete", json_body=body, ok=(200,)
        )
        erased: dict[str, Any] = resp.json()
        c.forget()
        return erased
    finally:
        c.close()
