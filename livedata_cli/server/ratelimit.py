"""Rate limits for guessable secrets (login, MFA, reset, share passwords).

Moving windows from the ``limits`` library: in process memory by default,
in Redis with ``--redis URL`` so several workers and hosts share counts.
Each guarded action is counted per account (or share) and per client IP.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    """Raised with the seconds after which a retry can succeed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited; retry after {retry_after}s")
        self.retry_after = retry_after


class Limiter:
    def __init__(self, redis_url: str | None = None) -> None:
        self._storage = storage_from_string(redis_url) if redis_url else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)

    def hit(self, action: str, *keys: tuple[str, str]) -> None:
        """Count one attempt of ``action`` against each ``(limit, key)``; raise when one is spent.

        Every key is counted even when an earlier one refuses, so an attacker
        spreading over accounts still spends the IP's budget.
        """
        refused: list[int] = []
        for limit_text, key in keys:
            limit = parse(limit_text)
            if not self._limiter.hit(limit, action, key):
                reset_at, _remaining = self._limiter.get_window_stats(limit, action, key)
                refused.append(max(1, math.ceil(reset_at - time.time())))
        if refused:
            raise RateLimited(max(refused))
