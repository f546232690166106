#!/usr/bin/env bash
# procshare's benchmark, side by side with its peers (SPEC §6), in one command.
#
#   bash bench/run.sh [--quick] [--runs N] [--redis] [-- PROCSHARE-BENCH-ARGS...]
#
# Builds procshared and procshare-bench (release), compiles the loopback
# floors (TCP: loopback_rtt.c; Unix socket: bench/unix_rtt.c), then N times
# (default 3) runs in turn: the two floors, Python's multiprocessing.Manager
# (shared/anchors/python_manager_bench.py), procshare-bench (its workloads
# over TCP and a Unix socket, in memory and with a data dir; pipelined and
# batched calls; the scaling curves; 10,000 idle clients plus 10,000
# blocked waiters; the RSS of 1,000,000 dict entries; the restart of a data
# dir of 1,000,000 entries; smaller counts with --quick) and, with --redis,
# redis-benchmark (redis_bench.sh, which apt-installs Redis when it is
# missing) and Redis' RSS for the same 1,000,000 entries
# (bench/redis_memory.sh). Arguments after `--` go to procshare-bench (e.g.
# `-- --restart-entries 0 --no-scaling`). Every JSON line, tagged with its
# run, goes to bench/out/results.jsonl; bench/report.py then prints the
# medians and the ratios (also saved to bench/out/report.txt), and
# bench/plot.py draws the scaling curves (bench/out/scaling.svg; a run
# without --quick copies it to BENCHMARKS-scaling.svg beside BENCHMARKS.md).
# $PROCSHARE_TRANSPORT reaches the clients and is recorded with the results.
# Needs only cargo, a C compiler, python3 and coreutils. The anchors are
# looked up in ../shared/anchors beside the repository, or in
# $PROCSHARE_ANCHORS. procshare-bench gets $BENCH_TIMEOUT seconds per run
# (default 900, 180 with --quick), each peer $BENCH_PEER_TIMEOUT (default
# 240, or BENCH_TIMEOUT if less): a peer that fails or hangs loses that
# run's figures with a warning; procshare-bench failing or hanging stops
# the script. Python's Manager hangs now and then (a mix worker waits
# forever for its manager's answer): its anchor gets $BENCH_PYTHON_TIMEOUT
# (default 120, or less as above) and one more try when it fails.
set -euo pipefail

usage() { sed -n '2,31s/^# \{0,1\}//p' "$0"; }

QUICK=()
BENCH_ARGS=()
RUNS=3
REDIS=0
while (($#)); do
  case "$1" in
    --quick) QUICK=(--quick) ;;
    --runs) RUNS=${2:?--runs needs a number}; shift ;;
    --runs=*) RUNS=${1#--runs=} ;;
    --redis) REDIS=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; BENCH_ARGS=("$@"); break ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --runs wants a positive number, got $RUNS" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/.." && pwd))
ANCHORS=${PROCSHARE_ANCHORS:-$ROOT/../shared/anchors}
for f in loopback_rtt.c python_manager_bench.py redis_bench.sh; do
  [[ -f "$ANCHORS/$f" ]] || { echo "run.sh: $ANCHORS/$f not found (set PROCSHARE_ANCHORS)" >&2; exit 1; }
done

cd "$ROOT"
echo "== building (release)" >&2
cargo build --release -p procshare-server -p procshare-bench >&2
TARGET=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/release

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
CC=${CC:-$(command -v cc || command -v gcc)}
"$CC" -O2 "$ANCHORS/loopback_rtt.c" -o "$TMP/loopback_rtt"
"$CC" -O2 "$HERE/unix_rtt.c" -o "$TMP/unix_rtt"
LOOP_N=50000
TIMEOUT=900
if ((${#QUICK[@]})); then LOOP_N=5000; TIMEOUT=180; fi
TIMEOUT=${BENCH_TIMEOUT:-$TIMEOUT}
# A peer's whole run takes well under a minute here; one that hangs
# (Python's Manager, now and then) should not hold the run up for long.
PEER_TIMEOUT=${BENCH_PEER_TIMEOUT:-$((TIMEOUT < 240 ? TIMEOUT : 240))}
PYTHON_TIMEOUT=${BENCH_PYTHON_TIMEOUT:-$((PEER_TIMEOUT < 120 ? PEER_TIMEOUT : 120))}

OUT=$ROOT/bench/out
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# Appends `"run": N` to each JSON line of stdin, into results.jsonl and stdout.
tag() {
  local line
  while IFS= read -r line; do
    if [[ "$line" == \{*\} ]]; then
      printf '%s, "run": %d}\n' "${line%\}}" "$1"
    elif [[ -n "$line" ]]; then
      printf '%s\n' "$line" >&2
    fi
  done | tee -a "$RESULTS"
}

machine() { # when
  printf '{"system": "machine", "workload": "%s", "nproc": %d, "date": "%s", "loadavg": "%s", "quick": %s, "commit": "%s", "transport": "%s"}\n' \
    "$1" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$( ((${#QUICK[@]})) && echo true || echo false)" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "${PROCSHARE_TRANSPORT:-default}"
}

# A peer's failure or hang costs its figures for this run, not the run.
peer() { # run name command...
  local run=$1 name=$2
  shift 2
  timeout --kill-after=10 "$PEER_TIMEOUT" "$@" | tag "$run" ||
    echo "run.sh: WARNING: $name failed or timed out (${PEER_TIMEOUT}s) in run $run; its figures for this run are missing" >&2
}

# Python's anchor: a failed or hung attempt is dropped whole (the lines it
# printed too) and tried once more; if that fails as well, what the second
# attempt measured before it stopped is kept.
python_peer() { # run command...
  local run=$1 attempt out
  shift
  out=$(mktemp)
  for attempt in 1 2; do
    if timeout --kill-after=10 "$PYTHON_TIMEOUT" "$@" >"$out"; then
      tag "$run" <"$out"
      rm -f "$out"
      return 0
    fi
    echo "run.sh: WARNING: python_manager_bench.py failed or timed out (${PYTHON_TIMEOUT}s) in run $run, attempt $attempt of 2" >&2
  done
  tag "$run" <"$out"
  rm -f "$out"
}

machine start | tag 0
for ((run = 1; run <= RUNS; run++)); do
  echo "== run $run of $RUNS" >&2
  peer "$run" loopback_rtt "$TMP/loopback_rtt" "$LOOP_N"
  peer "$run" unix_rtt "$TMP/unix_rtt" "$LOOP_N"
  python_peer "$run" python3 "$ANCHORS/python_manager_bench.py" "${QUICK[@]}"
  timeout --kill-after=10 "$TIMEOUT" \
    "$BIN/procshare-bench" --procshared "$BIN/procshared" "${QUICK[@]}" \
    --durable-rotate $((run - 1)) "${BENCH_ARGS[@]}" | tag "$run" || {
    echo "run.sh: procshare-bench failed or timed out (${TIMEOUT}s) in run $run" >&2
    exit 1
  }
  if ((REDIS)); then
    peer "$run" redis_bench.sh bash "$ANCHORS/redis_bench.sh" "${QUICK[@]}"
    peer "$run" redis_memory.sh bash "$HERE/redis_memory.sh" "${QUICK[@]}"
  fi
done
machine end | tag 0

echo "== medians of $RUNS run(s), from $RESULTS" >&2
python3 "$HERE/report.py" "$RESULTS" | tee "$OUT/report.txt"
python3 "$HERE/plot.py" "$RESULTS" "$OUT/scaling.svg"
if ((${#QUICK[@]} == 0)) && [[ -s "$OUT/scaling.svg" ]]; then
  cp "$OUT/scaling.svg" "$ROOT/BENCHMARKS-scaling.svg"
  echo "== scaling curves: $ROOT/BENCHMARKS-scaling.svg" >&2
fi
