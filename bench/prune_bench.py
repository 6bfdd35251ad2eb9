"""What ``livedata prune`` costs to reclaim space: a vault on a folder store with
10,000 small files, 2,000 of them purged (``rm --purge``), then one timed
``livedata prune`` (no policy: it repacks the packs the purges left dead space
in, and deletes nothing else).  Median of several runs, each on a fresh copy
of the same vault.

A second row times audit compaction: a vault whose audit chain holds 10,000
events in 500 store objects (appended in-process, as 500 commands would),
then ``livedata prune`` with compaction (every object merged into one) and,
on a copy of the same vault, without it (``LIVEDATA_AUDIT_COMPACT_AFTER``
above the count); the difference is the compaction's cost.

    .venv/bin/python bench/prune_bench.py [--files 10000] [--purged 2000] [--runs 3]
                                          [--audit-events 10000] [--audit-objects 500] [--only-audit]
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
    ap.add_argument("--audit-events", type=int, default=10_000)
    ap.add_argument("--audit-objects", type=int, default=500)
    ap.add_argument("--only-audit", action="store_true", help="only the audit compaction row")
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "livedata")
    if not args.only_audit:
        files_row(args, exe)
    audit_row(args, exe)


def files_row(args: argparse.Namespace, exe: str) -> None:
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
            "from livedata_cli.keys.unlock import Unlocker\n"
            "from livedata_cli.vault.core import Vault\n"
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


APPEND_EVENTS = (
    "import sys\n"
    "from livedata_cli.audit.chain import Trail\n"
    "from livedata_cli.audit.recorder import Recorder\n"
    "from livedata_cli.keys.unlock import Unlocker\n"
    "from livedata_cli.vault.core import Vault\n"
    "v = Vault.open(Unlocker(use_keyring=False))\n"
    "trail, rec = Trail.of(v), Recorder()\n"
    "events, objects = int(sys.argv[1]), int(sys.argv[2])\n"
    "per = max(1, events // objects)\n"
    "for k in range(objects):\n"
    "    trail.append([rec.event('download', f'd{k % 100:02d}/f{k:05d}-{j}.bin') for j in range(per)])\n"
    "v.close()\n"
)


def audit_row(args: argparse.Namespace, exe: str) -> None:
    """prune with and without compacting an audit chain of many objects."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        home = base / "home"
        env = {
            **os.environ,
            "LIVEDATA_HOME": str(home),
            "LIVEDATA_PASSPHRASE": "bench",
            "LIVEDATA_TESTONLY_WEAKEN_KDF": "1",
            "LIVEDATA_TESTONLY_RUN": "bench-prune-audit",
            "LIVEDATA_NO_KEYRING": "1",
        }
        subprocess.run([exe, "init", "-q"], env=env, check=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", APPEND_EVENTS, str(args.audit_events), str(args.audit_objects)],
                       env=env, check=True)
        append_s = time.perf_counter() - t0
        pristine = base / "pristine"
        shutil.copytree(home, pristine, symlinks=True)
        chain_dirs = list((home / "store" / "audit").iterdir())
        before = sum(len(list(d.iterdir())) for d in chain_dirs)
        times: dict[str, list[float]] = {"with": [], "without": []}
        after = 0
        for _r in range(args.runs):
            for label, after_setting in (("without", str(10**9)), ("with", "")):
                shutil.rmtree(home)
                shutil.copytree(pristine, home, symlinks=True)
                t0 = time.perf_counter()
                subprocess.run([exe, "prune", "-q"], env={**env, "LIVEDATA_AUDIT_COMPACT_AFTER": after_setting},
                               check=True)
                times[label].append(time.perf_counter() - t0)
                if label == "with":
                    after = sum(len(list(d.iterdir())) for d in (home / "store" / "audit").iterdir())
        with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
        print(
            json.dumps(
                {
                    "audit_events": args.audit_events,
                    "audit_objects_before": before,
                    "audit_objects_after": after,  # the compacted one and the prune's own
                    "append_s": round(append_s, 2),
                    "prune_s_median_without_compaction": round(without_s, 3),
                    "prune_s_median_with_compaction": round(with_s, 3),
                    "audit_compaction_s": round(with_s - without_s, 3),
                    "runs": {k: [round(t, 3) for t in v] for k, v in times.items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
