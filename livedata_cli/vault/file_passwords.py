"""File passwords: a second secret on single files, on top of the vault key.

A protected version's data key is sealed in an envelope under a key derived
from its password (``crypto/filepass.py``); on an API store the envelope also
needs the release secret of a server lock (``remote/password_gates.py``),
which the server refuses after a few wrong verifiers.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from livedata_cli.crypto import filepass
from livedata_cli.crypto.wrap import unwrap_data_key, wrap_data_key
from livedata_cli.errors import AuthError, UsageError, WrongFilePassword
from livedata_cli.index.core import Version

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault


def open_protected(vault: Vault, oid: str, envelope: bytes) -> tuple[bytes, filepass.PasswordKey]:
    """The data key inside a file password envelope, and the password key that opened it.

    Keys that opened an envelope are cached by salt, and passwords that
    worked are tried first, so a batch asks once per password, not per file.
    On an API store the envelope also needs the release secret of its
    server lock, which the server gives only for the right verifier and
    refuses (exit 7) after a few wrong ones.
    """
    from livedata_cli.remote import password_gates

    params, salt, lock = filepass.envelope_params(envelope)
    ident = (*filepass.key_ident(params, salt), lock or "")
    with vault._file_lock:
        cached = vault._file_keys.get(ident)
        if cached is not None:
            data_key = filepass.open_envelope(cached[0], vault.vault_id, oid, envelope)
            if data_key is not None:
                return data_key, cached[1]
        found = vault.index.version_by_object(oid)
        path = found.path if found is not None else oid
        tried: set[str] = set()
        for known in [*vault._file_passwords, None]:
            password = known if known is not None else vault.ask_file_password(path)
            if password is None:
                raise AuthError(
                    f"{path} is password-protected: set LIVEDATA_FILE_PASSWORD, or run on a terminal to be asked"
                )
            if password in tried:  # tried already: never spend a server attempt on it twice
                break
            tried.add(password)
            key = filepass.PasswordKey.derive(password, params, salt)
            opener: filepass.PasswordKey | None = key
            if lock is not None:
                try:
                    opener = key.gated(password_gates.release(vault.store, lock, key.verifier(), path))
                except WrongFilePassword:
                    opener = None
            data_key = filepass.open_envelope(opener, vault.vault_id, oid, envelope) if opener else None
            if data_key is not None and opener is not None:
                if known is None:
                    vault._file_passwords.append(password)
                vault._file_keys[ident] = (opener, key)
                return data_key, key
        vault.events.add("file-password", path, object=oid, result="denied", code=4, detail="wrong file password")
        raise AuthError(f"wrong file password for {path}")


def seal_for(vault: Vault, key: filepass.PasswordKey, oid: str, data_key: bytes) -> bytes:
    """A data key's record form under a file password (and, on an API store, a new server lock)."""
    from livedata_cli.remote import password_gates

    lock, sealer = None, key
    if password_gates.supported(vault.store):
        lock, secret = password_gates.create(vault.store, key.verifier())
        sealer = key.gated(secret)
    envelope = filepass.seal_data_key(sealer, vault.vault_id, oid, data_key, lock=lock)
    return wrap_data_key(vault.master_key, vault.vault_id, oid, envelope)


def check_file_password(vault: Vault, v: Version) -> None:
    """Ask for a protected version's password now (AuthError if it is missing or wrong)."""
    if v.protected:
        vault._data_key(v.object, v.wrapped_key)


def set_file_password(vault: Vault, ref: str, action: str, new_password: str | None) -> list[Version]:
    """Set, change or remove the file password of every version of a file.

    ``set`` and ``change`` re-encrypt every version under a fresh data key
    into new objects and delete the old ones (``reseal.py``), so the old
    wrapped keys that earlier journals keep open nothing; ``remove`` only
    rewraps the data keys.  ``change`` and ``remove`` need the current
    password (asked through ``ask_file_password``).
    """
    vault.sync()
    v = vault.resolve(ref)
    if v.kind != "file":
        raise UsageError(f"{v.path} is a {v.kind}: only files have passwords")
    versions = [
        x for x in vault.index.versions_of(v.path) + vault.index.versions_of(v.path, trash=True) if x.kind == "file"
    ]
    protected = any(x.protected for x in versions)
    if action == "set" and protected:
        raise UsageError(f"{v.path} already has a file password: use 'livedata password change'")
    if action != "set" and not protected:
        raise UsageError(f"{v.path} has no file password: use 'livedata password set'")
    keys = [(x, vault._data_key(x.object, x.wrapped_key)) for x in versions]  # every key opens before any change
    new_key = filepass.PasswordKey.derive(new_password) if new_password is not None else None
    old_locks = {lock for x in versions if x.protected for lock in [lock_of(vault, x)] if lock}
    from livedata_cli.vault import reseal

    if new_key is not None:  # new objects first; the old ones go once the journal names the new
        records = reseal.reseal_versions(vault, keys, lambda oid, data_key: seal_for(vault, new_key, oid, data_key))
    else:
        records = [
            {"t": "file-password", "vid": x.vid, "protected": False, "time": time.time(),
             "wrapped_key": wrap_data_key(vault.master_key, vault.vault_id, x.object, data_key).hex()}
            for x, data_key in keys
        ]
    vault._write_journal(records)
    if new_key is not None:
        reseal.drop_old_objects(vault, versions)
    if old_locks:
        from livedata_cli.remote import password_gates

        for lock in sorted(old_locks):  # after the journal: a crash before leaves a lock unused, not a file shut
            password_gates.delete(vault.store, lock)
    return [vault.index.version_by_id(x.vid) or x for x in versions]


def lock_of(vault: Vault, v: Version) -> str | None:
    """The server lock of a protected version's envelope, if it has one."""
    inner = unwrap_data_key(vault.master_key, vault.vault_id, v.object, v.wrapped_key)
    return filepass.envelope_params(inner)[2] if filepass.is_envelope(inner) else None


def unprotected_copies(vault: Vault, versions: list[Version]) -> list[str]:
    """Other paths whose versions share a data object with these and have no password."""
    objects = {v.object for v in versions}
    vids = {v.vid for v in versions}
    return sorted(
        {x.path for x in vault.index.all_versions() if x.object in objects and x.vid not in vids and not x.protected}
    )


def password_from_env(_path: str) -> str | None:
    """The file password for scripts; the CLI asks on a terminal instead, when there is one."""
    return os.environ.get("LIVEDATA_FILE_PASSWORD") or None
