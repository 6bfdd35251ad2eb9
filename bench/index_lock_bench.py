"""What ``livedata lock --index`` costs: encrypting and decrypting a 100,000-file index.

Builds the same synthetic index as ``search_bench.py`` (N files, 3 tags each),
then times, in this process, ``at_rest.lock`` (checkpoint, encrypt, fsync,
remove the plaintext) and ``at_rest.unlock`` (authenticate, decrypt, fsync,
rename), median of RUNS each, and whole ``livedata search`` and
``livedata ls`` processes on the plaintext index for comparison.  A command
that meets a locked index pays one unlock (the keyring, or Argon2id from the
passphrase) plus one decrypt; later commands pay nothing until the next
``lock --index``.

    python bench/index_lock_bench.py
    BENCH_SEARCH_FILES=20000 BENCH_SEARCH_RUNS=7 python bench/index_lock_bench.py
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import search_bench


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ldindexlock-"))
    try:
        home = work / "home"
        built = search_bench.build(home)
        from livedata_cli.index import at_rest

        path = home / "index.sqlite"
        size = path.stat().st_size
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env["LIVEDATA_HOME"] = str(home)
        print(f"index: {search_bench.FILES:,} files; built in {built:.1f}s; {size / 2**20:.1f} MiB")
        plain = {
            "search": search_bench.time_runs(["search", "invoice"], env)[0],
            "ls": search_bench.time_runs(["ls", "finance/2020/"], env)[0],
        }
        master, vault_id = secrets.token_bytes(32), "0" * 32
        locks, unlocks = [], []
        for _ in range(search_bench.RUNS):
            t0 = time.perf_counter()
            at_rest.lock(path, master, vault_id)
            t1 = time.perf_counter()
            at_rest.unlock(path, master, vault_id)
            t2 = time.perf_counter()
            locks.append((t1 - t0) * 1000)
            unlocks.append((t2 - t1) * 1000)
        lock_ms, unlock_ms = statistics.median(locks), statistics.median(unlocks)
        print(f"median of {search_bench.RUNS} runs, this machine")
        print(f"  livedata search invoice (plaintext index, whole process): {plain['search']:8.1f} ms")
        print(f"  livedata ls finance/2020/ (plaintext index, whole process): {plain['ls']:8.1f} ms")
        print(f"  lock --index: encrypt the index                            {lock_ms:8.1f} ms")
        print(f"  first command after it: decrypt the index                  {unlock_ms:8.1f} ms"
              f"  (+ the unlock: keyring read, or Argon2id)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
