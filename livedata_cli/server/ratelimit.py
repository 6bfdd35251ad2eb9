"""Rate limits for guessable secrets (login, MFA, reset, share passwords).

Moving windows from the ``limits`` library: in process memory by default,
in Redis with ``--redis URL`` so several workers and hosts share counts.
Each guarded action is counted per account (or share) and per client IP.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from livedata_cli.errors import UsageError


class RateLimited(Exception):
    """Raised with the seconds after which a retry can succeed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after}s")
        self.retry_after = retry_after


class LimiterUnavailable(Exception):
    """The shared counts (Redis) cannot be reached: the guarded action is refused, not let through."""


REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")


def redacted(url: str) -> str:
    """A Redis URL without its credentials, for messages."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


class Limiter:
    def __init__(self, redis_url: str | None = None) -> None:
        if redis_url and not redis_url.startswith(REDIS_SCHEMES):
            raise UsageError(f"--redis: {redacted(redis_url)!r} is not a redis://, rediss:// or redis+unix:// URL")
        try:
            # Bounded waits: a Redis that stops answering fails the request (503), never hangs it.
            self._storage = (
                storage_from_string(redis_url, socket_connect_timeout=2, socket_timeout=5)
                if redis_url
                else MemoryStorage()
            )
        except ConfigurationError as e:
            raise UsageError(f"--redis: {e}") from None
        self._limiter = MovingWindowRateLimiter(self._storage)
        self.redis_url = redis_url

    def check(self) -> bool:
        """Whether the counts' storage answers (always, in memory)."""
        try:
            return bool(self._storage.check())
        except Exception:
            return False

    def hit(self, action: str, *keys: tuple[str, str]) -> None:
        """Count one attempt of ``action`` against each ``(limit, key)``; raise when one is spent.

        Every key is counted even when an earlier one refuses, so an attacker
        spreading over accounts still spends the IP's budget.
        """
        refused: list[int] = []
        for limit_text, key in keys:
            limit = parse(limit_text)
            try:
                if not self._limiter.hit(limit, action, key):
                    reset_at, _remaining = self._limiter.get_window_stats(limit, action, key)
                    refused.append(max(1, math.ceil(reset_at - time.time())))
            except Exception as e:  # the Redis client's errors: fail closed
                raise LimiterUnavailable(type(e).__name__) from None
        if refused:
            raise RateLimited(max(refused))
