//! Runs the real `phases` binary, worker processes and all, and checks the
//! arrival orders it prints: with its embedded server, against a separately
//! started `procshared`, and with a worker that fails mid-run (the others
//! must not wait for it forever).

mod common;

use common::{assert_server, run, run_ok, Procshared};

const WORKERS: usize = 3;
const PHASES: u64 = 4;

fn args(extra: &[&'static str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--workers",
        &WORKERS.to_string(),
        "--phases",
        &PHASES.to_string(),
        "--work-ms",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn check(url: Option<&str>) {
    let args = args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_ok(env!("CARGO_BIN_EXE_phases"), &args, url);
    assert_server(&out, url);
    assert!(
        out.contains(&format!("all {WORKERS} workers connected")),
        "{out}"
    );

    // `phase K: arrival order wA wB wC (3 of 3 finished)`, one per phase.
    let phases: Vec<&str> = out.lines().filter(|l| l.starts_with("phase ")).collect();
    assert_eq!(phases.len() as u64, PHASES, "{out}");
    for (k, l) in phases.iter().enumerate() {
        let rest = l
            .strip_prefix(&format!("phase {k}: arrival order "))
            .unwrap_or_else(|| panic!("phase {k}: {out}"));
        let (order, finished) = rest.split_once(" (").unwrap();
        let mut order: Vec<usize> = order
            .split(' ')
            .map(|w| w.strip_prefix('w').unwrap().parse().unwrap())
            .collect();
        order.sort_unstable();
        assert!(order.iter().copied().eq(0..WORKERS), "phase {k}: {out}");
        assert_eq!(
            finished,
            format!("{WORKERS} of {WORKERS} finished)"),
            "{out}"
        );
    }
}

#[test]
fn phases_in_lock_step_with_its_embedded_server() {
    check(None);
}

#[test]
fn phases_in_lock_step_against_a_separate_procshared() {
    let server = Procshared::start();
    check(Some(server.url()));
    check(Some(server.url()));
    assert_eq!(server.objects(), Vec::<String>::new());
}

/// The last worker fails in phase 1. It aborts the barrier on its way out,
/// so worker 0 (the one the coordinator joins first) gets BrokenBarrier at
/// once: the run fails well within the deadline although the barriers'
/// own timeout (the safety net) is far beyond it.
#[test]
fn a_failing_worker_breaks_the_barrier_instead_of_hanging() {
    let server = Procshared::start();
    let args = args(&["--fail-in-phase", "1", "--timeout", "3600"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(env!("CARGO_BIN_EXE_phases"), &args, Some(server.url()));
    assert!(!r.status.success(), "{}", r.dump());
    let last = WORKERS - 1;
    assert!(
        r.stderr
            .contains(&format!("worker {last}: injected failure in phase 1")),
        "{}",
        r.dump()
    );
    assert!(
        r.stderr
            .contains("worker 0: phase 1 barrier: broken barrier"),
        "{}",
        r.dump()
    );
    assert!(
        r.stderr.contains("phases: error: worker 0 failed"),
        "{}",
        r.dump()
    );
    // A failed run cleans up too.
    assert_eq!(server.objects(), Vec::<String>::new());
}
