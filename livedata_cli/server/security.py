"""Passwords (Argon2id), access tokens (JWT), one-time codes (TOTP) and opaque tokens.

Argon2id hashing costs 64 MiB and tens of milliseconds per call, so a
semaphore caps how many run at once: a burst of logins queues instead of
exhausting memory.  ``LIVEDATA_TESTONLY_WEAKEN_KDF=1`` makes it cheap for
tests only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ALGORITHM = "HS256"
ISSUER = "livedata"
TOTP_STEP = 30


class Passwords:
    """Argon2id via argon2-cffi's ``PasswordHasher``, at most N hashes at a time."""

    def __init__(self, concurrency: int, *, weaken: bool = False) -> None:
        if weaken:
            self._ph = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        else:  # RFC 9106 second recommended option, argon2-cffi's default
            self._ph = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)
        self._sem = threading.BoundedSemaphore(concurrency)
        # A real hash to compare against when the account does not exist, so
        # a login for an unknown email costs the same time as a wrong password.
        self._dummy = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        with self._sem:
            return self._ph.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        with self._sem:
            try:
                return bool(self._ph.verify(stored or self._dummy, password)) and stored is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, stored: str) -> bool:
        return bool(self._ph.check_needs_rehash(stored))


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str


class Tokens:
    """Short-lived HS256 access tokens bound to a session that logout revokes."""

    def __init__(self, secret: bytes, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl

    def access(self, user_id: str, session_id: str) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "sid": session_id,
            "iat": now,
            "exp": now + self.ttl,
            "iss": ISSUER,
            "typ": "access",
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> AccessClaims | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "sid", "iss"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("typ") != "access":
            return None
        return AccessClaims(user_id=str(claims["sub"]), session_id=str(claims["sid"]))


def opaque_token() -> str:
    """A random bearer secret (refresh token, reset token, MFA challenge): 256 bits."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps of an opaque token: its SHA-256 (the token is random, so no salt)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_id() -> str:
    return secrets.token_hex(16)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="livedata")


def totp_match(secret: str, code: str, last_step: int, now: float | None = None) -> int | None:
    """The time step a code belongs to (±1 step of drift), if newer than ``last_step``.

    Remembering the last accepted step refuses a replay of the same code,
    even within its 30-second window.
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // TOTP_STEP)
    for step in (current - 1, current, current + 1):
        if step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * TOTP_STEP), code):
            return step
    return None


def recovery_codes(n: int = 10) -> list[str]:
    return ["-".join(secrets.token_hex(3) for _ in range(3)) for _ in range(n)]


def normalize_recovery(code: str) -> str:
    return code.strip().lower().replace(" ", "")
