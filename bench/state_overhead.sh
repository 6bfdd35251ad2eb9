#!/usr/bin/env bash
# Cost of the authenticated vault state (config MAC, pins, journal chain):
# first backup of 10,000 x 4 KiB files and its no-change rerun, this checkout
# against a baseline checkout, alternating, median of BENCH_RUNS runs each.
#   bench/state_overhead.sh     (BENCH_RUNS, default 3; BENCH_DIR, default /tmp/ldstate)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || dirname "$here")
# Baseline: BENCH_BASE (a checkout), else a temporary worktree of BENCH_BASE_REF
# (default: the last commit before config MACs and journal chains).
BASE=${BENCH_BASE:-}
if [ -z "$BASE" ]; then
  BASE=$(mktemp -d /tmp/ldstate-base.XXXXXX)
  git -C "$repo" worktree add -q --detach "$BASE" "${BENCH_BASE_REF:-a8f68b8}"
  trap 'git -C "$repo" worktree remove --force "$BASE"' EXIT
fi
RUNS=${BENCH_RUNS:-3}
W=${BENCH_DIR:-/tmp/ldstate}
LD=$repo/.venv/bin/livedata
"$repo/.venv/bin/python" -m compileall -q "$repo/livedata_cli" "$BASE/livedata_cli" >/dev/null
rm -rf "$W"; mkdir -p "$W/tree"
trap 'rm -rf "$W"; [ -n "${BENCH_BASE:-}" ] || git -C "$repo" worktree remove --force "$BASE"' EXIT
python3 - "$W/tree" <<'PY'
import os, sys
r = sys.argv[1]
for d in range(100):
    os.makedirs(f"{r}/d{d:03d}")
    for i in range(100):
        with open(f"{r}/d{d:03d}/f{i:03d}.bin", "wb") as f:
            f.write(os.urandom(4096))
PY
sync
export LIVEDATA_NO_KEYRING=1 LIVEDATA_PASSPHRASE=pw LIVEDATA_TESTONLY_WEAKEN_KDF=1
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
run() {  # $1: label, $2: PYTHONPATH (empty: this checkout)
  export LIVEDATA_HOME=$W/home-$1; rm -rf "$LIVEDATA_HOME"
  PYTHONPATH=$2 "$LD" init -q
  first=$(PYTHONPATH=$2 secs "$LD" upload "$W/tree" -r -q --as tree/)
  rerun=$(PYTHONPATH=$2 secs "$LD" upload "$W/tree" -r -q --as tree/)
  echo "$1 $first $rerun" >>"$W/results"
}
for _ in $(seq "$RUNS"); do run base "$BASE"; run chain ""; done
python3 - "$W/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {}
for label in ("base", "chain"):
    mine = [r for r in rows if r[0] == label]
    med[label] = [statistics.median(float(r[i]) for r in mine) for i in (1, 2)]
print(f"# 10,000 x 4 KiB files, median of {len(rows) // 2} runs (seconds)")
print(f"{'step':<22}{'before':>9}{'after':>9}{'change':>9}")
for i, step in enumerate(("first backup", "no-change rerun")):
    b, a = med["base"][i], med["chain"][i]
    print(f"{step:<22}{b:9.2f}{a:9.2f}{(a - b) / b * 100:8.1f}%")
PY
