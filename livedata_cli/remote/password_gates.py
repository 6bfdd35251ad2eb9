"""The client of an API store's file locks (``/api/v1/file-locks``): the server
half of a file password, which limits how fast it can be guessed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeGuard

from livedata_cli.errors import IntegrityError, WrongFilePassword

if TYPE_CHECKING:
    from livedata_cli.stores import ObjectStore
    from livedata_cli.stores.api import ApiStore


def supported(store: ObjectStore) -> TypeGuard[ApiStore]:
    """Whether the store is a Live-Data API store (which keeps file locks)."""
    api = sys.modules.get("livedata_cli.stores.api")  # never imported here: a folder store does not need it
    return api is not None and isinstance(store, api.ApiStore)


def _api(store: ObjectStore) -> ApiStore:
    """The API store a record's file lock lives on (a record naming one elsewhere is damage)."""
    if not supported(store):
        raise IntegrityError(f"a record names a server file lock, but {store.url} is not a Live-Data API store")
    return store


def create(store: ApiStore, verifier: str) -> tuple[str, bytes]:
    """A new lock for this verifier: its id and the release secret."""
    body = store.client.request(
        "POST", "/file-locks", what=f"{store.url} file lock", json_body={"verifier": verifier}
    ).json()
    return str(body["id"]), bytes.fromhex(body["secret"])


def release(store: ObjectStore, lock: str, verifier: str, path: str) -> bytes:
    """The release secret of a lock, for the right verifier.

    Not retried: a refusal (429: too many wrong passwords) is exit 7 at once,
    with the server's delay in the message; a wrong verifier is exit 4.
    """
    resp = _api(store).client.request(
        "POST", f"/file-locks/{lock}/open", what=f"file password of {path}",
        json_body={"verifier": verifier}, ok=(200, 403), attempts=0,
    )
    if resp.status_code == 403:
        raise WrongFilePassword(f"wrong file password for {path}")
    return bytes.fromhex(resp.json()["secret"])


def delete(store: ObjectStore, lock: str) -> None:
    """Forget a lock whose password changed or went (already gone is fine)."""
    _api(store).client.request("DELETE", f"/file-locks/{lock}", what=f"{store.url} file lock", ok=(204, 404))
