#!/usr/bin/env bash
# Big-file benchmark: livedata upload/download of one large random file, next to
# the shared peer harness (cp, age, gpg, restic, borg, rclone crypt) in the same run.
#
#   bench/big.sh              # 1 GiB (BENCH_SIZE_MIB), livedata, peers, livedata again
#   bench/big.sh --rss-only   # BENCH_RSS_GIB (5) GiB file; fails if peak RSS > 200 MiB
#
# Environment (all optional):
#   BENCH_SIZE_MIB      size of the file for the main run, MiB (default 1024)
#   BENCH_DIR           work dir (default /tmp/ldbench); needs ~3x the size free
#   BENCH_RSS_GIB       size for --rss-only, GiB (default 5); needs ~2x free
#   BENCH_RSS_LIMIT_MIB peak RSS allowed in --rss-only, MiB (default 200)
#   BENCH_KEEP=1        keep the random input file in BENCH_DIR for the next run
#   LIVEDATA_BIN        livedata executable (default: <repo>/.venv/bin/livedata, else PATH)
#   LIVEDATA_PEERS_DIR  folder holding peers-big.sh (default: <repo>/../shared/bench)
# See bench/README.md for what each figure means.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || dirname "$here")
# livedata byte-compiled ahead, as an installed wheel is (no compile on each run).
[ -x "$repo/.venv/bin/python" ] && "$repo/.venv/bin/python" -m compileall -q "$repo/livedata_cli" >/dev/null

mode=big
case "${1:-}" in
  "") ;;
  --rss-only) mode=rss ;;
  -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--rss-only]" >&2; exit 2 ;;
esac

SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RSS_GIB=${BENCH_RSS_GIB:-5}
RSS_LIMIT_MIB=${BENCH_RSS_LIMIT_MIB:-200}
DIR=${BENCH_DIR:-/tmp/ldbench}

if [[ -n "${LIVEDATA_BIN:-}" ]]; then
  LD=$LIVEDATA_BIN
elif [[ -x "$repo/.venv/bin/livedata" ]]; then
  LD=$repo/.venv/bin/livedata
else
  LD=$(command -v livedata) || { echo "big.sh: livedata not found: set LIVEDATA_BIN" >&2; exit 2; }
fi

# -- tools ------------------------------------------------------------------------
need_install() {
  [[ -x /usr/bin/time ]] || return 0
  [[ $mode == rss ]] && return 1
  local c
  for c in age age-keygen gpg restic rclone borg bc; do
    command -v "$c" >/dev/null 2>&1 || return 0
  done
  return 1
}
if need_install; then
  echo "big.sh: installing the peer tools (apt-get)" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  if [[ $mode == rss ]]; then pkgs=(time); else pkgs=(age gpg restic rclone borgbackup bc time); fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# -- helpers ----------------------------------------------------------------------
mkdir -p "$DIR"
tfile=$DIR/.time
cleanup_paths=()
cleanup() { rm -rf "${cleanup_paths[@]}" "$tfile" "$DIR/.stderr" 2>/dev/null || true; }
trap cleanup EXIT

# row LABEL SECONDS BYTES RSS_KIB: one line in the shared harness's format.
row() {
  printf "%-28s %6.2fs %7.0f MB/s  %6d MiB\n" "$1" "$2" "$(awk -v b="$3" -v s="$2" 'BEGIN{print (s>0 ? b/s/1e6 : 0)}')" $(($4 / 1024))
}

# timed VAR_PREFIX CMD...: runs CMD under GNU time; sets ${VAR_PREFIX}_s and ${VAR_PREFIX}_kb.
timed() {
  local prefix=$1; shift
  if ! /usr/bin/time -f "%e %M" -o "$tfile" "$@" >/dev/null 2>"$DIR/.stderr"; then
    echo "big.sh: failed: $*" >&2; cat "$DIR/.stderr" >&2; exit 1
  fi
  local s kb
  read -r s kb < <(tail -n 1 "$tfile")
  printf -v "${prefix}_s" %s "$s"
  printf -v "${prefix}_kb" %s "$kb"
}

# ld HOME ARGS...: the livedata command line for a vault home, in the array LDCMD.
# The KDF is weakened: the passphrase stretch is not what is measured here.
ld() {
  LDCMD=(env LIVEDATA_HOME="$1" LIVEDATA_PASSPHRASE=bench-pw LIVEDATA_NO_KEYRING=1
         LIVEDATA_TESTONLY_WEAKEN_KDF=1 LIVEDATA_TESTONLY_RUN=bench-big "$LD" "${@:2}")
}
fresh_vault() {
  rm -rf "$1"
  ld "$1" init -q; "${LDCMD[@]}" >/dev/null
}

# ld_roundtrip TAG FILE: upload + download in a fresh vault, cmp, print two rows.
ld_roundtrip() {
  local tag=$1 f=$2 size home out
  size=$(stat -c %s "$f")
  home=$DIR/home-$tag
  out=$DIR/out-$tag.bin
  fresh_vault "$home"
  ld "$home" upload -q "$f" --as bench/big.bin; timed up "${LDCMD[@]}"
  ld "$home" download -q bench/big.bin -o "$out"; timed down "${LDCMD[@]}"
  if ! cmp -s "$f" "$out"; then
    echo "big.sh: livedata download ($tag) differs from the original" >&2; exit 1
  fi
  rm -rf "$home" "$out"
  row "livedata upload ($tag)" "$up_s" "$size" "$up_kb"
  row "livedata download ($tag)" "$down_s" "$size" "$down_kb"
}

# back_to_back FILE: three downloads in a row into fresh files, without and then
# with a `sync` before each, each followed by an `age decrypt` of the same file
# the same way (so both meet the same page cache and disk); then cp the same way.
back_to_back() {
  local f=$1 size home i mode pub
  size=$(stat -c %s "$f")
  home=$DIR/home-b2b
  fresh_vault "$home"
  ld "$home" upload -q "$f" --as bench/big.bin; "${LDCMD[@]}" >/dev/null
  age-keygen -o "$DIR/b2b-key.txt" 2>/dev/null
  pub=$(grep -o 'age1[0-9a-z]*' "$DIR/b2b-key.txt")
  age -r "$pub" -o "$DIR/b2b.age" "$f"
  for mode in "in a row" "after sync"; do
    sync
    for i in 1 2 3; do
      [[ $mode == "after sync" ]] && sync
      ld "$home" download -q bench/big.bin -o "$DIR/b2b-$i.bin"; timed down "${LDCMD[@]}"
      row "livedata dl, $mode $i" "$down_s" "$size" "$down_kb"
      [[ $mode == "after sync" ]] && sync
      timed aged age -d -i "$DIR/b2b-key.txt" -o "$DIR/b2b-age-$i.bin" "$DIR/b2b.age"
      row "age decrypt, $mode $i" "$aged_s" "$size" "$aged_kb"
    done
    if ! cmp -s "$f" "$DIR/b2b-3.bin"; then
      echo "big.sh: livedata download ($mode) differs from the original" >&2; exit 1
    fi
    rm -f "$DIR"/b2b-*.bin
    sync
    for i in 1 2 3; do
      [[ $mode == "after sync" ]] && sync
      timed cpb cp "$f" "$DIR/b2b-$i.bin"
      row "cp, $mode $i" "$cpb_s" "$size" "$cpb_kb"
    done
    rm -f "$DIR"/b2b-*.bin
  done
  rm -rf "$home" "$DIR/b2b.age" "$DIR/b2b-key.txt"
}

header() {
  echo "# $1"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(uname -r)  $(nproc) CPU  $("$LD" --version 2>/dev/null | tail -n 1)"
  echo "# tree $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)  work dir $DIR on $(df -P "$DIR" | awk 'NR==2{print $1}')"
  printf "%-28s %7s %12s  %10s\n" "tool / step" "wall" "throughput" "peak RSS"
}

# -- memory check -------------------------------------------------------------
if [[ $mode == rss ]]; then
  f=$DIR/rss-${RSS_GIB}GiB.bin
  block=$DIR/rss-block.bin
  home=$DIR/home-rss
  out=$DIR/out-rss.bin
  cleanup_paths+=("$f" "$block" "$home" "$out")
  # 64 MiB of random data repeated: real content (not sparse), written in seconds.
  head -c 64M /dev/urandom >"$block"
  repeat_block() { local i; for ((i = 0; i < RSS_GIB * 16; i++)); do cat "$block"; done; }
  repeat_block >"$f"
  size=$(stat -c %s "$f")
  header "livedata peak RSS, ${RSS_GIB} GiB file (limit ${RSS_LIMIT_MIB} MiB)"
  fresh_vault "$home"
  ld "$home" upload -q "$f" --as bench/big.bin; timed up "${LDCMD[@]}"
  rm -f "$f"  # the vault holds a copy; keeps disk use at ~2x the size
  ld "$home" download -q bench/big.bin -o "$out"; timed down "${LDCMD[@]}"
  row "livedata upload" "$up_s" "$size" "$up_kb"
  row "livedata download" "$down_s" "$size" "$down_kb"
  status=0
  if ! cmp -s <(repeat_block) "$out"; then
    echo "FAIL: the download differs from the original" >&2; status=1
  fi
  for step in up down; do
    kb_var=${step}_kb
    if (( ${!kb_var} > RSS_LIMIT_MIB * 1024 )); then
      echo "FAIL: peak RSS of ${step}load is $(( ${!kb_var} / 1024 )) MiB > ${RSS_LIMIT_MIB} MiB" >&2
      status=1
    fi
  done
  (( status == 0 )) && echo "OK: upload and download peak RSS within ${RSS_LIMIT_MIB} MiB"
  exit "$status"
fi

# -- main run: livedata, peers, livedata again -----------------------------------
if [[ -n "${LIVEDATA_PEERS_DIR:-}" ]]; then
  peers_dir=$LIVEDATA_PEERS_DIR
elif [[ -d $repo/../shared/bench ]]; then
  peers_dir=$repo/../shared/bench
else  # a git worktree one folder further down (wt/NAME)
  peers_dir=$repo/../../shared/bench
fi
peers=$peers_dir/peers-big.sh
if [[ ! -f "$peers" ]]; then
  echo "big.sh: $peers not found: set LIVEDATA_PEERS_DIR to the folder holding peers-big.sh" >&2
  exit 2
fi

f=$DIR/random-${SIZE_MIB}MiB.bin
if [[ ! -f "$f" || $(stat -c %s "$f") -ne $((SIZE_MIB * 1048576)) ]]; then
  # Fully random: restic and borg deduplicate repeated blocks, which would flatter them.
  head -c "${SIZE_MIB}M" /dev/urandom >"$f"
fi
[[ "${BENCH_KEEP:-0}" == 1 ]] || cleanup_paths+=("$f")
sync
size=$(stat -c %s "$f")

# The run below is a pipeline (a subshell): register what it creates here, for the EXIT trap.
cleanup_paths+=("$DIR/home-1" "$DIR/out-1.bin" "$DIR/home-2" "$DIR/out-2.bin" "$DIR/copy" "$DIR/home-b2b"
               "$DIR/b2b-1.bin" "$DIR/b2b-2.bin" "$DIR/b2b-3.bin" "$DIR/b2b.age" "$DIR/b2b-key.txt"
               "$DIR/b2b-age-1.bin" "$DIR/b2b-age-2.bin" "$DIR/b2b-age-3.bin")
mkdir -p "$repo/bench/out"
result=$repo/bench/out/big-$(date -u +%Y%m%dT%H%M%SZ).txt
{
  header "big file, $SIZE_MIB MiB random ($size bytes); MB/s = 10^6 bytes/s; livedata runs first and last"
  ld_roundtrip 1 "$f"
  bash "$peers" "$f" || echo "# peers-big.sh exited with status $?"
  # livedata fsyncs the object it stores; cp, age, gpg and rclone do not. The same copy, flushed.
  timed cps dd if="$f" of="$DIR/copy" bs=1M conv=fsync status=none
  rm -f "$DIR/copy"
  row "cp + fsync (limit)" "$cps_s" "$size" "$cps_kb"
  ld_roundtrip 2 "$f"
  back_to_back "$f"
} | tee "$result"

# Ratios against the peers measured in this same run (mean of the two livedata runs).
awk '
  { for (i = 1; i <= NF; i++) if ($i == "MB/s") { label = $1; for (j = 2; j < i - 2; j++) label = label " " $j; mbs[label] = $(i - 1) } }
  END {
    u = (mbs["livedata upload (1)"] + mbs["livedata upload (2)"]) / 2
    d = (mbs["livedata download (1)"] + mbs["livedata download (2)"]) / 2
    printf "# ratios (livedata mean MB/s / peer MB/s, >1 = livedata faster):\n"
    if (mbs["cp (limit)"])            printf "#   upload/cp %.2f   upload/cp+fsync %.2f   download/cp %.2f\n", u / mbs["cp (limit)"], (mbs["cp + fsync (limit)"] ? u / mbs["cp + fsync (limit)"] : 0), d / mbs["cp (limit)"]
    if (mbs["age encrypt"])           printf "#   upload/age encrypt %.2f   download/age decrypt %.2f\n", u / mbs["age encrypt"], d / mbs["age decrypt"]
    b = "livedata dl, in a row "; a = "livedata dl, after sync "
    if (mbs[b 1]) printf "#   livedata downloads back to back %.0f, %.0f, %.0f MB/s; each after a sync %.0f, %.0f, %.0f MB/s\n", mbs[b 1], mbs[b 2], mbs[b 3], mbs[a 1], mbs[a 2], mbs[a 3]
    g = "age decrypt, after sync "; r = "age decrypt, in a row "
    if (mbs[g 1]) printf "#   download/age decrypt, interleaved: in a row %.2f, after a sync %.2f\n", (mbs[b 1] + mbs[b 2] + mbs[b 3]) / (mbs[r 1] + mbs[r 2] + mbs[r 3]), (mbs[a 1] + mbs[a 2] + mbs[a 3]) / (mbs[g 1] + mbs[g 2] + mbs[g 3])
    if (mbs["rclone crypt copy in"])  printf "#   upload/rclone in %.2f   download/rclone out %.2f\n", u / mbs["rclone crypt copy in"], d / mbs["rclone crypt copy out"]
  }' "$result" | tee -a "$result"
echo "# saved to ${result#"$repo"/}"
