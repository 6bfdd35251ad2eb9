"""Encrypted, append-only batches of metadata records (DESIGN §3).

A journal object is ``LDJ\\x01 || wrapped data key || container`` where the
container (the same v1 format as file data) holds zlib-compressed JSON lines,
one record each.  Names start with the time in nanoseconds, so a listing
replays them in order; the random tail keeps two writers from colliding.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import secrets
import time
import zlib
from collections.abc import Iterable
from typing import Any

from livedata_cli.crypto import container
from livedata_cli.crypto.wrap import WRAPPED_LEN, unwrap_data_key, wrap_data_key
from livedata_cli.errors import IntegrityError, LivedataError

MAGIC = b"LDJ\x01"
PREFIX = "journal/"
# One encoder for every line (json.dumps with options builds one per call).
_line = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def new_name() -> str:
    return f"{PREFIX}{time.time_ns():020d}-{secrets.token_hex(8)}"


def line(record: dict[str, Any]) -> bytes:
    # ensure_ascii=False then UTF-8: a lone surrogate (a file name's raw byte
    # that escaped names.py) fails here, before anything reaches the store.
    return _line(record).encode() + b"\n"


def encode(master_key: bytes, vault_id: str, name: str, records: Iterable[dict[str, Any]]) -> bytes:
    return encode_lines(master_key, vault_id, name, [line(r) for r in records])


def encode_lines(master_key: bytes, vault_id: str, name: str, lines: list[bytes]) -> bytes:
    """A journal of records already encoded by ``line`` (``validate`` returns them)."""
    body = zlib.compress(b"".join(lines), 1)
    data_key = os.urandom(32)
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(wrap_data_key(master_key, vault_id, name, data_key))
    container.encrypt_stream(data_key, io.BytesIO(body), out)
    return out.getvalue()


def decode(master_key: bytes, vault_id: str, name: str, blob: bytes) -> list[dict[str, Any]]:
    if blob[: len(MAGIC)] != MAGIC or len(blob) < len(MAGIC) + WRAPPED_LEN:
        raise IntegrityError(f"{name} is not a livedata journal")
    data_key = unwrap_data_key(master_key, vault_id, name, blob[4 : 4 + WRAPPED_LEN])
    out = io.BytesIO()
    container.decrypt_stream(data_key, io.BytesIO(blob[4 + WRAPPED_LEN :]), out)
    try:
        lines = zlib.decompress(out.getvalue()).splitlines()
        return [json.loads(line) for line in lines if line]
    except (zlib.error, ValueError):
        raise IntegrityError(f"{name} holds authenticated but unreadable records") from None


# The fields each kind of record must carry, and their types: checked before a
# journal is written, so a record that could not be replayed never reaches the store.
_NUM = (int, float)
_REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "put": {
        "vid": (str,), "path": (str,), "object": (str,), "length": (int,), "size": (int,), "hash": (str,),
        "header_hash": (str,), "wrapped_key": (str,), "key_id": (str,), "created": _NUM,
    },
    "rm": {"path": (str,), "time": _NUM},
    "restore": {"path": (str,), "time": _NUM},
    "purge": {"vids": (list,)},
    "tag": {"vid": (str,)},
    "note": {"vid": (str,), "text": (str,)},
    "share": {"id": (str,), "vid": (str,), "path": (str,), "created": _NUM},
    "file-password": {"vid": (str,), "wrapped_key": (str,)},
    "unshare": {"id": (str,), "time": _NUM},
}


# The same, as the exact types a record's required fields may have together:
# one lookup checks a whole record (a backup writes thousands).
_FIELDS = {kind: tuple(fields) for kind, fields in _REQUIRED.items()}
_TYPES = {
    kind: set(itertools.product(*fields.values()))
    for kind, fields in _REQUIRED.items()
}


def validate(records: Iterable[dict[str, Any]]) -> list[bytes]:
    """Refuse (exit 1: a bug) a record that replay could not apply: a missing or
    mistyped field, a hex field that is not hex, or text that is not UTF-8.
    Returns the records' lines, encoded once here for ``encode_lines``."""
    lines = []
    for i, rec in enumerate(records):
        kind = rec.get("t") if isinstance(rec, dict) else None
        if not isinstance(kind, str):
            raise LivedataError(f"refusing to write journal record {i}: it has no kind")
        if kind in _TYPES and tuple(map(type, map(rec.get, _FIELDS[kind]))) not in _TYPES[kind]:
            for key, types in _REQUIRED[kind].items():  # which field, or a subclass of a right type
                value = rec.get(key)
                if not isinstance(value, types) or isinstance(value, bool):
                    raise LivedataError(f"refusing to write a {kind} record: field {key!r} is {type(value).__name__}")
        try:
            if kind in ("put", "file-password"):
                bytes.fromhex(rec["wrapped_key"])
            lines.append(line(rec))
        except (ValueError, TypeError) as e:
            what = rec.get("path") or rec.get("vid") or ""
            raise LivedataError(f"refusing to write a {kind} record{' of ' + repr(what) if what else ''}: {e}") from None
    return lines
