"""Start-up rows: ``ls``, ``search``, ``--version`` and a completion Tab, whole processes.

Builds throw-away homes whose index holds N synthetic files (10,000 and
100,000 by default; 3 tags each, out of 40; stored in upload runs of 250
files spread over three years), written straight through ``Index.apply`` with
synthetic put records (no upload, no store, no key: ``ls`` and ``search``
need none of them), then times whole ``livedata ...`` processes, interpreter
start-up included.  Prints the median of RUNS runs of each, and beside it the
same command line run through the full command tree
(``livedata_cli.entry.main``, what every command took before plain ``ls`` and
``search`` got their fast path in ``quick.py``), measured in the same run.

    python bench/search_bench.py            # or: make bench-search
    BENCH_SEARCH_FILES=10000,100000,1000000 BENCH_SEARCH_RUNS=9 python bench/search_bench.py
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

SIZES = [int(n) for n in os.environ.get("BENCH_SEARCH_FILES", "10000,100000").split(",")]
FILES = max(SIZES)
RUNS = max(7, int(os.environ.get("BENCH_SEARCH_RUNS", "9")))
BAR_VERSION_MS = 50  # --version and a completion Tab


def bar_ms(files: int) -> int:
    """ls and search: under 150 ms at 10,000 files, under 400 ms at 100,000 (issue 23)."""
    return 150 if files <= 10_000 else 400


TAB = {"_LIVEDATA_COMPLETE": "complete_bash", "COMP_WORDS": "livedata download finance/20", "COMP_CWORD": "2"}

KINDS = [
    "invoice", "report", "contract", "receipt", "statement", "letter", "minutes", "budget",
    "photo", "scan", "draft", "slides", "notes", "plan", "summary", "memo", "offer", "order",
    "payslip", "manual",
]  # fmt: skip
TOPS = ["finance", "work", "home", "projects", "archive", "clients", "travel", "health"]
TAGS = [f"t{i:02d}" for i in range(37)] + ["finance", "family", "urgent"]  # 40 tags
EXTS = {"pdf": "application/pdf", "jpg": "image/jpeg", "txt": "text/plain", "docx": "application/zip"}

# Rows per index size: label, argv, extra environment.
QUERIES: list[tuple[str, list[str], dict[str, str]]] = [
    ("word query", ["search", "invoice"], {}),
    ("prefix query", ["search", "contr*"], {}),
    ("tag filter", ["search", "--tag", "finance"], {}),
    ("word + filters", ["search", "report 2024", "--type", "pdf", "--larger-than", "100KB"], {}),
    ("ls", ["ls"], {}),
    ("ls a folder", ["ls", "finance/2020"], {}),
]
# Rows once, on the largest index.
ONCE: list[tuple[str, list[str], dict[str, str]]] = [
    ("--version", ["--version"], {}),
    ("completion Tab", [], TAB),
]
FULL_CLI = [sys.executable, "-c", "import sys; from livedata_cli.entry import main; sys.exit(main())"]


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


def build(home: Path, files: int) -> float:
    os.environ["LIVEDATA_HOME"] = str(home)
    from livedata_cli import settings
    from livedata_cli.index.core import Index

    settings.VaultSettings(store=str(home / "store"), vault_id="0" * 32).save()
    rng = random.Random(5)
    t0 = time.perf_counter()
    index = Index(home / settings.INDEX_FILE)
    batch = 10_000
    for start in range(0, files, batch):
        index.apply(f"journal/bench-{start:08d}", records(min(batch, files - start), rng))
    index.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index.close()
    return time.perf_counter() - t0


def time_runs(args: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Median wall and CPU (user + system) milliseconds of whole processes, and
    the median wall of the same command line through the full command tree;
    the two kinds of run alternate, so a change of load hits both."""
    exe = [livedata_exe()]
    fast = subprocess.run([*exe, *args], env=env, capture_output=True, check=True)  # warm the page cache
    full = subprocess.run([*FULL_CLI, *args], env=env, capture_output=True, check=True)
    if args and (fast.stdout, fast.stderr) != (full.stdout, full.stderr):
        raise SystemExit(f"livedata {' '.join(args)}: the fast path and the full CLI print different things")
    walls, cpus, fulls = [], [], []
    lines = len(fast.stdout.splitlines())
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([*exe, *args], env=env, capture_output=True, check=True)
        walls.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        if args:  # a Tab has no full-tree twin worth timing here
            t0 = time.perf_counter()
            subprocess.run([*FULL_CLI, *args], env=env, capture_output=True, check=True)
            fulls.append((time.perf_counter() - t0) * 1000)
    return statistics.median(walls), statistics.median(cpus), statistics.median(fulls) if fulls else 0.0, lines


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ldsearch-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEDATA_")}
        print(f"median of {RUNS} runs of the whole process (start-up included), this machine, "
              f"load average {os.getloadavg()[0]:.1f}")
        print("(cpu: user + system time of the livedata row; full CLI: the same command line through "
              "the whole command tree, alternated with it)")
        print(f"{'files':>7} {'case':<15} {'command':<61} {'wall ms':>7} {'cpu ms':>7} {'full CLI':>8} {'lines':>6}  bar")
        failed = False
        results: dict[str, dict[str, float]] = {}
        cases = [(files, *q) for files in sorted(SIZES) for q in QUERIES] + [(FILES, *q) for q in ONCE]
        homes: dict[int, Path] = {}
        for files in sorted(SIZES):
            home = work / f"home-{files}"
            built = build(home, files)
            size = (home / "index.sqlite").stat().st_size
            homes[files] = home
            print(f"# index of {files:,} files, 3 tags each: built in {built:.1f}s, {size / 2**20:.0f} MiB")
        for files, label, args, extra in cases:
            bar = BAR_VERSION_MS if (not args or args == ["--version"]) else bar_ms(files)
            wall, cpu, full, lines = time_runs(args, {**env, "LIVEDATA_HOME": str(homes[files]), **extra})
            ok = wall < bar
            failed |= not ok
            results[f"{files} {label}"] = {"wall_ms": round(wall, 1), "cpu_ms": round(cpu, 1), "full_cli_ms": round(full, 1)}
            shown = "livedata " + (" ".join(a if " " not in a else repr(a) for a in args) or "<Tab> " + TAB["COMP_WORDS"])
            print(
                f"{files:>7} {label:<15} {shown:<61} {wall:>7.1f} {cpu:>7.1f} {full if full else float('nan'):>8.1f}"
                f" {lines:>6}  <{bar} {'ok' if ok else 'OVER'}"
            )
        out = Path(__file__).parent / "out"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        (out / f"search-{stamp}.json").write_text(json.dumps({"files": SIZES, "runs": RUNS, "ms": results}) + "\n")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
