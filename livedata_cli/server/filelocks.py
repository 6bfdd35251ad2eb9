"""``/api/v1/file-locks``: the server's half of a file password on an API store.

A client that protects a file with a password derives a *verifier* from the
password-derived key (never the password, never a data key) and creates a
lock with it; the server keeps a SHA-256 of the verifier and a random
*release secret* it generated.  The file's key envelope is sealed under the
password key mixed with that secret, so the envelope can only be tried
against guesses through this endpoint: the server hands the secret out only
for the right verifier, counts failures per lock (file) and per account,
and after a few refuses every attempt for a delay that doubles with each
further failure (HTTP 429 with ``Retry-After``).

``LIVEDATA_TESTONLY_CLOCK_FILE`` (test suites only) names a file holding the
time these limits see, so a test moves the clock instead of sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from livedata_cli.server.clock import now
from livedata_cli.server.db import AnyRow, file_lock_accounts, file_locks
from livedata_cli.server.deps import ApiError, ClientDep, CtxDep, UserDep, audit, not_found

router = APIRouter(prefix="/file-locks", tags=["file passwords"])

# Free failures before the delays start, per lock and per account.
LOCK_FREE_FAILURES = 3
ACCOUNT_FREE_FAILURES = 10
BASE_DELAY = 30.0  # seconds, doubled with each failure past the free ones
MAX_DELAY = 24 * 3600.0

def delay(failures: int, free: int) -> float:
    """Seconds attempts are refused after this many failures (0 while still free)."""
    if failures < free:
        return 0.0
    return float(min(MAX_DELAY, BASE_DELAY * 2.0 ** (failures - free)))


def _hash(verifier: str) -> str:
    return hashlib.sha256(b"livedata/file-lock\x00" + verifier.encode()).hexdigest()


Verifier = Annotated[str, Field(min_length=32, max_length=128, pattern="^[0-9a-f]+$")]


class LockCreate(BaseModel):
    verifier: Verifier


class LockOpen(BaseModel):
    verifier: Verifier


class LockOut(BaseModel):
    id: str
    secret: str


def _refused(until: float, at: float) -> ApiError:
    wait = max(1, math.ceil(until - at))
    return ApiError(429, "rate_limited", f"too many wrong file passwords; retry in {wait}s", {"Retry-After": str(wait)})


@router.post("", status_code=201, response_model=LockOut)
def create_lock(body: LockCreate, c: CtxDep, user: UserDep, who: ClientDep) -> LockOut:
    """Create a lock for a verifier; the answer's secret is released again only for it."""
    lock = LockOut(id=secrets.token_hex(16), secret=secrets.token_hex(32))
    with c.db.write() as conn:
        conn.execute(
            file_locks.insert().values(
                id=lock.id, owner_id=user.id, verifier_hash=_hash(body.verifier), secret=lock.secret,
                failures=0, locked_until=0.0, created_at=now(),
            )
        )
        audit(conn, who, user.id, "file_lock.create", "file_lock", lock.id)
    return lock


@router.post("/{lock_id}/open", response_model=LockOut)
def open_lock(lock_id: str, body: LockOpen, c: CtxDep, user: UserDep, who: ClientDep) -> LockOut:
    """The lock's secret for the right verifier; wrong ones are counted, and after a few refused for a while."""
    at = now()
    with c.db.write() as conn:
        account = _account(conn, user.id)  # locked first, so attempts of one account queue
        row = conn.execute(
            sa.select(file_locks)
            .where(file_locks.c.id == lock_id, file_locks.c.owner_id == user.id)
            .with_for_update()
        ).first()
        if row is None:
            raise not_found("file lock")
        until = max(row.locked_until, account.locked_until)
        if until > at:
            audit(conn, who, user.id, "file_lock.open", "file_lock", lock_id, status="rate_limited")
            raise _refused(until, at)
        if hmac.compare_digest(_hash(body.verifier), row.verifier_hash):
            conn.execute(file_locks.update().where(file_locks.c.id == lock_id).values(failures=0, locked_until=0.0))
            audit(conn, who, user.id, "file_lock.open", "file_lock", lock_id)
            return LockOut(id=lock_id, secret=row.secret)
        failures, acc_failures = row.failures + 1, account.failures + 1
        conn.execute(
            file_locks.update()
            .where(file_locks.c.id == lock_id)
            .values(failures=failures, locked_until=at + delay(failures, LOCK_FREE_FAILURES))
        )
        conn.execute(
            file_lock_accounts.update()
            .where(file_lock_accounts.c.owner_id == user.id)
            .values(failures=acc_failures, locked_until=at + delay(acc_failures, ACCOUNT_FREE_FAILURES))
        )
        audit(conn, who, user.id, "file_lock.open", "file_lock", lock_id, status="denied")
    raise ApiError(403, "file_password", "wrong file password")


def _account(conn: Connection, user_id: str) -> AnyRow:
    """The account's failure count, its row locked for this transaction (PostgreSQL;
    SQLite's write transactions are serial already)."""
    query = sa.select(file_lock_accounts).where(file_lock_accounts.c.owner_id == user_id).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(file_lock_accounts.insert().values(owner_id=user_id, failures=0, locked_until=0.0))
        except sa.exc.IntegrityError:
            pass  # a concurrent request made it
        row = conn.execute(query).one()
    return row


@router.delete("/{lock_id}", status_code=204)
def delete_lock(lock_id: str, c: CtxDep, user: UserDep, who: ClientDep) -> Response:
    """Forget a lock (its password was changed or removed)."""
    with c.db.write() as conn:
        gone = conn.execute(
            file_locks.delete().where(file_locks.c.id == lock_id, file_locks.c.owner_id == user.id)
        ).rowcount
        if not gone:
            raise not_found("file lock")
        audit(conn, who, user.id, "file_lock.delete", "file_lock", lock_id)
    return Response(status_code=204)
