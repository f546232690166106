#!/usr/bin/env bash
# procshare's soak benchmark (issue 4, item 6), in one command.
#
#   bash bench/soak.sh [SOAK-ARGS...]      e.g. --ops 1000000 --clients 64
#
# Builds procshared and the `soak` binary of procshare-bench (release), then
# runs `soak`: a fresh in-memory procshared, 64 client processes doing
# 1,000,000 mixed ops (dict, list, value, queue, lock, event; every other
# client reconnects every 500 of its ops), procshared's RSS sampled every
# second. JSON lines on stdout (one per sample, then a summary with the
# verdict), also saved to $SOAK_OUT (default bench/out/soak.jsonl,
# overwritten). `soak --help` lists the arguments.
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/.." && pwd))
cd "$ROOT"
echo "== building (release)" >&2
cargo build --release -p procshare-server -p procshare-bench >&2
TARGET=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/release

OUT=${SOAK_OUT:-$ROOT/bench/out/soak.jsonl}
mkdir -p "$(dirname "$OUT")"
echo "== soak on $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" >&2
"$BIN/soak" --procshared "$BIN/procshared" "$@" | tee "$OUT"
echo "== saved to $OUT" >&2
