#!/usr/bin/env bash
# Backup benchmark: 10,000 files of 4 KiB in 100 folders plus one 200 MiB file.
# First backup, a no-change rerun and a rerun after changing 10 files, then a
# restore of the whole tree into an empty folder (checked against the tree),
# for livedata and, on the same tree in the same run, restic, borg
# (repokey-blake2, no compression; no restore row) and rclone with a crypt
# remote.  Wall seconds, CPU seconds (user + system, children included: a busy
# machine stretches wall time more than CPU time) and peak RSS.
#   bench/small.sh          (BENCH_DIR, default /tmp/ldsmall; LIVEDATA_BIN as big.sh)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || dirname "$here")
# livedata byte-compiled ahead, as an installed wheel is (no compile on each run).
[ -x "$repo/.venv/bin/python" ] && "$repo/.venv/bin/python" -m compileall -q "$repo/livedata_cli" >/dev/null
LD=${LIVEDATA_BIN:-$repo/.venv/bin/livedata}
W=${BENCH_DIR:-/tmp/ldsmall}
[ -n "${BENCH_NO_INSTALL:-}" ] || for c in restic rclone borg /usr/bin/time; do
  command -v "$c" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic rclone borgbackup time >/dev/null || true; break; }
done
have() { command -v "$1" >/dev/null; }  # a peer that could not be installed is left out
rm -rf "$W"; mkdir -p "$W/tree"
trap 'rm -rf "$W"' EXIT
python3 - "$W/tree" <<'PY'
import os, sys
r = sys.argv[1]
for d in range(100):
    os.makedirs(f"{r}/d{d:03d}")
    for i in range(100):
        with open(f"{r}/d{d:03d}/f{i:03d}.bin", "wb") as f:
            f.write(os.urandom(4096))
with open(f"{r}/big.bin", "wb") as f:
    for _ in range(200):
        f.write(os.urandom(1 << 20))
PY
sync
t() { local label=$1; shift; /usr/bin/time -f "%e %U %S %M" -o "$W/.t" "$@" >/dev/null 2>"$W/.err" || { echo "$label failed:"; cat "$W/.err"; exit 1; }
      read -r s u k kb <"$W/.t"; printf "%-34s %7.2fs %7.2fs %6d MiB\n" "$label" "$s" "$(awk "BEGIN { print $u + $k }")" $((kb / 1024)); }
change10() { for i in $(seq 10); do head -c 4096 /dev/urandom >"$W/tree/d0$((i + 10))/f001.bin"; done; }
echo "# 10,000 x 4 KiB files in 100 folders + one 200 MiB file; $(date -u +%FT%TZ) $(nproc) CPU; livedata $("$LD" --version | cut -d' ' -f2)"
printf "%-34s %8s %8s %10s\n" "tool / step" "wall" "CPU" "peak RSS"

# livedata twice: unlocked by a passphrase (Argon2id, 64 MiB, t=3, p=4, each
# run) and by a job's key file (keys add --key-file: the cron recipe).
run_livedata() {  # $1: passphrase | key-file
  export LIVEDATA_HOME=$W/ld LIVEDATA_NO_KEYRING=1
  rm -rf "$LIVEDATA_HOME"; LIVEDATA_PASSPHRASE=pw "$LD" init -q
  if [ "$1" = key-file ]; then
    LIVEDATA_PASSPHRASE=pw "$LD" keys add -q --key-file "$W/job.key"; export LIVEDATA_PASSPHRASE_FILE=$W/job.key
  else
    export LIVEDATA_PASSPHRASE=pw
  fi
  t "livedata first ($1)" "$LD" upload "$W/tree" -r -q --as tree/
  t "livedata no-change ($1)" "$LD" upload "$W/tree" -r -q --as tree/
  change10; t "livedata 10 changed ($1)" "$LD" upload "$W/tree" -r -q --as tree/
  rm -rf "$W/out"; sync
  t "livedata restore ($1)" "$LD" download tree/ -o "$W/out" -q
  diff -rq "$W/tree" "$W/out" >/dev/null || { echo "livedata restore differs from the tree"; exit 1; }
  rm -rf "$W/out"
  rm -f "$W/job.key"; unset LIVEDATA_HOME LIVEDATA_PASSPHRASE LIVEDATA_PASSPHRASE_FILE LIVEDATA_NO_KEYRING
}
run_livedata passphrase
run_livedata key-file

if have restic; then
export RESTIC_PASSWORD=pw RESTIC_REPOSITORY=$W/restic; restic init -q >/dev/null
t "restic first" restic backup -q "$W/tree"
t "restic no-change" restic backup -q "$W/tree"
change10; t "restic 10 changed" restic backup -q "$W/tree"
rm -rf "$W/out"; sync
t "restic restore" restic restore -q latest --target "$W/out"
diff -rq "$W/tree" "$W/out$W/tree" >/dev/null || { echo "restic restore differs from the tree"; exit 1; }
rm -rf "$W/out"
fi

if have borg; then
export BORG_PASSPHRASE=pw BORG_REPO=$W/borg BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
borg init -e repokey-blake2 >/dev/null 2>&1
t "borg first" borg create --compression none ::a1 "$W/tree"
t "borg no-change" borg create --compression none ::a2 "$W/tree"
change10; t "borg 10 changed" borg create --compression none ::a3 "$W/tree"
fi

if have rclone; then
mkdir -p "$W/rc"
export RCLONE_CONFIG_LDC_TYPE=crypt RCLONE_CONFIG_LDC_REMOTE=$W/rc RCLONE_CONFIG_LDC_PASSWORD=$(rclone obscure pw)
t "rclone crypt first" rclone sync "$W/tree" ldc:tree
t "rclone crypt no-change" rclone sync "$W/tree" ldc:tree
change10; t "rclone crypt 10 changed" rclone sync "$W/tree" ldc:tree
rm -rf "$W/out"; sync
t "rclone crypt restore" rclone copy ldc:tree "$W/out"
diff -rq "$W/tree" "$W/out" >/dev/null || { echo "rclone restore differs from the tree"; exit 1; }
rm -rf "$W/out"
fi

run_livedata passphrase  # again: the disk's speed swings between runs
run_livedata key-file
