#!/usr/bin/env bash
# Many files to a local S3 server (moto, started here on 127.0.0.1): 2,000 x 4 KiB
# and 200 x 1 MiB.  First backup, a no-change rerun, a rerun after changing 10
# files, a full restore and the objects left in the bucket, for livedata and, on
# the same trees in the same run, restic (s3 backend) and rclone crypt over an s3
# remote (each "not installed" when missing).  Then the 2,000 small files to a
# local `livedata server` (SQLite) and to a folder store: first backup and restore,
# three interleaved rounds, with their medians.
#   bench/s3_small.sh       (BENCH_DIR, default /tmp/lds3small; LIVEDATA_BIN)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || dirname "$here")
[ -x "$repo/.venv/bin/python" ] && "$repo/.venv/bin/python" -m compileall -q "$repo/livedata_cli" >/dev/null
LD=${LIVEDATA_BIN:-$repo/.venv/bin/livedata}
PY=$repo/.venv/bin/python
W=${BENCH_DIR:-/tmp/lds3small}
rm -rf "$W"; mkdir -p "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

"$PY" - "$W" <<'PY'
import os, sys
w = sys.argv[1]
for d in range(20):
    os.makedirs(f"{w}/small/d{d:02d}")
    for i in range(100):
        with open(f"{w}/small/d{d:02d}/f{i:03d}.bin", "wb") as f:
            f.write(os.urandom(4096))
os.makedirs(f"{w}/mid")
for i in range(200):
    with open(f"{w}/mid/f{i:03d}.bin", "wb") as f:
        f.write(os.urandom(1 << 20))
PY
sync

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$repo/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$W/moto.log" 2>&1 &
pids+=($!)
EP=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_DEFAULT_REGION=us-east-1
for _ in $(seq 100); do curl -s -o /dev/null "$EP" && break; sleep 0.1; done
BUCKET=bench
"$PY" -c "import boto3; boto3.client('s3', endpoint_url='$EP').create_bucket(Bucket='$BUCKET')"
objects() {  # objects under a prefix of the bucket
  "$PY" -c "
import boto3, sys
pages = boto3.client('s3', endpoint_url='$EP').get_paginator('list_objects_v2').paginate(Bucket='$BUCKET', Prefix=sys.argv[1])
print(sum(len(p.get('Contents', [])) for p in pages))" "$1/"
}

t() { local label=$1; shift; /usr/bin/time -f "%e %U %S %M" -o "$W/.t" "$@" >/dev/null 2>"$W/.err" || { echo "$label failed:"; tail -5 "$W/.err"; exit 1; }
      read -r s u k kb <"$W/.t"; printf "%-40s %7.2fs %7.2fs %6d MiB\n" "$label" "$s" "$(awk "BEGIN { print $u + $k }")" $((kb / 1024)); }
row() { printf "%-40s %8s\n" "$1" "$2"; }
change10() {  # $1: tree
  local files=("$W/$1"/*/f001.bin "$W/$1"/f00[0-9].bin) n=0
  for f in "${files[@]}"; do [ -e "$f" ] || continue; head -c "$(stat -c %s "$f")" /dev/urandom >"$f"; n=$((n + 1)); [ $n -ge 10 ] && break; done
}

echo "# to a local moto S3 server; $(date -u +%FT%TZ) $(nproc) CPU; livedata $("$LD" --version | cut -d' ' -f2)"
printf "%-40s %8s %8s %10s\n" "tool / step" "wall" "CPU" "peak RSS"

for set in small mid; do
  echo "## $set: $([ $set = small ] && echo '2,000 x 4 KiB in 20 folders' || echo '200 x 1 MiB')"
  # livedata, unlocked by a job's key file (the cron recipe: no Argon2id per command).
  export LIVEDATA_HOME=$W/ld-$set LIVEDATA_NO_KEYRING=1 AWS_ENDPOINT_URL=$EP
  LIVEDATA_PASSPHRASE=pw "$LD" init -q --store "s3://$BUCKET/ld-$set"
  LIVEDATA_PASSPHRASE=pw "$LD" keys add -q --key-file "$W/job.key"
  export LIVEDATA_PASSPHRASE_FILE=$W/job.key
  t "livedata first" "$LD" upload "$W/$set" -r -q --as t/
  t "livedata no-change" "$LD" upload "$W/$set" -r -q --as t/
  change10 "$set"; t "livedata 10 changed" "$LD" upload "$W/$set" -r -q --as t/
  t "livedata restore" "$LD" download t/ -o "$W/out-ld-$set" -q
  diff -r "$W/$set" "$W/out-ld-$set" >/dev/null || { echo "livedata restore differs"; exit 1; }
  row "livedata objects in the bucket" "$(objects "ld-$set")"
  rm -f "$W/job.key"; unset LIVEDATA_HOME LIVEDATA_PASSPHRASE_FILE LIVEDATA_NO_KEYRING AWS_ENDPOINT_URL

  if command -v restic >/dev/null; then
    export RESTIC_PASSWORD=pw RESTIC_REPOSITORY=s3:$EP/$BUCKET/restic-$set
    restic init -q >/dev/null
    t "restic first" restic backup -q "$W/$set"
    t "restic no-change" restic backup -q "$W/$set"
    change10 "$set"; t "restic 10 changed" restic backup -q "$W/$set"
    t "restic restore" restic restore -q latest --target "$W/out-restic-$set"
    row "restic objects in the bucket" "$(objects "restic-$set")"
    unset RESTIC_PASSWORD RESTIC_REPOSITORY
  else
    for s in first no-change "10 changed" restore "objects in the bucket"; do row "restic $s" "not installed"; done
  fi

  if command -v rclone >/dev/null; then
    export RCLONE_CONFIG_BS3_TYPE=s3 RCLONE_CONFIG_BS3_PROVIDER=Other RCLONE_CONFIG_BS3_ENDPOINT=$EP \
      RCLONE_CONFIG_BS3_ACCESS_KEY_ID=bench RCLONE_CONFIG_BS3_SECRET_ACCESS_KEY=bench \
      RCLONE_CONFIG_LDC_TYPE=crypt RCLONE_CONFIG_LDC_REMOTE=bs3:$BUCKET/rclone-$set \
      RCLONE_CONFIG_LDC_PASSWORD=$(rclone obscure pw)
    t "rclone crypt first" env -u AWS_CA_BUNDLE rclone sync "$W/$set" ldc:
    t "rclone crypt no-change" env -u AWS_CA_BUNDLE rclone sync "$W/$set" ldc:
    change10 "$set"; t "rclone crypt 10 changed" env -u AWS_CA_BUNDLE rclone sync "$W/$set" ldc:
    t "rclone crypt restore" env -u AWS_CA_BUNDLE rclone copy ldc: "$W/out-rclone-$set"
    row "rclone crypt objects in the bucket" "$(objects "rclone-$set")"
  else
    for s in first no-change "10 changed" restore "objects in the bucket"; do row "rclone crypt $s" "not installed"; done
  fi
done

echo "## the 2,000 small files to a local livedata server (SQLite) and to a folder store, three rounds, interleaved"
kill "${pids[0]}" 2>/dev/null || true  # moto is done with: it holds the S3 runs' objects in memory
sync
srv=$W/srv; mkdir -p "$srv"
LIVEDATA_HOME=$srv "$LD" server --port 0 2>"$W/server.log" >/dev/null &
pids+=($!)
for _ in $(seq 300); do grep -q '"listening"' "$W/server.log" 2>/dev/null && break; sleep 0.1; done
URL=$("$PY" -c "import json, sys; print(next(json.loads(l)['url'] for l in open(sys.argv[1]) if '\"listening\"' in l))" "$W/server.log")
walls=()  # "kind step seconds", for the medians
tw() { t "$@"; read -r s _ <"$W/.t"; walls+=("$1 $s"); }
for round in 1 2 3; do
  (export LIVEDATA_HOME=$W/ld-api$round LIVEDATA_NO_KEYRING=1 LIVEDATA_PASSWORD="bench account password"
   "$LD" register -q --server "$URL" --email "bench$round@example.com" >/dev/null
   "$LD" login -q --server "$URL" --email "bench$round@example.com" >/dev/null
   LIVEDATA_PASSPHRASE=pw "$LD" init -q --store "$URL"
   LIVEDATA_PASSPHRASE=pw "$LD" keys add -q --key-file "$W/api$round.key")
  (export LIVEDATA_HOME=$W/ld-folder$round LIVEDATA_NO_KEYRING=1
   LIVEDATA_PASSPHRASE=pw "$LD" init -q
   LIVEDATA_PASSPHRASE=pw "$LD" keys add -q --key-file "$W/folder$round.key")
  for kind in api folder; do
    export LIVEDATA_HOME=$W/ld-$kind$round LIVEDATA_NO_KEYRING=1 LIVEDATA_PASSPHRASE_FILE=$W/$kind$round.key
    sync
    tw "livedata $kind first" "$LD" upload "$W/small" -r -q --as t/
    sync
    tw "livedata $kind restore" "$LD" download t/ -o "$W/out-$kind$round" -q
    diff -r "$W/small" "$W/out-$kind$round" >/dev/null || { echo "$kind restore differs"; exit 1; }
    unset LIVEDATA_HOME LIVEDATA_PASSPHRASE_FILE
  done
done
row "livedata api objects (server files)" "$(find "$srv" -path '*data*' -type f | wc -l)"
printf '%s\n' "${walls[@]}" | "$PY" -c "
import statistics, sys
walls = {}
for line in sys.stdin:
    *label, s = line.split()
    walls.setdefault(' '.join(label), []).append(float(s))
for step in ('first', 'restore'):
    api, folder = (statistics.median(walls[f'livedata {k} {step}']) for k in ('api', 'folder'))
    print(f'median {step}: api {api:.2f}s, folder {folder:.2f}s, api / folder {api / folder:.2f}')"
