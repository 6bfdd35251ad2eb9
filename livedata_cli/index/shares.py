"""The share tables of the index: the share links this vault made (``shares``,
from its ``share``/``unshare`` journal records), and the keys pinned on first
use for shares to accounts: recipients' X25519 public keys (``pinned_keys``)
and senders' Ed25519 signing keys (``pinned_signing_keys``).

The tables are made by the migrations in ``index/core.py`` (0006, 0008, 0011);
the vault's sharing modules read and write them only through these functions.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from livedata_cli.index.core import Index

# Ids in one query at most (SQLite's default limit on host parameters is 999).
_CHUNK = 500


def all_shares(index: Index) -> list[sqlite3.Row]:
    """Every share this vault made, oldest first (revoked ones too)."""
    return list(index.db.execute("SELECT * FROM shares ORDER BY created, id").fetchall())


def copied_share_ids(index: Index, vids: list[str]) -> list[str]:
    """The shares of these versions that may have a copy of a packed member
    in the store (S3 and API shares)."""
    out: list[str] = []
    for i in range(0, len(vids), _CHUNK):
        chunk = vids[i : i + _CHUNK]
        rows = index.db.execute(
            f"SELECT id FROM shares WHERE kind IN ('s3', 'api') AND vid IN ({','.join('?' * len(chunk))})", chunk
        ).fetchall()
        out += [share_id for (share_id,) in rows]
    return out


def pinned_public_key(index: Index, server: str, email: str) -> str | None:
    """The X25519 public key (hex) pinned for an account of a server, if any."""
    row = index.db.execute(
        "SELECT public_key FROM pinned_keys WHERE server = ? AND email = ?", (server, email)
    ).fetchone()
    return None if row is None else str(row[0])


def pin_public_key(index: Index, server: str, email: str, public_key: str, first_seen: float) -> None:
    """Pin an account's public key on first use (a second pin of the same account fails)."""
    index.db.execute(
        "INSERT INTO pinned_keys (server, email, public_key, first_seen) VALUES (?, ?, ?, ?)",
        (server, email, public_key, first_seen),
    )


def pinned_signing_key(index: Index, server: str, email: str) -> str | None:
    """The Ed25519 signing key (hex) pinned for a sender of a server, if any."""
    row = index.db.execute(
        "SELECT signing_key FROM pinned_signing_keys WHERE server = ? AND email = ?", (server, email)
    ).fetchone()
    return None if row is None else str(row[0])


def pin_signing_key(index: Index, server: str, email: str, signing_key: str, first_seen: float) -> None:
    """Pin a sender's signing key on first use (a second pin of the same sender fails)."""
    index.db.execute(
        "INSERT INTO pinned_signing_keys (server, email, signing_key, first_seen) VALUES (?, ?, ?, ?)",
        (server, email, signing_key, first_seen),
    )
