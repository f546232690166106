//! One JSON line per workload, with the anchor's keys in the anchor's order.

use serde::Serialize;

/// A result line: `{"system": "procshare", "workload": ..., "ops": N,
/// "seconds": S, "ops_per_s": R, ...}`. Fields are printed in declaration
/// order, so the common keys come first exactly as in
/// `python_manager_bench.py`; the optional ones only when set.
#[derive(Debug, Default, Serialize)]
pub struct Row {
    pub system: &'static str,
    pub workload: &'static str,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contenders: Option<usize>,
    /// Sequential workloads: microseconds per call (one round trip each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us_per_op: Option<f64>,
    /// Multi-process workloads: spawn of the first worker to the last
    /// worker connected and ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_seconds: Option<f64>,
    /// Multi-process workloads: the `go` signal to the last worker's exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_seconds: Option<f64>,
    /// `ops / work_seconds`: the throughput with process start left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_ops_per_s: Option<f64>,
    /// Multi-process workloads: the CPU time (user + system) the client
    /// processes spent during the work, per op, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients_cpu_us: Option<f64>,
    /// The same for the server, when this process started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us: Option<f64>,
    /// Clients' and server's CPU time during the work over the work's
    /// wall time times the cores: near 1, the cores were kept busy (CPU
    /// bounds the workload); far below, the processes mostly waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores_busy: Option<f64>,
    /// Where the server kept its state: `memory`, or a data dir with
    /// `--fsync every-second` or `always`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<&'static str>,
    /// How the client reached the server: `tcp` (loopback) or `unix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    /// Restart workloads: dict entries in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Restart workloads: log records replayed, as the server logged it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// Restart workloads: the server's own recovery time (`elapsed_ms` of
    /// its `data dir recovered` line), in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_seconds: Option<f64>,
    /// The server's resident set size (`VmRSS`), in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_mib: Option<f64>,
    /// Bytes of the files in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir_bytes: Option<u64>,
    /// The write-ahead log's size, as `procshare stats` reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    /// How long the `snapshot` call took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_seconds: Option<f64>,
    /// Scaling workloads: bytes of each value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<usize>,
    /// Scaling workloads: the median and 99th percentile of every call's
    /// latency, in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Pipelined and batched workloads: calls in flight per process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflight: Option<usize>,
    /// Batched workload: ops per `Batch` call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Idle clients and waiters: calls blocked at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiters: Option<usize>,
    /// Client processes, where `clients` counts something else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<usize>,
    /// Connections open to the server at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// Live sessions, as the server lists them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// Idle clients and waiters: start signal to every waiter blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_seconds: Option<f64>,
    /// Idle clients and waiters: release to the last worker's exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_seconds: Option<f64>,
    /// The server's RSS before the workload, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_rss_mib: Option<f64>,
    /// The server's peak RSS over its life (`VmHWM`), in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// The server's threads (`Threads` in `/proc/PID/status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// Idle clients and waiters: waits that came back as they should.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<u64>,
}

/// Bytes as MiB, rounded to 0.1.
pub fn mib(bytes: u64) -> f64 {
    round(bytes as f64 / (1024.0 * 1024.0), 1)
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

impl Row {
    /// A row for `ops` operations in `seconds`, rounded like the anchor's.
    pub fn new(workload: &'static str, ops: u64, seconds: f64) -> Row {
        Row {
            system: "procshare",
            workload,
            ops,
            seconds: round(seconds, 4),
            ops_per_s: round(ops as f64 / seconds, 1),
            ..Row::default()
        }
    }

    /// Adds `us_per_op`, for a sequential workload.
    pub fn sequential(mut self, seconds: f64) -> Row {
        self.us_per_op = Some(round(seconds / self.ops as f64 * 1e6, 2));
        self
    }

    /// Adds the split of a multi-process run into start and work.
    pub fn split(mut self, startup: f64, work: f64) -> Row {
        self.startup_seconds = Some(round(startup, 4));
        self.work_seconds = Some(round(work, 4));
        self.work_ops_per_s = Some(round(self.ops as f64 / work, 1));
        self
    }

    /// [`Row::split`], plus the CPU time the fleet's processes spent
    /// during the work, where it is known.
    pub fn fleet(self, t: &crate::fleet::Timing) -> Row {
        let mut row = self.split(t.startup.as_secs_f64(), t.work.as_secs_f64());
        let per_op = |d: std::time::Duration| round(d.as_secs_f64() * 1e6 / row.ops as f64, 2);
        row.clients_cpu_us = t.clients_cpu.map(per_op);
        row.server_cpu_us = t.server_cpu.map(per_op);
        if let (Some(c), Some(s)) = (t.clients_cpu, t.server_cpu) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let wall = t.work.as_secs_f64() * cores as f64;
            if wall > 0.0 {
                row.cores_busy = Some(round((c + s).as_secs_f64() / wall, 2));
            }
        }
        row
    }

    /// The row as one JSON line, spaced like Python's `json.dumps`.
    pub fn to_line(&self) -> String {
        let mut buf = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonStyle);
        self.serialize(&mut ser).expect("a row always serializes");
        String::from_utf8(buf).expect("JSON is UTF-8")
    }

    /// Prints the row as one JSON line on stdout.
    pub fn emit(&self) {
        use std::io::Write;
        let line = self.to_line();
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) is not worth a panic.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

/// `{"a": 1, "b": 2}`: the separators of Python's `json.dumps`, so that
/// procshare's lines look like the anchors' lines.
struct PythonStyle;

impl serde_json::ser::Formatter for PythonStyle {
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::Row;

    #[test]
    fn lines_look_like_the_anchors() {
        let mut row = Row::new("concurrent_dict_mix", 128_000, 2.0);
        row.clients = Some(64);
        assert_eq!(
            row.to_line(),
            r#"{"system": "procshare", "workload": "concurrent_dict_mix", "ops": 128000, "seconds": 2.0, "ops_per_s": 64000.0, "clients": 64}"#
        );
        let seq = Row::new("seq_dict_get", 20_000, 1.0).sequential(1.0);
        assert_eq!(seq.us_per_op, Some(50.0));
    }
}
