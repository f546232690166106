#!/usr/bin/env bash
# Instructions a call, counted by callgrind (repeatable whatever else the
# machine does, unlike a clock):
#
#   bash bench/tools/callgrind.sh client mix 20000          # one worker under callgrind
#   bash bench/tools/callgrind.sh client pipeline 100000 --inflight 64
#   bash bench/tools/callgrind.sh server 25000              # procshared under callgrind,
#                                                           # 4 pipelined workers x N calls
#
# Prints the total; the profile goes to OUT (default
# /tmp/procshare-callgrind.out) for `callgrind_annotate`. SERVER and BENCH
# name the binaries (default: target/release; build them first). The
# server's count includes its start and, since callgrind slows it ~50x,
# more of its timer-driven work than a real run has.
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVER=${SERVER:-target/release/procshared}
BENCH=${BENCH:-target/release/procshare-bench}
OUT=${OUT:-/tmp/procshare-callgrind.out}
PORT=${PORT:-23417}
log=$(mktemp)
trap 'rm -f "$log"; [ -n "${sp:-}" ] && kill "$sp" 2>/dev/null || true' EXIT
started() {
  for _ in $(seq 1 600); do grep -q "listening on" "$log" && return 0; sleep 0.1; done
  echo "procshared did not start:" >&2; cat "$log" >&2; exit 1
}
url=http://127.0.0.1:$PORT
case ${1:?usage: callgrind.sh client JOB N [worker args] | server N} in
client)
  job=${2:?job}; n=${3:?calls}; shift 3
  "$SERVER" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
  sp=$!
  started
  echo go | valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    "$BENCH" worker --url "$url" --job "$job" --n "$n" --name d "$@" 2>&1 >/dev/null |
    grep "refs:"
  ;;
server)
  n=${2:?calls}
  valgrind --tool=callgrind --callgrind-out-file="$OUT" \
    "$SERVER" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
  sp=$!
  started
  pids=()
  for k in 0 1 2 3; do
    (echo go | "$BENCH" worker --url "$url" --job pipeline --inflight 64 --n "$n" --k "$k" --name d >/dev/null) &
    pids+=($!)
  done
  wait "${pids[@]}"
  kill -INT "$sp"
  wait "$sp" || true
  sp=
  callgrind_annotate "$OUT" 2>/dev/null | grep "PROGRAM TOTALS"
  ;;
*) echo "usage: callgrind.sh client JOB N [worker args] | server N" >&2; exit 2 ;;
esac
