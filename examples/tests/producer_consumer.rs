//! Runs the real `producer_consumer` binary, producers and consumers and all,
//! and checks the tallies it prints: with its embedded server and against a
//! separately started `procshared`.

mod common;

use common::{assert_server, line, run_ok, Procshared};

/// `(items, sum)` of every `consumer I: N items, sum S` line, in order.
fn consumers(out: &str) -> Vec<(u64, u64)> {
    out.lines()
        .filter(|l| l.starts_with("consumer "))
        .map(|l| {
            let (_, rest) = l.split_once(": ").unwrap();
            let (items, sum) = rest
                .split_once(" items, sum ")
                .unwrap_or_else(|| panic!("malformed line {l:?}"));
            (items.parse().unwrap(), sum.parse().unwrap())
        })
        .collect()
}

/// Runs it and checks every figure against `producers × items` items
/// numbered 1..=n.
fn check(url: Option<&str>, producers: u64, consumers_n: u64, items: u64, maxsize: u64) {
    let out = run_ok(
        env!("CARGO_BIN_EXE_producer_consumer"),
        &[
            "--producers",
            &producers.to_string(),
            "--consumers",
            &consumers_n.to_string(),
            "--items",
            &items.to_string(),
            "--maxsize",
            &maxsize.to_string(),
        ],
        url,
    );
    assert_server(&out, url);
    let n = producers * items;
    let sum = n * (n + 1) / 2;

    let tallies = consumers(&out);
    assert_eq!(tallies.len() as u64, consumers_n, "{out}");
    assert_eq!(tallies.iter().map(|t| t.0).sum::<u64>(), n, "{out}");
    assert_eq!(tallies.iter().map(|t| t.1).sum::<u64>(), sum, "{out}");
    let total = line(&out, "total: ");
    assert!(
        total.starts_with(&format!(
            "{n} items (expected {n}), sum {sum} (expected {sum}) in "
        )),
        "{out}"
    );
}

#[test]
fn consumes_every_item_once_with_its_embedded_server() {
    check(None, 2, 3, 100, 4);
}

#[test]
fn consumers_that_get_nothing_still_report() {
    // More consumers than items, and a queue of one: some consumers get
    // only their sentinel.
    check(None, 1, 4, 2, 1);
}

#[test]
fn consumes_every_item_once_against_a_separate_procshared() {
    let server = Procshared::start();
    check(Some(server.url()), 3, 2, 100, 8);
    // Again on the same long-lived server, unbounded this time: fresh objects.
    check(Some(server.url()), 2, 2, 50, 0);
    assert_eq!(server.objects(), Vec::<String>::new());
}
