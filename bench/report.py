#!/usr/bin/env python3
"""Medians and ratios of a bench/run.sh run (stdlib only).

Usage: python3 bench/report.py bench/out/results.jsonl

Prints one JSON line of medians per (system, workload), then a table of
ratios against SPEC §6's targets: procshare / Python Manager ops_per_s for
each workload both run, procshare's sequential us_per_op / the raw loopback
round trip (over TCP, and over a Unix socket beside the Unix floor), the
64-process mix with a data dir / in memory, pipelined and batched ops/s
against 1,000,000 (and Redis pipelined), the idle clients and waiters
against 200 MB, the RSS of 1,000,000 dict entries against Redis', and
(when Redis ran) procshare / Redis for each workload both run; then the
restart times of a data dir, the CPU time an op of the multi-process
workloads (clients and server, during the work) with the ceiling it puts
on their ops/s, and the scaling curves. Ratios are ratios of
medians, and the verdicts judge them; the median of the per-run ratios
("paired") is given too where both figures come from each run: two
procshare workloads of one procshare-bench invocation, procshare against
Python's Manager, and procshare's sequential calls against the loopback
floor.
"""
import json
import statistics
import sys
from collections import OrderedDict

MEDIAN_KEYS = ("ops", "seconds", "ops_per_s", "us_per_op", "startup_seconds",
               "work_seconds", "work_ops_per_s", "recovered_seconds", "rss_mib",
               "data_dir_bytes", "log_bytes", "snapshot_seconds", "replayed",
               "p50_us", "p99_us", "baseline_rss_mib", "peak_rss_mib", "threads",
               "sessions", "served", "blocked_seconds", "release_seconds",
               "used_memory_rss_mib", "used_memory_mib", "clients_cpu_us",
               "server_cpu_us", "cores_busy")
KEEP_KEYS = ("clients", "contenders", "pipeline", "durability", "transport", "entries",
             "inflight", "batch", "value_bytes", "waiters", "processes", "connections")
PIPELINE_TARGET = 1_000_000
CROWD_TARGET_MIB = 200e6 / 2**20  # SPEC's 200 MB
MEMORY_TARGET = 2.0
DURABLE_TARGET = 0.8
DURABLE = (("concurrent_dict_mix_memory", "memory"),
           ("concurrent_dict_mix_fsync_every_second", "every-second"),
           ("concurrent_dict_mix_fsync_always", "always"))

# SPEC §6 targets, as (ratio wanted, direction): ">=" ratio at least, "<=" at most.
PYTHON_TARGETS = {
    "seq_dict_set": (1.0, ">", "faster than Python's Manager"),
    "seq_dict_get": (1.0, ">", "faster than Python's Manager"),
    "concurrent_dict_mix": (5.0, ">=", ">= 5x Python's Manager"),
    "lock_counter": (3.0, ">=", ">= 3x Python's Manager"),
    "queue_producer_consumer": (5.0, ">=", ">= 5x Python's Manager Queue"),
}
LOOPBACK_TARGET = 1.3


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                sys.exit(f"report.py: {path}:{n}: not JSON ({e}): {line[:80]}")
    return rows


def medians(rows):
    groups = OrderedDict()
    for r in rows:
        if r.get("system") == "machine":
            continue
        groups.setdefault((r["system"], r["workload"]), []).append(r)
    out = OrderedDict()
    for (system, workload), rs in groups.items():
        m = OrderedDict(system=system, workload=workload, runs=len(rs))
        for k in MEDIAN_KEYS:
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            if vals:
                v = round(statistics.median(vals), 4)
                m[k] = int(v) if k in ("ops", "data_dir_bytes", "log_bytes", "replayed") else v
        for k in ("ops_per_s", "us_per_op"):
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            if len(vals) > 1:
                m[k + "_min"], m[k + "_max"] = min(vals), max(vals)
        for k in KEEP_KEYS:
            if k in rs[0]:
                m[k] = rs[0][k]
        out[(system, workload)] = m
    return out


def verdict(ratio, want, op):
    ok = {">": ratio > want, ">=": ratio >= want, "<=": ratio <= want}[op]
    return "meets" if ok else "misses"


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def table(header, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def paired(rows, system, a, b, key):
    """Median over runs of row(a)[key] / row(b)[key], for the runs that have both."""
    return paired_across(rows, (system, a, key), (system, b, key))


def paired_across(rows, a, b):
    """Median over runs of a's figure / b's, each (system, workload, key),
    for the runs that have both: ratios of the same run, not of medians
    that may come from different runs."""
    def per_run(system, workload, key):
        return {r.get("run"): r[key] for r in rows
                if r.get("system") == system and r.get("workload") == workload and r.get(key)}
    xa, xb = per_run(*a), per_run(*b)
    ratios = [xa[run] / xb[run] for run in xa if run in xb]
    return statistics.median(ratios) if ratios else None


def ratio_text(x):
    return "-" if x is None else f"{x:.2f}x"


def mib(n):
    return None if n is None else n / 2**20


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    med = medians(rows)
    for m in med.values():
        print(json.dumps(m))

    print()
    for r in rows:
        if r.get("system") == "machine":
            print(f"machine at {r['workload']}: nproc {r['nproc']}, {r['date']}, "
                  f"loadavg {r['loadavg']}{', --quick' if r.get('quick') else ''}"
                  + (f", commit {r['commit']}" if r.get("commit") else "")
                  + (f", PROCSHARE_TRANSPORT={r['transport']}" if r.get("transport") else ""))

    get = lambda system, workload, key: med.get((system, workload), {}).get(key)

    print("\nprocshare vs Python's multiprocessing.Manager (ops_per_s, medians)\n")
    out = []
    for wl, (want, op, text) in PYTHON_TARGETS.items():
        ps, py = get("procshare", wl, "ops_per_s"), get("python-manager", wl, "ops_per_s")
        if py is None and ps is None:
            continue
        ratio = ps / py if ps and py else None
        pr = paired_across(rows, ("procshare", wl, "ops_per_s"),
                           ("python-manager", wl, "ops_per_s"))
        out.append([wl, fmt(ps), fmt(py),
                    "-" if ratio is None else f"{ratio:.2f}x",
                    ratio_text(pr),
                    text,
                    "-" if ratio is None else verdict(ratio, want, op)])
    table(["workload", "procshare", "python", "ratio", "paired", "SPEC §6 target", ""], out)

    multi = [wl for wl in ("concurrent_dict_mix", "lock_counter", "queue_producer_consumer")
             if get("procshare", wl, "work_ops_per_s")]
    if multi:
        print("\nprocshare multi-process workloads, process start left out "
              "(work_ops_per_s; Python's figure still includes its start)\n")
        out = []
        for wl in multi:
            ps, py = get("procshare", wl, "work_ops_per_s"), get("python-manager", wl, "ops_per_s")
            out.append([wl, fmt(ps), fmt(get("procshare", wl, "startup_seconds"), 3),
                        fmt(py), "-" if not py else f"{ps / py:.2f}x"])
        table(["workload", "procshare work ops/s", "startup s", "python ops/s", "ratio"], out)

    floor = get("tcp-loopback", "round_trip", "us_per_op")
    print("\nsequential latency vs the raw loopback round trip (us_per_op, medians)\n")
    out = []
    for wl in ("seq_dict_set", "seq_dict_get"):
        ps = get("procshare", wl, "us_per_op")
        py_rate = get("python-manager", wl, "ops_per_s")
        py = 1e6 / py_rate if py_rate else None
        ratio = ps / floor if ps and floor else None
        pr = paired_across(rows, ("procshare", wl, "us_per_op"),
                           ("tcp-loopback", "round_trip", "us_per_op"))
        out.append([wl, fmt(ps, 2), fmt(py, 2), fmt(floor, 2),
                    "-" if ratio is None else f"{ratio:.2f}x",
                    ratio_text(pr),
                    f"<= {LOOPBACK_TARGET}x loopback",
                    "-" if ratio is None else verdict(ratio, LOOPBACK_TARGET, "<=")])
    table(["workload", "procshare us", "python us", "loopback us", "procshare/loopback",
           "paired", "SPEC §6 target", ""], out)

    unix_floor = get("unix-loopback", "round_trip", "us_per_op")
    if any(get("procshare", wl + "_unix", "us_per_op") for wl in ("seq_dict_set", "seq_dict_get")):
        print("\nsequential latency over a Unix socket vs TCP (us_per_op, medians; "
              "the same server, the same run)\n")
        out = []
        for wl in ("seq_dict_set", "seq_dict_get"):
            tcp, unix = get("procshare", wl, "us_per_op"), get("procshare", wl + "_unix", "us_per_op")
            if unix is None:
                continue
            out.append([wl + "_unix", fmt(unix, 2), fmt(tcp, 2),
                        ratio_text(unix / tcp if tcp else None),
                        ratio_text(paired(rows, "procshare", wl + "_unix", wl, "us_per_op")),
                        fmt(unix_floor, 2), ratio_text(unix / unix_floor if unix_floor else None),
                        fmt(floor, 2), ratio_text(unix / floor if floor else None),
                        "-" if not floor else verdict(unix / floor, LOOPBACK_TARGET, "<=")])
        table(["workload", "unix us", "tcp us", "unix/tcp", "paired", "unix floor us",
               "unix/unix floor", "tcp floor us", "unix/tcp floor", f"<= {LOOPBACK_TARGET}x"], out)
        if floor and unix_floor:
            print(f"\n(the floors themselves: Unix {unix_floor:.2f} us, TCP {floor:.2f} us, "
                  f"Unix/TCP {unix_floor / floor:.2f}x)")

    base = DURABLE[0][0]
    mem, mem_work = get("procshare", base, "ops_per_s"), get("procshare", base, "work_ops_per_s")
    if mem and any(get("procshare", wl, "ops_per_s") for wl, _ in DURABLE[1:]):
        print("\n64-process dict mix against fresh servers, in memory vs with a data dir "
              "(medians; paired = median of the per-run ratios)\n")
        out = []
        for wl, mode in DURABLE:
            ps, work = get("procshare", wl, "ops_per_s"), get("procshare", wl, "work_ops_per_s")
            if ps is None:
                continue
            r, rw = ps / mem, (work / mem_work if work and mem_work else None)
            pr = paired(rows, "procshare", wl, base, "ops_per_s")
            target = (f">= {DURABLE_TARGET:.0%} of memory", verdict(r, DURABLE_TARGET, ">=")) \
                if mode == "every-second" else ("-", "")
            out.append([mode, fmt(ps), fmt(work), ratio_text(r), ratio_text(pr), ratio_text(rw),
                        *target])
        table(["durability", "ops/s", "work ops/s", "/ memory", "paired", "work / memory",
               "SPEC §6 target", ""], out)

    restart = [(wl, med.get(("procshare", wl))) for wl in
               ("restart_fill", "restart_log_replay", "restart_snapshot")]
    if any(m for _, m in restart):
        entries = next(m.get("entries") for _, m in restart if m)
        print(f"\nrestart of a data dir holding {entries:,} dict entries (medians; "
              "seconds = spawn to `listening on`, recovered = the server's elapsed_ms)\n")
        out = []
        for wl, m in restart:
            if not m:
                continue
            m = m.get
            out.append([wl, fmt(m("seconds"), 3), fmt(m("recovered_seconds"), 3),
                        fmt(m("replayed"), 0), fmt(m("rss_mib")), fmt(mib(m("data_dir_bytes"))),
                        fmt(m("snapshot_seconds"), 3),
                        f"{m('ops_per_s'):,.0f} entries/s" if wl == "restart_fill" else ""])
        table(["step", "seconds", "recovered s", "records replayed", "server RSS MiB",
               "data dir MiB", "snapshot call s", ""], out)

    pipelined_table(get)
    cpu_table(med, rows)
    crowd_table(med)
    memory_table(get)
    redis_table(get)
    scaling_table(med)


def pipelined_table(get):
    rows = [wl for wl in ("pipelined_dict_mix", "batched_dict_mix") if get("procshare", wl, "ops_per_s")]
    if not rows:
        return
    redis = [r for r in (get("redis", "pipelined_get", "ops_per_s"),
                         get("redis", "pipelined_set", "ops_per_s")) if r]
    redis = statistics.mean(redis) if redis else None
    print("\nmany calls in flight: pipelined (concurrent calls over one connection per process) "
          "and batched (Batch calls)\n(ops_per_s medians, process start included; Redis: "
          "redis-benchmark -c 50 -P 16, mean of GET and SET)\n")
    out = []
    for wl in rows:
        m = lambda k: get("procshare", wl, k)
        ps = m("ops_per_s")
        shape = f"{m('clients')} procs x {m('inflight')} in flight" + (
            f" x {m('batch')} ops" if m("batch") else "")
        out.append([wl, shape, fmt(ps), fmt(m("work_ops_per_s")), fmt(redis),
                    ratio_text(ps / redis if redis else None),
                    ratio_text(ps / PIPELINE_TARGET), ">= 1,000,000 ops/s",
                    verdict(ps, PIPELINE_TARGET, ">=")])
    table(["workload", "shape", "ops/s", "work ops/s", "redis pipelined", "/ redis",
           "/ 1M", "SPEC §6 target", ""], out)


CPU_WORKLOADS = ("concurrent_dict_mix", "concurrent_dict_mix_memory",
                 "concurrent_dict_mix_fsync_every_second", "concurrent_dict_mix_fsync_always",
                 "lock_counter", "queue_producer_consumer", "pipelined_dict_mix",
                 "batched_dict_mix")


def cpu_table(med, rows):
    """CPU time an op during the work, and what it says about the bound:
    with the cores kept busy, CPU bounds the workload; far below, waiting
    does (round trips, wake-ups)."""
    found = [(wl, med[("procshare", wl)]) for wl in CPU_WORKLOADS
             if med.get(("procshare", wl), {}).get("cores_busy") is not None]
    if not found:
        return
    cores = next((r["nproc"] for r in rows if r.get("system") == "machine" and r.get("nproc")), None)
    print("\nCPU time an op during the work (medians; user + system of the client processes "
          "and of the server;\nceiling = the ops/s the cores would allow if CPU were all "
          "that limited the workload; cores busy = CPU time / (work time x cores))\n")
    out = []
    for wl, m in found:
        c, s, work = m.get("clients_cpu_us"), m.get("server_cpu_us"), m.get("work_ops_per_s")
        total = c + s if c is not None and s is not None else None
        ceiling = cores * 1e6 / total if cores and total else None
        out.append([wl, fmt(work), fmt(c, 2), fmt(s, 2), fmt(total, 2), fmt(ceiling),
                    fmt(m.get("cores_busy"), 2)])
    table(["workload", "work ops/s", "clients us", "server us", "total us",
           f"ceiling ops/s ({cores} cores)", "cores busy"], out)


def crowd_table(med):
    m = med.get(("procshare", "idle_clients_waiters"))
    if not m:
        return
    g = m.get
    print(f"\n{g('clients', 0):,} idle clients plus {g('waiters', 0):,} blocked waiters "
          f"({g('processes')} processes, {g('connections', 0):,} connections; medians)\n")
    peak = g("peak_rss_mib")
    out = [[fmt(g("sessions"), 0), fmt(g("served"), 0), fmt(g("baseline_rss_mib")),
            fmt(g("rss_mib")), fmt(peak), fmt(g("threads"), 0), fmt(g("startup_seconds"), 2),
            fmt(g("blocked_seconds"), 2), fmt(g("release_seconds"), 2),
            f"peak <= {CROWD_TARGET_MIB:.1f} MiB (200 MB)",
            "-" if peak is None else verdict(peak, CROWD_TARGET_MIB, "<=")]]
    table(["sessions", "served", "RSS before MiB", "RSS all blocked MiB", "peak (VmHWM) MiB",
           "threads", "connect s", "block s", "release s", "SPEC §6 target", ""], out)


def memory_table(get):
    ps = get("procshare", "dict_1m_entries", "rss_mib")
    if ps is None:
        return
    entries = get("procshare", "dict_1m_entries", "entries")
    print(f"\n{entries:,} small dict entries \"key:NNNNNNN\" -> N: server RSS (VmRSS, MiB, medians)\n")
    out = [["procshare, one dict", fmt(ps), fmt(get("procshare", "dict_1m_entries", "baseline_rss_mib")),
            "-", "-", "", ""]]
    for layout, text in (("keys", "Redis, one key per entry"), ("hash", "Redis, one hash")):
        wl = "dict_1m_entries_" + layout
        r = get("redis", wl, "rss_mib")
        if r is None or get("redis", wl, "entries") != entries:
            continue
        out.append([text, fmt(r), fmt(get("redis", wl, "baseline_rss_mib")),
                    fmt(get("redis", wl, "used_memory_mib")), ratio_text(ps / r),
                    f"procshare <= {MEMORY_TARGET:.0f}x Redis", verdict(ps / r, MEMORY_TARGET, "<=")])
    table(["server", "RSS MiB", "empty MiB", "redis used_memory MiB", "procshare / this",
           "SPEC §6 target", ""], out)


def redis_table(get):
    pairs = [("seq_dict_set", "seq_set", "us"), ("seq_dict_get", "seq_get", "us"),
             ("concurrent_dict_mix", "concurrent_get", "ops"),
             ("concurrent_dict_mix", "concurrent_set", "ops"),
             ("pipelined_dict_mix", "pipelined_get", "ops"),
             ("pipelined_dict_mix", "pipelined_set", "ops"),
             ("batched_dict_mix", "pipelined_get", "ops"),
             ("queue_producer_consumer", "queue_lpush", "ops"),
             ("queue_producer_consumer", "queue_rpop", "ops")]
    out = []
    for ps_wl, r_wl, _ in pairs:
        ps, r = get("procshare", ps_wl, "ops_per_s"), get("redis", r_wl, "ops_per_s")
        if not ps or not r:
            continue
        target = (">= Redis -c 50", verdict(ps / r, 1.0, ">=")) \
            if ps_wl == "concurrent_dict_mix" else ("-", "")
        out.append([ps_wl, f"redis {r_wl} (-c {get('redis', r_wl, 'clients')}, "
                    f"-P {get('redis', r_wl, 'pipeline')})", fmt(ps), fmt(r),
                    f"{ps / r:.2f}x", *target])
    if out:
        print("\nprocshare vs redis-benchmark (ops_per_s, medians)\n")
        table(["procshare", "vs", "procshare", "redis", "ratio", "SPEC §6 target", ""], out)


def scaling_points(med):
    """(curve, x, median row) for every scaling point, in curve order."""
    pts = []
    for (system, wl), m in med.items():
        if system != "procshare":
            continue
        for curve, prefix in (("clients", "scaling_clients_"), ("value", "scaling_value_")):
            if wl.startswith(prefix) and wl[len(prefix):].isdigit():
                pts.append((curve, int(wl[len(prefix):]), m))
    return sorted(pts, key=lambda p: (p[0], p[1]))


def scaling_table(med):
    pts = scaling_points(med)
    if not pts:
        return
    print("\nscaling: the dict get/set mix against client processes (16 B values) and value size "
          "(16 processes)\n(medians; ops/s from the start signal to the last exit; latency of "
          "every call)\n")
    out = [[curve, fmt(m.get("clients"), 0), fmt(m.get("value_bytes"), 0), fmt(m.get("ops"), 0),
            fmt(m.get("ops_per_s")), fmt(m.get("p50_us")), fmt(m.get("p99_us"))]
           for curve, _, m in pts]
    table(["curve", "processes", "value bytes", "calls", "ops/s", "p50 us", "p99 us"], out)


if __name__ == "__main__":
    main()
