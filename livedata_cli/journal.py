"""Encrypted, append-only batches of metadata records (DESIGN §3).

A journal object is ``LDJ\\x01 || wrapped data key || container`` where the
container (the same v1 format as file data) holds zlib-compressed JSON lines,
one record each.  Names start with the time in nanoseconds, so a listing
replays them in order; the random tail keeps two writers from colliding.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import time
import zlib
from collections.abc import Iterable
from typing import Any

from livedata_cli.crypto import container
from livedata_cli.crypto.wrap import WRAPPED_LEN, unwrap_data_key, wrap_data_key
from livedata_cli.errors import IntegrityError

MAGIC = b"LDJ\x01"
PREFIX = "journal/"


def new_name() -> str:
    return f"{PREFIX}{time.time_ns():020d}-{secrets.token_hex(8)}"


def encode(master_key: bytes, vault_id: str, name: str, records: Iterable[dict[str, Any]]) -> bytes:
    # ensure_ascii=False then UTF-8: a lone surrogate (a file name's raw byte
    # that escaped names.py) fails here, before anything reaches the store.
    body = zlib.compress(
        b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for r in records), 1
    )
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
