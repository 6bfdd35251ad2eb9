"""What the audit trail costs: `livedata upload` of 1,000 small files, with the
audit hook of main() and without it (the same command through the CLI's
dispatcher alone), each on a fresh vault, median of several runs.

    .venv/bin/python bench/audit_overhead.py [--files 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WITHOUT_HOOK = "import sys; from livedata_cli.cli import _dispatch; sys.exit(_dispatch(sys.argv[1:]))"


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "livedata")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i in range(args.files):
            (src / f"{i:05d}.txt").write_text(f"small file {i}\n")
        times: dict[str, list[float]] = {"with audit": [], "without audit": []}
        for r in range(args.runs):
            for label, prefix in (
                ("with audit", [exe]),
                ("without audit", [sys.executable, "-c", WITHOUT_HOOK]),
            ):
                home = Path(tmp) / f"home-{label.replace(' ', '-')}-{r}"
                env = {
                    **os.environ,
                    "LIVEDATA_HOME": str(home),
                    "LIVEDATA_PASSPHRASE": "bench",
                    "LIVEDATA_TESTONLY_WEAKEN_KDF": "1",
                    "LIVEDATA_TESTONLY_RUN": "bench-audit-overhead",
                    "LIVEDATA_NO_KEYRING": "1",
                }
                subprocess.run([exe, "init", "-q"], env=env, check=True)
                times[label].append(run([*prefix, "upload", str(src), "--recursive", "-q"], env))
        for label, ts in times.items():
            print(f"{label:>14}: median {statistics.median(ts):.3f} s  (runs: {', '.join(f'{t:.3f}' for t in ts)})")
        extra = statistics.median(times["with audit"]) - statistics.median(times["without audit"])
        print(f"audit overhead: {extra * 1000:+.0f} ms for {args.files:,} files")


if __name__ == "__main__":
    main()
