"""The server's clock.

``LIVEDATA_TESTONLY_CLOCK_FILE`` (test suites only) names a file holding the
current time in seconds, so tests move time (expiry, lock-outs) without sleeps.
"""

from __future__ import annotations

import os
import time


def now() -> float:
    path = os.environ.get("LIVEDATA_TESTONLY_CLOCK_FILE")
    if path:
        with open(path) as f:
            return float(f.read().strip())
    return time.time()
