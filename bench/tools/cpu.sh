#!/usr/bin/env bash
# CPU a call costs, by the clock: starts a procshared, runs worker
# processes of procshare-bench against it, and prints calls/s and the user
# and system time a call of the workers (from `time`, process start
# included) and of the server (from /proc/PID/stat).
#
#   bash bench/tools/cpu.sh mix        # 64 processes x 2,000 sequential calls
#   bash bench/tools/cpu.sh pipeline   # 4 processes x 250,000 calls, 64 in flight
#
# Environment: N (calls a process), PROCS, INFLIGHT (pipeline), PORT,
# SERVER and BENCH (the binaries; default: target/release), SERVER_ENV and
# CLIENT_ENV ("NAME=value ..." for either side). Build first with
# `cargo build --release -p procshare-server -p procshare-bench`.
# Alternate two builds (SERVER=/BENCH= copies) round by round to compare
# them: this machine's speed drifts within minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
job=${1:?usage: cpu.sh mix|pipeline}
case $job in
mix) N=${N:-2000} PROCS=${PROCS:-64} extra=() ;;
pipeline) N=${N:-250000} PROCS=${PROCS:-4} extra=(--inflight "${INFLIGHT:-64}") ;;
*) echo "unknown job $job (mix or pipeline)" >&2; exit 2 ;;
esac
SERVER=${SERVER:-target/release/procshared}
BENCH=${BENCH:-target/release/procshare-bench}
PORT=${PORT:-23415}
log=$(mktemp)
trap 'rm -f "$log" "$log.t" "$log.err"; [ -n "${sp:-}" ] && kill "$sp" 2>/dev/null || true' EXIT
# shellcheck disable=SC2086
env ${SERVER_ENV:-} "$SERVER" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
sp=$!
for _ in $(seq 1 200); do grep -q "listening on" "$log" && break; sleep 0.05; done
grep -q "listening on" "$log" || { echo "procshared did not start:" >&2; cat "$log" >&2; exit 1; }
read -r su0 ss0 < <(awk '{print $14, $15}' "/proc/$sp/stat")
start=$(date +%s.%N)
export BENCH PORT N job CLIENT_ENV
# bash's own `time` counts every waited-for descendant: the workers.
TIMEFORMAT='%U %S'
{ time bash -c '
  pids=()
  for k in $(seq 0 $(('"$PROCS"' - 1))); do
    echo go | env ${CLIENT_ENV:-} "$BENCH" worker --url "http://127.0.0.1:$PORT" \
      --job "$job" --n "$N" --k "$k" --name d '"${extra[*]:-}"' >/dev/null &
    pids+=($!)
  done
  ok=0
  for p in "${pids[@]}"; do wait "$p" || ok=1; done
  exit $ok' 2>"$log.err"; } 2>"$log.t" || { echo "a worker failed:" >&2; cat "$log.err" >&2; exit 1; }
end=$(date +%s.%N)
read -r su1 ss1 < <(awk '{print $14, $15}' "/proc/$sp/stat")
read -r u s <"$log.t"
hz=$(getconf CLK_TCK)
python3 - "$PROCS" "$N" "$start" "$end" "$u" "$s" "$su0" "$ss0" "$su1" "$ss1" "$hz" "$job" <<'PY'
import sys
procs, n, start, end, u, s, su0, ss0, su1, ss1, hz = map(float, sys.argv[1:12])
calls = procs * n
per = lambda sec: sec / calls * 1e6
print(f"{sys.argv[12]}: {int(procs)} x {int(n)} calls in {end - start:.2f} s, {calls / (end - start):,.0f} calls/s; "
      f"clients user {per(u):.2f} sys {per(s):.2f} us a call; "
      f"server user {per((su1 - su0) / hz):.2f} sys {per((ss1 - ss0) / hz):.2f} us a call")
PY
