"""Search, ls, --version and a completion Tab on a 100,000-file index: whole processes.

Builds a throw-away home whose index holds N synthetic files (3 tags each,
out of 40; stored in upload runs of 250 files spread over three years),
written straight through ``Index.apply`` with synthetic put records (no
upload, no store, no key: search needs none of them), then times whole
``livedata search ...`` processes, interpreter start-up included, and
``livedata --version`` for comparison.  Prints the median of RUNS runs of each.

    python bench/search_bench.py            # or: make bench-search
    BENCH_SEARCH_FILES=1000000 BENCH_SEARCH_RUNS=9 python bench/search_bench.py
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILES = int(os.environ.get("BENCH_SEARCH_FILES", "100000"))
RUNS = max(7, int(os.environ.get("BENCH_SEARCH_RUNS", "9")))
BAR_SEARCH_MS = 150
BAR_VERSION_MS = 50  # --version and a completion Tab
BAR_LS_MS = 400  # ls of the whole vault (100,000 files)
TAB = {"_LIVEDATA_COMPLETE": "complete_bash", "COMP_WORDS": "livedata download finance/20", "COMP_CWORD": "2"}

KINDS = [
    "invoice", "report", "contract", "receipt", "statement", "letter", "minutes", "budget",
    "photo", "scan", "draft", "slides", "notes", "plan", "summary", "memo", "offer", "order",
    "payslip", "manual",
]  # fmt: skip
TOPS = ["finance", "work", "home", "projects", "archive", "clients", "travel", "health"]
TAGS = [f"t{i:02d}" for i in range(37)] + ["finance", "family", "urgent"]  # 40 tags
EXTS = {"pdf": "application/pdf", "jpg": "image/jpeg", "txt": "text/plain", "docx": "application/zip"}

QUERIES: list[tuple[str, list[str], dict[str, str], int]] = [
    ("word query", ["search", "invoice"], {}, BAR_SEARCH_MS),
    ("prefix query", ["search", "contr*"], {}, BAR_SEARCH_MS),
    ("tag filter", ["search", "--tag", "finance"], {}, BAR_SEARCH_MS),
    ("word + filters", ["search", "report 2024", "--type", "pdf", "--larger-than", "100KB"], {}, BAR_SEARCH_MS),
    ("ls", ["ls"], {}, BAR_LS_MS),
    ("--version", ["--version"], {}, BAR_VERSION_MS),
    ("completion Tab", [], TAB, BAR_VERSION_MS),
]


def livedata_exe() -> str:
    here = Path(sys.executable).parent / "livedata"
    return str(here) if here.exists() else shutil.which("livedata") or "livedata"


def records(n: int, rng: random.Random) -> list[dict[str, object]]:
    """Synthetic put records; files arrive in upload runs (a few hundred files
    within minutes, runs spread over three years), as backups and folder
    uploads store them."""
    out = []
    now = time.time()
    run_start = now
    for i in range(n):
        if i % 250 == 0:
            run_start = now - rng.randint(0, 10**8)
        kind = rng.choice(KINDS)
        ext = rng.choice(list(EXTS))
        path = f"{rng.choice(TOPS)}/{rng.randint(2015, 2026)}/{kind}-{rng.choice(KINDS)}-{i:06d}.{ext}"
        out.append(
            {
                "t": "put",
                "vid": f"{rng.getrandbits(128):032x}",
                "path": path,
                "object": f"{rng.getrandbits(128):032x}",
                "offset": 0,
                "length": 1000,
                "size": rng.randint(100, 5_000_000),
                "mtime": now - rng.randint(0, 10**8),
                "mode": 0o644,
                "mime": EXTS[ext],
                "hash": f"{rng.getrandbits(256):064x}",
                "header_hash": f"{rng.getrandbits(256):064x}",
                "wrapped_key": "00" * 60,
                "key_id": "bench",
                "created": run_start + (i % 250) * rng.uniform(0.01, 2.0),
                "tags": rng.sample(TAGS, 3),
                "notes": "signed copy, original with the bank" if i % 50 == 0 else "",
            }
        )
    return out


def build(home: Path) -> float:
    os.environ["LIVEDATA_HOME"] = str(home)
    from livedata_cli import settings
    from livedata_cli.index.core import Index

    settings.VaultSettings(store=str(home / "store"), vault_id="0" * 32).save()
    rng = random.Random(5)
    t0 = time.perf_counter()
    index = Index(home / settings.INDEX_FILE)
    batch = 10_000
    for start in range(0, FILES, batch):
        index.apply(f"journal/bench-{start:08d}", records(min(batch, FILES - start), rng))
    index.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index.close()
    return time.perf_counter() - t0


def time_runs(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Median wall and CPU (user + system) milliseconds of whole processes."""
    exe = livedata_exe()
    subprocess.run([exe, *args], env=env, capture_output=True, check=True)  # warm the page cache
    walls, cpus = [], []
    lines = 0
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([exe, *args], env=env, capture_output=True, check=True)
        walls.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        lines = len(p.stdout.splitlines())
    return statistics.median(walls), statistics.median(cpus), lines


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ldsearch-"))
    try:
        home = work / "home"
        built = build(home)
        size = (home / "index.sqlite").stat().st_size
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        env["LIVEDATA_HOME"] = str(home)
        print(f"index: {FILES:,} files, 3 tags each; built in {built:.1f}s; {size / 2**20:.0f} MiB")
        print(f"median of {RUNS} runs of the whole process (start-up included), this machine")
        print("(cpu: user + system time; over --version: wall time beyond a bare start-up)")
        print(f"{'case':<15} {'command':<61} {'wall ms':>7} {'cpu ms':>7} {'over --version':>14} {'lines':>6}  bar")
        failed = False
        results = {}
        timed = [(label, args, bar, *time_runs(args, {**env, **extra})) for label, args, extra, bar in QUERIES]
        base = next(wall for _, args, _, wall, _, _ in timed if args == ["--version"])
        for label, args, bar, wall, cpu, lines in timed:
            ok = wall < bar
            failed |= not ok
            results[label] = {"wall_ms": round(wall, 1), "cpu_ms": round(cpu, 1)}
            shown = "livedata " + (" ".join(a if " " not in a else repr(a) for a in args) or "<Tab> " + TAB["COMP_WORDS"])
            print(
                f"{label:<15} {shown:<61} {wall:>7.1f} {cpu:>7.1f} {wall - base:>14.1f} {lines:>6}"
                f"  <{bar} {'ok' if ok else 'OVER'}"
            )
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        (out / f"search-{stamp}.json").write_text(json.dumps({"files": FILES, "runs": RUNS, "ms": results}) + "\n")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
