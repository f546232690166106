//! The CPU time a workload's processes spend, to tell a workload bound by
//! CPU from one bound by waiting (round trips, wake-ups).
//!
//! A fleet's workers are children of this process: what they spent is
//! in `getrusage(RUSAGE_CHILDREN)` once they are waited for, and what
//! they had spent when the work began (connecting, starting a runtime) is
//! read from `/proc/PID/schedstat` while they wait for the start signal.
//! The server's time is read from its own `schedstat` before and after
//! the work, when this process started it ([`server_started`]); with
//! `--url` it is unknown.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Daemons this process started and has not let go of, newest last. A
/// fleet's workers talk to the newest: each workload that starts a
/// daemon of its own runs against it before starting another.
static SERVERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn servers() -> MutexGuard<'static, Vec<u32>> {
    SERVERS.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn server_started(pid: u32) {
    servers().push(pid);
}

pub fn server_gone(pid: u32) {
    servers().retain(|&p| p != pid);
}

/// The server the next fleet's workers talk to, if this process started it.
pub fn current_server() -> Option<u32> {
    servers().last().copied()
}

/// The time the live threads of process `pid` have spent on a CPU so
/// far, user and system, to the nanosecond (`/proc/PID/stat` counts in
/// clock ticks, too coarse for a worker's start).
pub fn on_cpu(pid: u32) -> Option<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may end meanwhile: it is left out.
        if let Ok(stat) = std::fs::read_to_string(path) {
            ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(Duration::from_nanos(ns))
}

/// User plus system time of every child this process has waited for.
pub fn waited_children() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_child_shows_in_both_counts() {
        let before = waited_children();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .expect("sh runs");
        let pid = child.id();
        let seen = on_cpu(pid).expect("a live child has a schedstat");
        assert!(child.wait().expect("sh exits").success());
        let spent = waited_children() - before;
        assert!(
            spent >= seen,
            "{spent:?} waited for, {seen:?} seen while it ran"
        );
        assert!(spent > Duration::from_millis(1), "{spent:?}");
        assert!(on_cpu(std::process::id()).is_some_and(|t| t > Duration::ZERO));
    }

    #[test]
    fn the_newest_live_server_is_the_current_one() {
        server_started(u32::MAX - 1);
        server_started(u32::MAX - 2);
        assert_eq!(current_server(), Some(u32::MAX - 2));
        server_gone(u32::MAX - 2);
        assert_eq!(current_server(), Some(u32::MAX - 1));
        server_gone(u32::MAX - 1);
    }
}
