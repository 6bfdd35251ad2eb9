#!/usr/bin/env bash
# A real round trip on a throw-away local vault: init, upload a file, a folder
# and stdin, list, download, compare, verify every byte.  Usage: demo.sh [LIVEDATA]
set -euo pipefail
LD=${1:-livedata}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LIVEDATA_HOME="$work/home" LIVEDATA_PASSPHRASE="demo passphrase" LIVEDATA_NO_KEYRING=1
src=$(cd "$(dirname "$0")/.." && pwd)
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step livedata init;                                   "$LD" init
step livedata upload README.md --tag docs;             "$LD" upload "$src/README.md" --tag docs
step livedata upload livedata_cli --recursive --as code/; "$LD" upload "$src/livedata_cli" --recursive --as code/ --exclude __pycache__
step "tar c docs | livedata upload - --as backups/docs.tar"; tar c -C "$src" docs | "$LD" upload - --as backups/docs.tar
step livedata ls --long;                               "$LD" ls --long | head -n 8; echo "  ..."
step livedata download code/ -o restored/;             "$LD" download code/ -o "$work/restored"
step "diff -r livedata_cli restored";                   diff -r -x __pycache__ "$src/livedata_cli" "$work/restored" && echo "identical"
step "livedata download backups/docs.tar -o - | tar t"; "$LD" download backups/docs.tar -o - | tar t
step livedata verify --data;                           "$LD" verify --data
echo
echo "The store in $LIVEDATA_HOME/store held only random ids and ciphertext:"
find "$LIVEDATA_HOME/store" -type f | sed "s|$LIVEDATA_HOME/||" | head -n 5
echo "(demo vault removed; run 'livedata init' for your own)"
