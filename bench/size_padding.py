"""What hiding file sizes from the store would cost, on a real tree of files.

For every regular file under the given folders (default: /usr/share/doc), it
adds up what a vault stores today (one v1 container per file: the plaintext,
102 header bytes and 16 bytes of tag per 1 MiB segment) and what it would
store if each container were padded so that its size says less:

* ``pow2``: up to the next power of two (the size class leaks about log2(size) bits);
* ``padme``: Padmé (PURBs, Nikitin et al. 2019): the low bits of the size are
  zeroed so that at most O(log log size) bits are left (overhead at most 12 %);
* ``4k``: up to a multiple of 4 KiB (small files all look alike, large ones do not).

It prints one JSON document: file count, bytes, and per scheme the stored
bytes and the overhead over today's containers.  It reads file sizes only
(``os.stat``), so it runs in seconds:

    .venv/bin/python bench/size_padding.py [FOLDER...]
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator

HEADER = 102
TAG = 16
SEGMENT = 1 << 20


def container(n: int) -> int:
    segments = max(1, -(-n // SEGMENT))
    return HEADER + n + TAG * segments


def pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def padme(n: int) -> int:
    if n < 2:
        return n
    e = math.floor(math.log2(n))
    s = math.floor(math.log2(e)) + 1
    mask = (1 << (e - s)) - 1
    return (n + mask) & ~mask


def four_k(n: int) -> int:
    return -(-n // 4096) * 4096


SCHEMES: dict[str, Callable[[int], int]] = {"pow2": pow2, "padme": padme, "4k": four_k}


def sizes(roots: list[str]) -> Iterator[int]:
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if os.path.isfile(os.path.join(folder, name)) and not os.path.islink(os.path.join(folder, name)):
                    yield st.st_size


def main(roots: list[str]) -> dict[str, object]:
    all_sizes = list(sizes(roots))
    today = sum(container(n) for n in all_sizes)
    result: dict[str, object] = {
        "folders": roots,
        "files": len(all_sizes),
        "plaintext_bytes": sum(all_sizes),
        "container_bytes": today,
        "distinct_container_sizes": len({container(n) for n in all_sizes}),
    }
    for name, pad in SCHEMES.items():
        padded = [pad(container(n)) for n in all_sizes]
        result[name] = {
            "stored_bytes": sum(padded),
            "overhead_percent": round(100 * (sum(padded) - today) / today, 2) if today else 0.0,
            "distinct_sizes": len(set(padded)),
        }
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:] or ["/usr/share/doc"]), indent=1))
