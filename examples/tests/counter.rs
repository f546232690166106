//! Runs the real `counter` binary, worker processes and all, and checks the
//! counts it prints: once with its embedded server, once against a separately
//! started `procshared` (the way it runs across hosts).

mod common;

use common::{assert_server, line, run_ok, Procshared};

const WORKERS: u64 = 4;
const INCREMENTS: u64 = 200;

fn run_counter(url: Option<&str>) -> String {
    let out = run_ok(
        env!("CARGO_BIN_EXE_counter"),
        &[
            "--workers",
            &WORKERS.to_string(),
            "--increments",
            &INCREMENTS.to_string(),
        ],
        url,
    );
    assert_server(&out, url);
    out
}

/// The `(got, expected)` of the line `label: GOT (expected EXPECTED) ...`.
fn count(out: &str, label: &str) -> (u64, u64) {
    let line = line(out, &format!("{label}: "));
    let (got, rest) = line
        .split_once(" (expected ")
        .unwrap_or_else(|| panic!("malformed line {line:?}"));
    let expected = rest.split_once(')').map_or(rest, |(e, _)| e);
    (
        got.parse().unwrap_or_else(|_| panic!("count in {line:?}")),
        expected
            .parse()
            .unwrap_or_else(|_| panic!("expected in {line:?}")),
    )
}

fn assert_counts(out: &str) {
    for label in ["fetch_add", "lock+get+set"] {
        assert_eq!(
            count(out, label),
            (WORKERS * INCREMENTS, WORKERS * INCREMENTS),
            "{label}; output:\n{out}"
        );
    }
}

#[test]
fn counts_with_its_embedded_server() {
    assert_counts(&run_counter(None));
}

#[test]
fn counts_against_a_separate_procshared() {
    let server = Procshared::start();
    assert_counts(&run_counter(Some(server.url())));

    // A second run against the same long-lived server starts from zero again.
    assert_counts(&run_counter(Some(server.url())));
    // And neither left anything behind.
    assert_eq!(server.objects(), Vec::<String>::new());
}
