"""``/api/v1/users/me/devices``: the signed-in devices of an account, their trust, and mail about sign-ins.

A device is a session: each login creates one, named by the client (the
host name by default) and marked with the HTTP User-Agent and IP it came
from.  Every authenticated request already checks that its session is not
revoked, so revoking a device stops its access token on its next request and
its refresh token at once.

A trusted device holds a random secret of which the server keeps only the
SHA-256; a login that presents it skips the TOTP step (``mfa_policy``
``untrusted``) until ``trusted_until``.  The trust moves to each new session
of the device, survives logout, and is dropped when the device is revoked,
the password changes or MFA is turned off.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Path, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from livedata_cli.server import db
from livedata_cli.server.deps import Client, ClientDep, Context, CtxDep, UserDep, audit, not_found
from livedata_cli.server.security import opaque_token, token_hash

router = APIRouter(prefix="/users/me/devices", tags=["devices"])
log = logging.getLogger("livedata.server")

DeviceName = Annotated[
    str | None, Field(max_length=200, description="this device's name (default: its host name)")
]
TrustSecret = Annotated[
    str | None, Field(max_length=200, description="the device-trust secret from .../trust")
]


class DeviceFields(BaseModel):
    """What a client tells about itself when it logs in."""

    device_name: DeviceName = None
    device_trust: TrustSecret = None


@dataclass(frozen=True)
class Device:
    name: str | None
    user_agent: str
    ip: str

    def columns(self, now: float) -> dict[str, object]:
        """A new session's device columns."""
        return {
            "device_name": self.name,
            "user_agent": self.user_agent,
            "ip": self.ip[:64],
            "last_seen_at": now,
            "last_ip": self.ip[:64],
        }


def _printable(text: str | None, limit: int) -> str | None:
    """Text a client chose, without control characters (it ends up in mail)."""
    if text is None:
        return None
    clean = "".join(ch for ch in text if ch.isprintable()).strip()[:limit]
    return clean or None


def device_of(who: Client, name: str | None) -> Device:
    return Device(
        name=_printable(name, 200), user_agent=_printable(who.user_agent, 512) or "", ip=who.ip
    )


def of_session(conn: Connection, session_id: str, who: Client) -> Device:
    """The device making a request: its name from its session, the rest from the request."""
    name = conn.execute(
        sa.select(db.sessions.c.device_name).where(db.sessions.c.id == session_id)
    ).scalar()
    return device_of(who, name)


def trusted_session(conn: Connection, user_id: str, secret: str | None) -> str | None:
    """The session holding this device-trust secret, if it is this account's and not expired.

    The secret is looked up by its SHA-256, so no comparison of the secret
    itself leaks timing."""
    if not secret:
        return None
    s = db.sessions.c
    found: str | None = conn.execute(
        sa.select(s.id).where(
            s.trust_hash == token_hash(secret), s.user_id == user_id, s.trusted_until > time.time()
        )
    ).scalar()
    return found


def is_new(conn: Connection, user_id: str, device: Device) -> bool:
    """A sign-in from a device name and user agent this account has not signed in from before
    (the account's very first sign-in is not news)."""
    s = db.sessions.c
    earlier = conn.execute(
        sa.select(sa.func.count()).select_from(db.sessions).where(s.user_id == user_id)
    ).scalar_one()
    if not earlier:
        return False
    seen = conn.execute(
        sa.select(s.id)
        .where(
            s.user_id == user_id,
            s.device_name.is_not_distinct_from(device.name),
            s.user_agent.is_not_distinct_from(device.user_agent),
        )
        .limit(1)
    ).first()
    return seen is None


def move_trust(conn: Connection, old_session: str, new_session: str) -> None:
    """A trusted device logged in again: its trust (and its end date) follows it to the new session."""
    s = db.sessions.c
    row = conn.execute(sa.select(s.trust_hash, s.trusted_until).where(s.id == old_session)).one()
    conn.execute(
        db.sessions.update()
        .where(s.id == new_session)
        .values(trust_hash=row.trust_hash, trusted_until=row.trusted_until)
    )
    conn.execute(
        db.sessions.update().where(s.id == old_session).values(trust_hash=None, trusted_until=None)
    )


def drop_trust(conn: Connection, user_id: str, session_id: str | None = None) -> None:
    """No device of the account (or only this one) is trusted any more."""
    q = db.sessions.update().where(
        db.sessions.c.user_id == user_id, db.sessions.c.trust_hash.is_not(None)
    )
    if session_id is not None:
        q = q.where(db.sessions.c.id == session_id)
    conn.execute(q.values(trust_hash=None, trusted_until=None))


# -- notification mail ------------------------------------------------------------------
def notify(c: Context, tasks: BackgroundTasks, to: str, what: str, device: Device) -> None:
    """Mail the account about a security event, after the answer is sent; a mail server that is
    down costs a warning in the log, never the request."""
    if not c.mailer.configured:
        return
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = (
        f"{what} on your livedata account {to}.\n\n"
        f"When:        {when}\n"
        f"Device:      {device.name or '(unnamed)'}\n"
        f"IP address:  {device.ip or '(unknown)'}\n"
        f"User agent:  {device.user_agent or '(none)'}\n"
        f"Server:      {c.config.public_url}\n\n"
        "If this was you, there is nothing to do.\n\n"
        "If it was not you: list the devices signed in to your account with\n"
        "'livedata account devices', end the ones you do not know with\n"
        "'livedata account devices revoke ID', and change your password.\n"
    )
    tasks.add_task(_deliver, c, to, f"livedata: {what.lower()}", body)


def _deliver(c: Context, to: str, subject: str, body: str) -> None:
    try:
        c.mailer.send(to, subject, body)
    except Exception as e:
        log.warning("notification mail not sent: %s", type(e).__name__)


# -- the API ----------------------------------------------------------------------------
class DeviceOut(BaseModel):
    id: str
    name: str | None
    user_agent: str | None
    ip: str | None = Field(description="the IP it signed in from")
    last_ip: str | None
    created_at: float = Field(description="first seen: when it signed in")
    last_seen_at: float | None = Field(description="its last request, to the minute")
    signed_in: bool = Field(description="false for a device signed out that is still trusted")
    trusted: bool
    trusted_until: float | None
    current: bool = Field(description="the device making this request")


class DeviceList(BaseModel):
    items: list[DeviceOut]


class Trust(BaseModel):
    id: str
    trusted_until: float
    device_trust: str = Field(
        description="the device-trust secret: shown once, sent with later logins"
    )


class Revoked(BaseModel):
    revoked: int


def _listed(conn: Connection, user_id: str, now: float) -> list[sa.Row[tuple[object, ...]]]:
    """The account's devices: signed in (a live refresh token), or signed out but still trusted."""
    s, rt = db.sessions.c, db.refresh_tokens.c
    live = sa.exists().where(rt.session_id == s.id, rt.used_at.is_(None), rt.expires_at > now)
    signed_in = sa.and_(s.revoked_at.is_(None), live)
    return list(
        conn.execute(
            sa.select(db.sessions, signed_in.label("signed_in"))
            .where(s.user_id == user_id, sa.or_(signed_in, s.trusted_until > now))
            .order_by(s.created_at.desc())
        ).all()
    )


@router.get(
    "", response_model=DeviceList, summary="Your signed-in devices (sessions), newest first"
)
def list_devices(c: CtxDep, user: UserDep) -> DeviceList:
    now = time.time()
    with c.db.read() as conn:
        rows = _listed(conn, user.id, now)
    return DeviceList(
        items=[
            DeviceOut(
                id=r.id,
                name=r.device_name,
                user_agent=r.user_agent,
                ip=r.ip,
                last_ip=r.last_ip,
                created_at=r.created_at,
                last_seen_at=r.last_seen_at,
                signed_in=bool(r.signed_in),
                trusted=r.trusted_until is not None and r.trusted_until > now,
                trusted_until=r.trusted_until,
                current=r.id == user.session_id,
            )
            for r in rows
        ]
    )


def _revoke(conn: Connection, ids: list[str], now: float) -> None:
    s = db.sessions.c
    conn.execute(
        db.sessions.update()
        .where(s.id.in_(ids), s.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="device_revoked")
    )
    conn.execute(
        db.sessions.update().where(s.id.in_(ids)).values(trust_hash=None, trusted_until=None)
    )


@router.delete(
    "/{device_id}",
    status_code=204,
    summary="Sign a device out: its tokens stop working at once and its trust ends",
    responses={404: {"description": "no such device of yours"}},
)
def revoke_device(
    c: CtxDep, user: UserDep, who: ClientDep, device_id: Annotated[str, Path(max_length=64)]
) -> Response:
    with c.db.write() as conn:
        owned = conn.execute(
            sa.select(db.sessions.c.id).where(
                db.sessions.c.id == device_id, db.sessions.c.user_id == user.id
            )
        ).first()
        if owned is None:
            raise not_found("device")
        _revoke(conn, [device_id], time.time())
        audit(conn, who, user.id, "device.revoke", "session", device_id)
    return Response(status_code=204)


@router.post("/revoke-others", response_model=Revoked, summary="Sign out every device but this one")
def revoke_others(c: CtxDep, user: UserDep, who: ClientDep) -> Revoked:
    now = time.time()
    with c.db.write() as conn:
        ids = [r.id for r in _listed(conn, user.id, now) if r.id != user.session_id]
        if ids:
            _revoke(conn, ids, now)
        audit(conn, who, user.id, "device.revoke_others", "user", user.id)
    return Revoked(revoked=len(ids))


@router.post(
    "/current/trust",
    response_model=Trust,
    summary="Trust this device: logins that present the returned secret skip the TOTP step",
)
def trust_current(c: CtxDep, user: UserDep, who: ClientDep) -> Trust:
    secret = opaque_token()
    until = time.time() + c.config.device_trust_days * 86400
    with c.db.write() as conn:
        conn.execute(
            db.sessions.update()
            .where(db.sessions.c.id == user.session_id)
            .values(trust_hash=token_hash(secret), trusted_until=until)
        )
        audit(conn, who, user.id, "device.trust", "session", user.session_id)
    return Trust(id=user.session_id, trusted_until=until, device_trust=secret)
