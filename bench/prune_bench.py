"""What ``livedata prune`` costs to reclaim space: a vault on a folder store with
10,000 small files, 2,000 of them purged (``rm --purge``), then one timed
``livedata prune`` (no policy: it repacks the packs the purges left dead space
in, and deletes nothing else).  Median of several runs, each on a fresh copy
of the same vault.

    .venv/bin/python bench/prune_bench.py [--files 10000] [--purged 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--purged", type=int, default=2_000)
    ap.add_argument("--size", type=int, default=4096, help="bytes per file")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "livedata")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        src = base / "src"
        for i in range(args.files):
            path = src / f"d{i % 100:02d}" / f"f{i:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(args.size))
        home = base / "home"
        env = {
            **os.environ,
            "LIVEDATA_HOME": str(home),
            "LIVEDATA_PASSPHRASE": "bench",
            "LIVEDATA_TESTONLY_WEAKEN_KDF": "1",
            "LIVEDATA_NO_KEYRING": "1",
        }
        run = lambda *a: subprocess.run([exe, *a], env=env, check=True, capture_output=True)  # noqa: E731
        run("init")
        t0 = time.perf_counter()
        run("upload", str(src), "--recursive", "--as", "src/")
        upload_s = time.perf_counter() - t0
        # Purge every fifth file in-process (2,000 launches of the CLI would time
        # Python's start-up, not livedata): the same use case rm --purge calls.
        code = (
            "import os, sys\n"
            "from livedata_cli.keys import Unlocker\n"
            "from livedata_cli.vault import Vault\n"
            "v = Vault.open(Unlocker(use_keyring=False))\n"
            "n, step = int(sys.argv[1]), int(sys.argv[2])\n"
            "with v.lock(exclusive=True, command='rm --purge'):\n"
            "    for i in range(0, n * step, step):\n"
            "        v.remove(f'src/d{i % 100:02d}/f{i:05d}.bin', purge=True)\n"
            "v.close()\n"
        )
        step = max(1, args.files // args.purged)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(args.purged), str(step)], env=env, check=True)
        purge_s = time.perf_counter() - t0
        pristine = base / "pristine"
        shutil.copytree(home, pristine, symlinks=True)
        times: list[float] = []
        result: dict[str, object] = {}
        for r in range(args.runs):
            if r:
                shutil.rmtree(home)
                shutil.copytree(pristine, home, symlinks=True)
            t0 = time.perf_counter()
            out = run("prune", "--json")
            times.append(time.perf_counter() - t0)
            result = json.loads(out.stdout)
        reclaimed = result["reclaimed"]
        assert isinstance(reclaimed, dict)
        print(
            json.dumps(
                {
                    "files": args.files,
                    "purged": args.purged,
                    "file_size": args.size,
                    "upload_s": round(upload_s, 2),
                    "purge_s": round(purge_s, 2),
                    "prune_s_median": round(statistics.median(times), 3),
                    "prune_s_runs": [round(t, 3) for t in times],
                    "packs_repacked": reclaimed["packs"]["objects"],
                    "bytes_reclaimed": reclaimed["total_bytes"],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
