#!/usr/bin/env bash
# Redis' side of "1,000,000 small dict entries" (SPEC §6: procshare's RSS
# <= 2 x Redis' for the same data). Loads ENTRIES entries "key:NNNNNNN" -> N
# (N as a decimal string, what Redis stores for it) into a throwaway
# redis-server on loopback, twice, each time into a fresh server:
#   keys: one top-level key per entry (SET), Redis' usual way;
#   hash: one hash holding every entry (HSET, 1,000 fields per command), the
#         same shape as procshare's one dict.
# Each load goes through `redis-cli --pipe`; then the entries are counted and
# the server's VmRSS (/proc/PID/status, as procshare-bench reads
# procshared's) and INFO's used_memory_rss and used_memory are printed as one
# JSON line, like the anchors'. Installs redis-server and redis-tools from
# Debian's packages when they are missing, as shared/anchors/redis_bench.sh
# does.
# Usage: redis_memory.sh [--quick] [ENTRIES]   (default 1000000; --quick 100000)
set -euo pipefail
N=1000000
if [[ "${1:-}" == "--quick" ]]; then N=100000; shift; fi
N=${1:-$N}
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "redis_memory.sh: ENTRIES wants a positive number, got $N" >&2; exit 2; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq redis-server redis-tools) >/dev/null 2>&1
fi
PORT=${REDIS_MEMORY_PORT:-6393}

# The RESP commands of one layout, on stdout.
commands() { # layout entries
  python3 - "$1" "$2" <<'PY'
import sys
layout, n = sys.argv[1], int(sys.argv[2])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
if layout == "keys":
    for i in range(0, n, 10000):
        out.write(b"".join(cmd("SET", f"key:{j:07d}", str(j)) for j in range(i, min(i + 10000, n))))
else:
    for i in range(0, n, 1000):
        args = ["HSET", "procshare-bench-dict"]
        for j in range(i, min(i + 1000, n)):
            args += [f"key:{j:07d}", str(j)]
        out.write(cmd(*args))
PY
}

info() { # field
  redis-cli -p "$PORT" info memory | tr -d '\r' | sed -n "s/^$1://p"
}

vmrss_kib() { # pid
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

for layout in keys hash; do
  DIR=$(mktemp -d)
  redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DIR" --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  # shellcheck disable=SC2064
  trap "kill \$(cat '$DIR/redis.pid' 2>/dev/null) 2>/dev/null || true; rm -rf '$DIR'" EXIT
  for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  for _ in $(seq 100); do [[ -s "$DIR/redis.pid" ]] && break; sleep 0.1; done
  PID=$(cat "$DIR/redis.pid")
  BEFORE=$(vmrss_kib "$PID")
  T0=$(date +%s.%N)
  commands "$layout" "$N" | redis-cli -p "$PORT" --pipe >/dev/null
  T1=$(date +%s.%N)
  if [[ $layout == keys ]]; then
    GOT=$(redis-cli -p "$PORT" dbsize)
  else
    GOT=$(redis-cli -p "$PORT" hlen procshare-bench-dict)
  fi
  [[ "$GOT" == "$N" ]] || { echo "redis_memory.sh: $layout: Redis holds $GOT entries, not $N" >&2; exit 1; }
  AFTER=$(vmrss_kib "$PID")
  python3 -c '
import json, sys
layout, n, t0, t1, before, after, rss, used = sys.argv[1:]
n, secs = int(n), float(t1) - float(t0)
print(json.dumps({"system": "redis", "workload": "dict_1m_entries_" + layout, "ops": n,
                  "seconds": round(secs, 4), "ops_per_s": round(n / secs, 1), "entries": n,
                  "baseline_rss_mib": round(int(before) / 1024, 1),
                  "rss_mib": round(int(after) / 1024, 1),
                  "used_memory_rss_mib": round(int(rss) / 2**20, 1),
                  "used_memory_mib": round(int(used) / 2**20, 1)}), flush=True)
' "$layout" "$N" "$T0" "$T1" "$BEFORE" "$AFTER" "$(info used_memory_rss)" "$(info used_memory)"
  kill "$PID"
  for _ in $(seq 100); do [[ -e /proc/$PID ]] || break; sleep 0.1; done
  rm -rf "$DIR"
  trap - EXIT
done
