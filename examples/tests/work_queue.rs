//! Runs the real `work_queue` binary, worker processes and all, and checks
//! the results it prints against primes counted here: with its embedded
//! server and against a separately started `procshared`.

mod common;

use common::{assert_server, line, run_ok, Procshared};

// `!k.is_multiple_of(d)` needs Rust 1.87; the workspace's rust-version is 1.85.
#[allow(clippy::manual_is_multiple_of)]
fn primes_below(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}

fn check(url: Option<&str>, workers: usize, jobs: u64, step: u64, maxsize: u64) {
    let out = run_ok(
        env!("CARGO_BIN_EXE_work_queue"),
        &[
            "--workers",
            &workers.to_string(),
            "--jobs",
            &jobs.to_string(),
            "--step",
            &step.to_string(),
            "--maxsize",
            &maxsize.to_string(),
        ],
        url,
    );
    assert_server(&out, url);

    // `job   I: primes below N = P (worker W)`, one per job, sorted by id.
    let results: Vec<(u64, u64, u64, usize)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("job "))
        .map(|l| {
            let (id, rest) = l.split_once(": primes below ").unwrap();
            let (n, rest) = rest.split_once(" = ").unwrap();
            let (p, rest) = rest.split_once(" (worker ").unwrap();
            let (w, _) = rest.split_once(')').unwrap();
            (
                id.trim().parse().unwrap(),
                n.trim().parse().unwrap(),
                p.trim().parse().unwrap(),
                w.parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(results.len() as u64, jobs, "{out}");
    for (i, &(id, n, primes, worker)) in results.iter().enumerate() {
        assert_eq!(id, i as u64, "{out}");
        assert_eq!(n, (id + 1) * step, "{out}");
        assert_eq!(primes, primes_below(n), "job {id}; {out}");
        assert!(worker < workers, "{out}");
    }
    let per_worker = line(&out, "jobs per worker: ");
    let per_worker: Vec<u64> = per_worker
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(per_worker.len(), workers, "{out}");
    assert_eq!(per_worker.iter().sum::<u64>(), jobs, "{out}");
    assert!(
        line(&out, "done: ").starts_with(&format!("{jobs} of {jobs} jobs correct in ")),
        "{out}"
    );
}

#[test]
fn every_job_done_and_right_with_its_embedded_server() {
    check(None, 3, 12, 1000, 0);
}

#[test]
fn more_workers_than_jobs() {
    // Idle workers must still get their sentinel and exit.
    check(None, 4, 2, 100, 0);
}

#[test]
fn every_job_done_and_right_against_a_separate_procshared() {
    let server = Procshared::start();
    check(Some(server.url()), 3, 10, 1000, 0);
    // A bounded queue: putting the jobs waits for the workers.
    check(Some(server.url()), 2, 10, 500, 2);
    assert_eq!(server.objects(), Vec::<String>::new());
}
