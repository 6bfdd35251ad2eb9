"""Argon2id key derivation for passphrase key slots (RFC 9106, second recommended option)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from livedata_cli import notices
from livedata_cli.errors import UsageError

# RFC 9106 §4, second recommended option: 64 MiB, 3 passes, 4 lanes.
DEFAULT_MEMORY_KIB = 64 * 1024
DEFAULT_TIME_COST = 3
DEFAULT_PARALLELISM = 4
SALT_LEN = 16
KEY_LEN = 32
# The most a slot or envelope read from a store may ask for: 16 times the
# default memory, 5 times its passes, 4 times its lanes.  A hostile store
# cannot make an unlock allocate more than this or run for minutes.
MAX_MEMORY_KIB = 1024 * 1024  # 1 GiB
MAX_TIME_COST = 16
MAX_PARALLELISM = 16

# Test suites create hundreds of vaults: they may make Argon2id cheap, but only
# with both variables, the second naming the test run, so neither a stray
# export nor a copied line of a CI file weakens a real vault's slots.
WEAKEN_VAR = "LIVEDATA_TESTONLY_WEAKEN_KDF"
MARKER_VAR = "LIVEDATA_TESTONLY_RUN"
WEAK = (1024, 1, 1)  # m = 1 MiB, t = 1, p = 1
_warned = False
_warned_lock = threading.Lock()


def test_only_weakened() -> bool:
    """Whether the test-only weakening is on; a UsageError (exit 2) when it is
    asked for without the test-run marker.  Warns once per process when on."""
    global _warned
    if os.environ.get(WEAKEN_VAR) != "1":
        return False
    if not os.environ.get(MARKER_VAR):
        raise UsageError(
            f"{WEAKEN_VAR}=1 is for livedata's own test suite: it makes passphrases guessable in "
            f"seconds. Unset it (a test run also sets {MARKER_VAR})"
        )
    with _warned_lock:
        first, _warned = not _warned, True
    if first:
        notices.notice(
            f"livedata: WARNING: {WEAKEN_VAR}=1 ({MARKER_VAR}={os.environ[MARKER_VAR][:60]}): Argon2id is "
            "weakened to m = 1 MiB, t = 1; anything protected now is guessable. Never use this for real data"
        )
    return True


@dataclass(frozen=True)
class Argon2Params:
    """Parameters stored beside each slot, so they can be raised later."""

    memory_kib: int = DEFAULT_MEMORY_KIB
    time_cost: int = DEFAULT_TIME_COST
    parallelism: int = DEFAULT_PARALLELISM

    @staticmethod
    def default() -> Argon2Params:
        """Default parameters, unless the test-only weakening is on.

        ``LIVEDATA_TESTONLY_WEAKEN_KDF=1`` exists so the test suite can create
        hundreds of vaults quickly; it is refused without the test-run marker
        ``LIVEDATA_TESTONLY_RUN`` and warned about on every command that uses it.
        """
        if test_only_weakened():
            return Argon2Params(*WEAK)
        return Argon2Params()

    def to_json(self) -> dict[str, int | str]:
        return {"alg": "argon2id", "m": self.memory_kib, "t": self.time_cost, "p": self.parallelism}

    @staticmethod
    def from_json(data: dict[str, object]) -> Argon2Params:
        if not isinstance(data, dict) or data.get("alg") != "argon2id":
            raise ValueError("unknown KDF")
        m, t, p = (int(str(data[k])) for k in ("m", "t", "p"))
        # Bounds keep a hostile slot from making us allocate or compute without limit.
        if not (8 * p <= m <= MAX_MEMORY_KIB and 1 <= t <= MAX_TIME_COST and 1 <= p <= MAX_PARALLELISM):
            raise ValueError(
                f"Argon2id parameters m={m} KiB, t={t}, p={p} are outside "
                f"m <= {MAX_MEMORY_KIB} KiB, t <= {MAX_TIME_COST}, p <= {MAX_PARALLELISM}"
            )
        return Argon2Params(memory_kib=m, time_cost=t, parallelism=p)


MIN_SALT_LEN = 8  # Argon2's own minimum


def derive_key(secret: bytes, salt: bytes, params: Argon2Params) -> bytes:
    """Stretch a passphrase into a 32-byte key-encryption key (ValueError for a
    salt Argon2 refuses: one read from a damaged or hostile header)."""
    from argon2.low_level import Type, hash_secret_raw

    if len(salt) < MIN_SALT_LEN:
        raise ValueError(f"a salt of {len(salt)} bytes is too short")

    return bytes(
        hash_secret_raw(
            secret=secret,
            salt=salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=KEY_LEN,
            type=Type.ID,
        )
    )
