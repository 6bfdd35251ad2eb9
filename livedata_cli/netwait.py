"""How long livedata waits on S3 and a Live-Data server, and what it says meanwhile.

Every call is bounded: connecting, the first byte of an answer, and every
later read may each stay silent at most :func:`stall_timeout` seconds (30 by
default; ``LIVEDATA_STALL_TIMEOUT`` or the ``stall_timeout`` config key).  A
transfer that keeps moving, however slowly, is never cut.  Silent calls are
retried while the first failure is less than :data:`BUDGET` seconds old, so
a frozen or unreachable server is exit 6 within about a minute; each retry
is announced on stderr as it starts ("server not answering, retry 2/5 in
4 s"), except under ``--quiet``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_STALL = 30
BUDGET = 45.0  # seconds after a call's first failure in which retries may start

_notice: Callable[[str], None] | None = None


def stall_timeout() -> float:
    from livedata_cli import settings

    return float(settings.setting("stall_timeout") or DEFAULT_STALL)  # a bad value is exit 2, never ignored


def set_notice(fn: Callable[[str], None] | None) -> None:
    """Where retry notices go (the CLI's stderr, unless --quiet)."""
    global _notice
    _notice = fn


def announce(what: str, attempt: int, total: int, wait: float | None) -> None:
    """``attempt`` (2 for the first retry) of ``total`` is about to start."""
    if _notice is None:
        return
    after = f" in {wait:.0f} s" if wait is not None and wait >= 1 else ""
    _notice(f"livedata: {what} not answering, retry {attempt}/{total}{after}")


def note(text: str) -> None:
    """A one-line note (housekeeping a server cannot do was skipped), not under --quiet."""
    if _notice is not None:
        _notice(f"livedata: note: {text}")


def attempts_within_budget(stall: float, wanted: int) -> int:
    """How many attempts of a silent call fit the budget (at least 1)."""
    return max(1, min(wanted, 1 + int(BUDGET // max(stall, 0.001))))


class Deadline:
    """The retry budget of one call: starts at its first failure."""

    def __init__(self) -> None:
        self.first_failure: float | None = None

    def may_retry(self, wait: float) -> bool:
        now = time.monotonic()
        if self.first_failure is None:
            self.first_failure = now
        return now + wait - self.first_failure < BUDGET
