"""KMS key provider: the vault master key held by AWS KMS (or a KMS-compatible service).

A KMS vault has a key slot ``keys/kms-<random>`` holding the master key
encrypted by KMS ``Encrypt`` with the encryption context
``{"livedata:vault": <vault id>}``; access to the vault is then IAM
permission on the KMS key, and disabling the key locks the vault.  Opening
the vault costs one ``DescribeKey`` (so a disabled key is named as such) and
one ``Decrypt`` per command, never one per file.

With ``--kms-per-object`` each data key also comes from ``GenerateDataKey``
(context adds ``"livedata:object": <object id>``), and its KMS ciphertext is
what the master key wraps, so reading an object needs both the vault key and
one KMS ``Decrypt`` (a CloudTrail record per object).  Data keys unwrapped in
a command are cached in memory for that command only.

Nothing here touches a cipher: KMS does the encryption, :mod:`crypto.wrap`
the local wrapping.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from livedata_cli import aws
from livedata_cli.crypto.wrap import WRAPPED_LEN, key_id, unwrap_data_key, wrap_data_key
from livedata_cli.errors import AuthError, IntegrityError, LivedataError


class KmsSlot(Protocol):
    """What a KMS key slot is read for here (:class:`livedata_cli.keys.slots.Slot`)."""

    @property
    def kind(self) -> str: ...

    @property
    def slot_id(self) -> str: ...

    @property
    def kdf(self) -> dict[str, Any]: ...

    @property
    def wrapped(self) -> bytes: ...

# A record's wrapped key that starts with this holds a KMS data key ciphertext
# wrapped by the master key, not the data key itself.  A plain wrapped key is
# exactly WRAPPED_LEN bytes, so the two never mix up.
PER_OBJECT_MAGIC = b"LDK\x01"
VAULT_CONTEXT = "livedata:vault"
OBJECT_CONTEXT = "livedata:object"

_providers: dict[str, Kms] = {}
_providers_lock = threading.Lock()


class Kms:
    """One KMS key, its client, and this command's cache of decrypted keys."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        self._client: Any = None
        self._lock = threading.Lock()
        self._plain: dict[bytes, bytes] = {}
        self.checked = False

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = aws.client("kms")
            return self._client

    def _call(self, op: str, what: str, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(**kw)
        except (ClientError, BotoCoreError) as e:
            err = aws.translate(e, what)
            if aws.error_code(e) == "NotFoundException":
                err = AuthError(f"the KMS key {self.key_id} does not exist or is not visible to these credentials")
            raise err from None

    def check_enabled(self) -> None:
        """Refuse a disabled (or pending deletion) key up front, with a message that says so.

        ``DescribeKey`` needs ``kms:DescribeKey``; without it the check is skipped and
        ``Decrypt`` alone decides.
        """
        if self.checked:
            return
        try:
            meta = self._call("describe_key", f"KMS key {self.key_id}", KeyId=self.key_id)["KeyMetadata"]
        except AuthError as e:
            if "access denied" in e.message:
                self.checked = True
                return
            raise
        state = str(meta.get("KeyState", "Enabled"))
        if state != "Enabled" or meta.get("Enabled") is False:
            raise AuthError(f"the KMS key {self.key_id} is {state.lower()}: the vault stays locked until it is enabled")
        self.checked = True

    def encrypt(self, plaintext: bytes, context: dict[str, str]) -> tuple[bytes, str]:
        """KMS ``Encrypt``; returns the ciphertext and the key's ARN."""
        self.check_enabled()
        r = self._call(
            "encrypt", f"KMS Encrypt with {self.key_id}", KeyId=self.key_id, Plaintext=plaintext, EncryptionContext=context
        )
        return bytes(r["CiphertextBlob"]), str(r.get("KeyId") or self.key_id)

    def decrypt(self, blob: bytes, context: dict[str, str], *, key: str | None = None) -> bytes:
        """KMS ``Decrypt``, once per ciphertext per command."""
        with self._lock:
            cached = self._plain.get(blob)
        if cached is not None:
            return cached
        self.check_enabled()
        r = self._call(
            "decrypt",
            f"KMS Decrypt with {self.key_id}",
            CiphertextBlob=blob,
            EncryptionContext=context,
            KeyId=key or self.key_id,
        )
        plain = bytes(r["Plaintext"])
        with self._lock:
            self._plain[blob] = plain
        return plain

    def generate_data_key(self, context: dict[str, str]) -> tuple[bytes, bytes]:
        """KMS ``GenerateDataKey`` (AES-256): the plaintext key and its ciphertext."""
        self.check_enabled()
        r = self._call(
            "generate_data_key",
            f"KMS GenerateDataKey with {self.key_id}",
            KeyId=self.key_id,
            KeySpec="AES_256",
            EncryptionContext=context,
        )
        plain, blob = bytes(r["Plaintext"]), bytes(r["CiphertextBlob"])
        with self._lock:
            self._plain[blob] = plain
        return plain, blob


def provider(kms_key_id: str) -> Kms:
    """The process's provider for one KMS key (one client, one cache per command)."""
    with _providers_lock:
        if kms_key_id not in _providers:
            _providers[kms_key_id] = Kms(kms_key_id)
        return _providers[kms_key_id]


# -- the KMS key slot ------------------------------------------------------------------
def vault_context(vault_id: str) -> dict[str, str]:
    return {VAULT_CONTEXT: vault_id}


def open_slots(slots: Sequence[KmsSlot], vault_id: str, expected_key_id: str, kms_key_id: str) -> bytes:
    """The master key from the first KMS slot that opens (one ``Decrypt``)."""
    kms_slots = [s for s in slots if s.kind == "kms"]
    if not kms_slots:
        raise AuthError("this KMS vault has no KMS key slot: use a passphrase")
    error: LivedataError | None = None
    for slot in kms_slots:
        # The key is the config's (MAC-checked, and pinned by every home): a slot
        # naming another is not this vault's, and no Decrypt goes to that key.
        named = str(slot.kdf.get("kms_key_id") or kms_key_id)
        if named != kms_key_id:
            error = error or IntegrityError(
                f"KMS key slot {slot.slot_id} names KMS key {named}, not the vault's {kms_key_id}: "
                "someone without the vault key wrote it"
            )
            continue
        arn = str(slot.kdf.get("kms_key_arn") or "")
        key = arn if arn == kms_key_id or arn.endswith("/" + kms_key_id) else kms_key_id
        try:
            master = provider(kms_key_id).decrypt(slot.wrapped, vault_context(vault_id), key=key)
        except LivedataError as e:
            error = error or e
            continue
        if len(master) == 32 and hmac.compare_digest(key_id(master, vault_id), expected_key_id):
            return master
        error = error or IntegrityError(f"KMS key slot {slot.slot_id} holds a key of another vault")
    assert error is not None
    raise error


# -- per-object data keys ------------------------------------------------------------------
def object_context(vault_id: str, object_id: str) -> dict[str, str]:
    return {VAULT_CONTEXT: vault_id, OBJECT_CONTEXT: object_id}


def new_data_key(kms_key_id: str, master_key: bytes, vault_id: str, object_id: str) -> tuple[bytes, bytes]:
    """A data key from ``GenerateDataKey`` and the record's wrapped form of it."""
    plain, blob = provider(kms_key_id).generate_data_key(object_context(vault_id, object_id))
    return plain, PER_OBJECT_MAGIC + wrap_data_key(master_key, vault_id, object_id, blob)


def is_per_object(wrapped: bytes) -> bool:
    return len(wrapped) != WRAPPED_LEN and wrapped[: len(PER_OBJECT_MAGIC)] == PER_OBJECT_MAGIC


def open_data_key(kms_key_id: str | None, master_key: bytes, vault_id: str, object_id: str, wrapped: bytes) -> bytes:
    """The data key of a per-object KMS record: unwrap with the master key, then KMS ``Decrypt``."""
    if not kms_key_id:
        raise IntegrityError(f"object {object_id} has a KMS data key, but this vault has no KMS key")
    blob = unwrap_data_key(master_key, vault_id, object_id, wrapped[len(PER_OBJECT_MAGIC) :])
    plain = provider(kms_key_id).decrypt(blob, object_context(vault_id, object_id))
    if len(plain) != 32:
        raise IntegrityError(f"the KMS data key of object {object_id} is not a 256-bit key")
    return plain
