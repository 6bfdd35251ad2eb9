"""Shares to another account on the same Live-Data server (``livedata share --to``).

Every account has an X25519 key pair (livedata_cli/crypto/box.py): the
private key is the store object ``x25519/private``, sealed under a subkey of
the vault key (so each machine of the vault has it); the public key is
published to the server.  Sharing to an account seals the share manifest
(data key, name, size, type) to her public key; the server keeps that box
and lets only her list and fetch the share.  She opens it with her own vault:
no link secret travels.

Her public key is pinned in the local index on first use (its fingerprint is
shown then), so a server that later hands out another key is refused (exit 5)
instead of being trusted.

The sender is authenticated too: every account has an Ed25519 signing key
(derived from its X25519 private key, published beside it), and a share is
signed with it over a context that binds the share's id (chosen by the sender
and kept by the server as the share's id), the sender's and the recipient's
email.  The recipient pins the sender's signing key on first use, per sender
email, and refuses (exit 5) a share whose signature, sender, recipient or id
does not match, or whose sender's key changed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from livedata_cli import share_recipient
from livedata_cli.crypto import box
from livedata_cli.crypto import share_manifest as sc
from livedata_cli.errors import IntegrityError, NotFound, Refused, UsageError
from livedata_cli.index import shares as share_index
from livedata_cli.vault import share_links

if TYPE_CHECKING:
    from livedata_cli.stores.api import ApiStore
    from livedata_cli.vault.core import Vault

PRIVATE_KEY = "x25519/private"
CONTEXT = b"livedata/v1/share-to"


def _api_store(vault: Vault, what: str) -> ApiStore:
    if share_links.store_kind(vault.store) != "api":
        raise UsageError(f"{what} needs a vault on a Live-Data API store (https://HOST): accounts live on a server")
    return cast("ApiStore", vault.store)


def key_pair(vault: Vault) -> tuple[bytes, bytes]:
    """This vault's (private, public) key pair, made and published on first need."""
    store = _api_store(vault, "a share to an account")
    try:
        private = box.unwrap_private(vault.master_key, vault.vault_id, store.get_bytes(PRIVATE_KEY))
    except NotFound:
        private, _public = box.generate()
        try:
            store.put_bytes(PRIVATE_KEY, box.wrap_private(vault.master_key, vault.vault_id, private), exclusive=True)
        except FileExistsError:  # another machine of this vault made one first: use it
            private = box.unwrap_private(vault.master_key, vault.vault_id, store.get_bytes(PRIVATE_KEY))
        vault.events.add("share-key", "", detail=f"X25519 key pair made, fingerprint {box.fingerprint(box.public_of(private))}")
    public = box.public_of(private)
    store.publish_public_key(public.hex(), box.signing_public(private).hex())
    return private, public


@dataclass(frozen=True)
class Pin:
    fingerprint: str
    first_use: bool


def pinned_key(vault: Vault, email: str) -> tuple[bytes, Pin]:
    """Her public key as the server says it, checked against (or pinned as) the one seen first."""
    store = cast("ApiStore", vault.store)  # its callers took the store through _api_store
    email = email.strip().lower()
    said = store.public_key_of(email)
    if said is None:
        raise NotFound(
            f"{email} has no account with a public key on {store.url} (she runs 'livedata share ls --incoming' once)"
        )
    try:
        public = box.check_public(bytes.fromhex(said))
    except ValueError:
        raise IntegrityError(f"the server's public key of {email} is not hex") from None
    pinned = share_index.pinned_public_key(vault.index, store.url, email)
    if pinned is not None:
        if pinned != public.hex():
            raise IntegrityError(
                f"public key of {email} changed (pinned {box.fingerprint(bytes.fromhex(pinned))}, "
                f"server now says {box.fingerprint(public)}): nothing was shared"
            )
        return public, Pin(box.fingerprint(public), False)
    share_index.pin_public_key(vault.index, store.url, email, public.hex(), share_links.now())
    return public, Pin(box.fingerprint(public), True)


def pinned_sender(vault: Vault, email: str) -> tuple[bytes, Pin]:
    """The sender's signing key as the server says it, checked against (or pinned as) the one seen first."""
    store = cast("ApiStore", vault.store)  # its callers took the store through _api_store
    email = email.strip().lower()
    said = store.signing_key_of(email)
    if said is None:
        raise IntegrityError(f"{email} published no signing key on {store.url}: her share cannot be verified")
    try:
        signing = bytes.fromhex(said)
    except ValueError:
        raise IntegrityError(f"the server's signing key of {email} is not hex") from None
    if len(signing) != box.KEY_LEN:
        raise IntegrityError(f"the server's signing key of {email} is not an Ed25519 key (32 bytes)")
    pinned = share_index.pinned_signing_key(vault.index, store.url, email)
    if pinned is not None:
        if pinned != signing.hex():
            raise IntegrityError(
                f"signing key of {email} changed (pinned {box.fingerprint(bytes.fromhex(pinned))}, "
                f"server now says {box.fingerprint(signing)}): not opened"
            )
        return signing, Pin(box.fingerprint(signing), False)
    share_index.pin_signing_key(vault.index, store.url, email, signing.hex(), share_links.now())
    return signing, Pin(box.fingerprint(signing), True)


@dataclass(frozen=True)
class SentTo:
    created: share_links.Created
    to: str
    pin: Pin


def create(
    vault: Vault, ref: str, to: str, *, expires_in: int, max_downloads: int | None, version: int | None = None
) -> SentTo:
    """Share one file version with another account, sealed to her pinned public key."""
    store = _api_store(vault, "--to")
    if max_downloads is not None and max_downloads < 1:
        raise UsageError("--max-downloads must be at least 1")
    to = to.strip().lower()
    if "@" not in to:
        raise UsageError(f"--to: {to!r} is not an email address")
    private, _mine = key_pair(vault)
    public, pin = pinned_key(vault, to)
    sender = store.my_email()
    vault.sync()
    v = vault.resolve(ref, version=version)
    if v.kind != "file":
        raise UsageError(f"{v.path} is a {v.kind}: only files can be shared")
    data_key = vault._data_key(v.object, v.wrapped_key)
    share_id = sc.new_share_id()
    server_id = secrets.token_hex(16)  # the server keeps it as the share's id: bound by the signature
    created = share_links.now()
    expires = created + expires_in
    manifest = {
        "id": server_id,
        "from": sender,
        "to": to,
        "name": v.path.rsplit("/", 1)[-1],
        "size": v.size,
        "mime": v.mime or "application/octet-stream",
        "key": data_key.hex(),
        "header_hash": v.header_hash,
        "length": v.length,
        "created": created,
        "expires": expires,
    }
    context = box.share_context(CONTEXT, server_id, sender, to)
    sealed = box.seal_signed(private, public, json.dumps(manifest, sort_keys=True).encode(), context)
    # A packed file gets an object of its own first, as for a link (share_links.py).
    with vault.lock(command="livedata share") if v.pack else contextlib.nullcontext():
        store_key = share_links._copy_member(vault, v, share_id) if v.pack else v.store_key
        try:
            location = store.create_share(
                store_key,
                manifest=base64.b64encode(sealed).decode(),
                expires_in=expires_in,
                max_downloads=max_downloads,
                verifier=None,
                recipient=to,
                share_id=server_id,
            )
        except BaseException:
            if v.pack:
                with contextlib.suppress(Exception):  # of no use now; prune deletes it otherwise
                    store.delete(store_key)
            raise
        if location != server_id:
            store.revoke_share(location)
            raise IntegrityError(f"{store.url} did not keep the share's id (it needs a newer livedata server)")
        record = {
            "t": "share", "id": share_id, "vid": v.vid, "path": v.path, "object": v.object, "kind": "api",
            "created": created, "expires": expires, "max_downloads": max_downloads, "password": False,
            "location": location, **({"copy": store_key} if v.pack else {}),
        }
        share_links._journal(vault, record)
    vault.events.add(
        "share", v.path, object=v.object,
        detail=f"share {share_id} (api) to {to}, key {pin.fingerprint}, expires {share_recipient._iso(expires)}",
    )
    share = share_links.Share(share_id, v.path, "api", created, expires, max_downloads, False, location, None)
    link = f"{store.url}/s/{location}"
    return SentTo(share_links.Created(share, "", link, v.size), to, pin)


# -- her side ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Incoming:
    id: str
    sender: str
    name: str
    size: int
    created: float
    expires: float | None
    state: str
    link: str
    sender_key: str
    verified: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "from": self.sender, "name": self.name, "size": self.size,
            "created": self.created, "expires": self.expires, "state": self.state, "link": self.link,
            "sender_key": self.sender_key, "verified": self.verified,
        }


def _open_manifest(vault: Vault, private: bytes, me: str, item: dict[str, Any]) -> tuple[dict[str, Any], Pin]:
    """The manifest of one incoming share, verified against its sender's pinned signing key."""
    share_id, sender = str(item.get("id")), str(item.get("owner_email", "")).strip().lower()
    try:
        blob = base64.b64decode(str(item["manifest"]), validate=True)
    except (ValueError, KeyError, binascii.Error):
        raise IntegrityError(f"share {share_id}: the server's manifest is not a sealed box") from None
    signing, pin = pinned_sender(vault, sender)
    context = box.share_context(CONTEXT, share_id, sender, me)
    try:
        opened = box.open_signed(private, signing, blob, context)
    except IntegrityError as e:
        raise IntegrityError(f"share {share_id} from {sender}: {e}") from None
    try:
        manifest = json.loads(opened)
    except ValueError:
        raise IntegrityError(f"share {share_id}: its manifest is authenticated but unreadable") from None
    if not isinstance(manifest, dict):
        raise IntegrityError(f"share {share_id}: its manifest is unreadable")
    for field in ("size", "key", "header_hash", "length"):
        if field not in manifest:
            raise IntegrityError(f"share {share_id}: its manifest lacks its {field}")
    if (manifest.get("id"), manifest.get("from"), manifest.get("to")) != (share_id, sender, me):
        raise IntegrityError(f"share {share_id}: its manifest names another share, sender or recipient")
    return manifest, pin


def incoming(vault: Vault) -> list[Incoming]:
    """Shares addressed to this account, with the names only this vault can read.

    A share whose signature does not verify is listed with its name withheld
    and ``verified`` false; opening it is refused (exit 5).
    """
    store = _api_store(vault, "--incoming")
    private, _public = key_pair(vault)
    me = store.my_email()
    out = []
    for item in store.incoming_shares():
        verified, sender_key = True, ""
        try:
            manifest, pin = _open_manifest(vault, private, me, item)
            name, sender_key = str(manifest.get("name", "")), pin.fingerprint
        except IntegrityError as e:
            verified, name = False, f"(refused: {e})"
        out.append(
            Incoming(
                str(item["id"]), str(item["owner_email"]), name, int(item["size"]), float(item["created_at"]),
                item.get("expires_at"), str(item["state"]), f"{store.url}/s/{item['id']}", sender_key, verified,
            )
        )
    return out


class IncomingOpened(share_recipient.Opened):
    """A share addressed to this account: its data comes through her signed-in session."""

    store: Any = None

    @contextmanager
    def _data(self) -> Iterator[Any]:
        resp = self.store.open_incoming(self.manifest["server_id"])
        try:
            if resp.status_code == 410:
                resp.read()
                raise Refused(f"share {self.manifest['server_id']} is expired, used up or revoked")
            yield share_recipient._Limited(share_recipient._HttpReader(resp.iter_raw()), int(self.manifest["length"]))
        finally:
            resp.close()


def open_incoming(vault: Vault, ref: str) -> tuple[IncomingOpened, str, Pin]:
    """A share addressed to this account, by its id or link; returns it, its sender and her key's pin."""
    store = _api_store(vault, "a share to your account")
    share_id = ref.partition("#")[0].rstrip("/").rsplit("/", 1)[-1]
    private, _public = key_pair(vault)
    item = next((i for i in store.incoming_shares() if str(i["id"]) == share_id), None)
    if item is None:
        raise NotFound(f"no share {share_id} addressed to you on {store.url} ('livedata share ls --incoming' lists them)")
    if item["state"] != "active":
        raise Refused(f"share {share_id} is {str(item['state']).replace('_', ' ')}")
    manifest, pin = _open_manifest(vault, private, store.my_email(), item)
    expires = manifest.get("expires")
    if expires is not None and share_links.now() >= float(expires):
        raise Refused(f"this share expired at {share_recipient._iso(float(expires))}")
    manifest["server_id"] = share_id
    opened = IncomingOpened(share_recipient.ShareRef("api", f"{store.url}/s/{share_id}", None), manifest)
    opened.store = store
    return opened, str(item["owner_email"]).strip().lower(), pin


def received(vault: Vault, opened: IncomingOpened, sender: str, pin: Pin, target: str) -> None:
    vault.events.add(
        "share-receive", opened.name,
        detail=f"share {opened.manifest['server_id']} from {sender} (signing key {pin.fingerprint}) to {target}",
    )
