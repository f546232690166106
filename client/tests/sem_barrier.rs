//! Barrier semantics against a real `procshared`, after CPython's
//! `_TestBarrier` (test_barrier, test_wait_return, test_abort, test_reset,
//! test_abort_and_reset, test_timeout, test_default_timeout,
//! test_single_thread). The other parties are real `procshare` processes.

mod common;

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use common::{stderr_of, stdout_of, wait_for_field, CliGroup, Server, DEADLINE};
use procshare::{Error, Manager};

const SHORT: Duration = Duration::from_millis(200);

async fn manager(s: &Server) -> Manager {
    Manager::connect(&s.url()).await.expect("connect")
}

/// A waiter process that was told the barrier broke under it (not by its
/// own timeout): exit 1 with "broken barrier".
fn assert_broken(out: &Output) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(err.contains("broken barrier"), "{err}");
}

/// test_barrier / test_wait_return: N-1 processes and this one pass
/// together with the distinct indexes 0..N, round after round.
#[tokio::test(flavor = "multi_thread")]
async fn parties_get_distinct_indexes_and_the_barrier_is_reusable() {
    let s = Server::start();
    let m = manager(&s).await;
    const N: u64 = 4;
    let b = m.barrier("b", N, None).await.unwrap();
    assert_eq!(b.parties().await.unwrap(), N);
    for round in 0..3 {
        let mut procs = CliGroup::new(&s.url());
        procs.spawn_n(
            (N - 1) as usize,
            &["barrier", "wait", "b", "--parties", &N.to_string()],
        );
        wait_for_field(&m, "b", "n_waiting", N - 1).await;
        assert_eq!(b.n_waiting().await.unwrap(), N - 1);
        assert!(
            procs.exited_now().is_none(),
            "round {round}: nobody passes early"
        );
        assert!(!b.broken().await.unwrap());

        // This one arrives last.
        let mine = b.wait().await.unwrap();
        let mut indexes = BTreeSet::from([mine]);
        for (_, out) in procs.exits((N - 1) as usize) {
            assert!(out.status.success(), "{out:?}");
            indexes.insert(stdout_of(&out).parse::<u64>().unwrap());
        }
        assert_eq!(indexes, (0..N).collect(), "round {round}");
        assert_eq!(mine, N - 1, "the last to arrive has the last index");
        assert_eq!(b.n_waiting().await.unwrap(), 0);
        assert!(!b.broken().await.unwrap());
    }
}

/// test_single_thread: a barrier of one passes at once, every time.
#[tokio::test(flavor = "multi_thread")]
async fn a_barrier_of_one_passes_at_once() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("one", 1, None).await.unwrap();
    for _ in 0..3 {
        assert_eq!(b.wait().await.unwrap(), 0);
        assert_eq!(b.wait_timeout(SHORT).await.unwrap(), 0);
    }
    assert!(matches!(
        m.barrier("zero", 0, None).await,
        Err(Error::InvalidArgument(_))
    ));
    // An existing barrier keeps its parties.
    assert_eq!(
        m.barrier("one", 5, None)
            .await
            .unwrap()
            .parties()
            .await
            .unwrap(),
        1
    );
}

/// test_timeout: a wait that runs out breaks the barrier for everyone
/// waiting; later waits fail at once until a reset.
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_breaks_the_barrier_for_every_waiting_process() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("b", 4, None).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    procs.spawn_n(2, &["barrier", "wait", "b", "--parties", "4"]);
    wait_for_field(&m, "b", "n_waiting", 2).await;

    assert!(matches!(
        b.wait_timeout(SHORT).await,
        Err(Error::BrokenBarrier(_))
    ));
    for (_, out) in procs.exits(2) {
        assert_broken(&out);
    }
    assert!(b.broken().await.unwrap());
    assert_eq!(b.n_waiting().await.unwrap(), 0);
    assert!(matches!(b.wait().await, Err(Error::BrokenBarrier(_))));
    procs.spawn(&["barrier", "wait", "b", "--parties", "4"]);
    assert_broken(&procs.next_exit().1);

    // Reset mends it: a full round passes again.
    b.reset().await.unwrap();
    assert!(!b.broken().await.unwrap());
    procs.spawn_n(3, &["barrier", "wait", "b", "--parties", "4"]);
    wait_for_field(&m, "b", "n_waiting", 3).await;
    assert_eq!(b.wait_timeout(DEADLINE).await.unwrap(), 3);
    for (_, out) in procs.exits(3) {
        assert!(out.status.success(), "{out:?}");
    }
}

/// A waiting process whose own --timeout runs out exits 3 and breaks the
/// barrier: the other waiting process learns it with exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_timeout_breaks_it_for_the_other_processes() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("b", 3, None).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    let patient = procs.spawn(&["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 1).await;
    let impatient = procs.spawn(&["barrier", "wait", "b", "--parties", "3", "--timeout", "0.2"]);
    let mut codes = std::collections::BTreeMap::new();
    for (i, out) in procs.exits(2) {
        assert!(stderr_of(&out).contains("broken barrier"), "{out:?}");
        codes.insert(i, out.status.code());
    }
    assert_eq!(codes[&impatient], Some(3), "its own timeout: exit 3");
    assert_eq!(codes[&patient], Some(1), "broken under it: exit 1");
    assert!(b.broken().await.unwrap());
}

/// test_default_timeout: the barrier's own timeout applies to a wait
/// without one.
#[tokio::test(flavor = "multi_thread")]
async fn the_barrier_default_timeout_applies() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("dt", 3, Some(SHORT)).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    procs.spawn(&["barrier", "wait", "dt", "--parties", "3"]);
    assert_broken(&procs.next_exit().1);
    assert!(b.broken().await.unwrap());
    b.reset().await.unwrap();
    assert!(matches!(b.wait().await, Err(Error::BrokenBarrier(_))));
    assert!(b.broken().await.unwrap());
}

/// test_abort: abort breaks the waiting processes and every later wait,
/// until a reset.
#[tokio::test(flavor = "multi_thread")]
async fn abort_breaks_current_and_later_waits_until_reset() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("b", 3, None).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    procs.spawn_n(2, &["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 2).await;
    b.abort().await.unwrap();
    for (_, out) in procs.exits(2) {
        assert_broken(&out);
    }
    assert!(b.broken().await.unwrap());
    assert!(matches!(
        b.wait_timeout(DEADLINE).await,
        Err(Error::BrokenBarrier(_))
    ));
    procs.spawn(&["barrier", "wait", "b", "--parties", "3"]);
    assert_broken(&procs.next_exit().1);

    // test_abort_and_reset: after a reset the barrier works again.
    b.reset().await.unwrap();
    assert!(!b.broken().await.unwrap());
    assert_eq!(b.n_waiting().await.unwrap(), 0);
    procs.spawn_n(2, &["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 2).await;
    assert_eq!(b.wait().await.unwrap(), 2);
    for (_, out) in procs.exits(2) {
        assert!(out.status.success(), "{out:?}");
    }
}

/// test_reset: a reset during a round breaks its waiters, but the barrier
/// is not left broken.
#[tokio::test(flavor = "multi_thread")]
async fn reset_during_a_round_breaks_its_waiters_only() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("b", 3, None).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    procs.spawn_n(2, &["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 2).await;
    b.reset().await.unwrap();
    for (_, out) in procs.exits(2) {
        assert_broken(&out);
    }
    assert!(!b.broken().await.unwrap());
    assert_eq!(b.n_waiting().await.unwrap(), 0);

    procs.spawn_n(2, &["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 2).await;
    assert_eq!(b.wait().await.unwrap(), 2);
    let mut indexes = BTreeSet::new();
    for (_, out) in procs.exits(2) {
        assert!(out.status.success(), "{out:?}");
        indexes.insert(stdout_of(&out));
    }
    assert_eq!(indexes, BTreeSet::from(["0".to_owned(), "1".to_owned()]));
}

/// A waiting process that dies breaks the round: better a clear
/// BrokenBarrier than a barrier that can never fill.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_process_that_dies_breaks_the_barrier() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.barrier("b", 3, None).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    let doomed = procs.spawn(&["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 1).await;
    procs.spawn(&["barrier", "wait", "b", "--parties", "3"]);
    wait_for_field(&m, "b", "n_waiting", 2).await;
    common::signal(procs.pid(doomed), "KILL");
    let mut seen = 0;
    for (i, out) in procs.exits(2) {
        if i == doomed {
            assert_eq!(out.status.code(), None, "killed by a signal");
        } else {
            assert_broken(&out);
        }
        seen += 1;
    }
    assert_eq!(seen, 2);
    assert!(b.broken().await.unwrap());
    assert!(matches!(b.wait().await, Err(Error::BrokenBarrier(_))));
}

/// The blocking facade: parties, n_waiting, broken, abort, reset.
#[test]
fn blocking_barrier() {
    let s = Server::start();
    let m = procshare::blocking::Manager::connect(&s.url()).unwrap();
    let b = m.barrier("bb", 2, None).unwrap();
    assert_eq!(b.parties().unwrap(), 2);
    let mut procs = CliGroup::new(&s.url());
    procs.spawn(&["barrier", "wait", "bb", "--parties", "2"]);
    common::wait_for_field_blocking(&m, "bb", "n_waiting", 1);
    assert_eq!(b.n_waiting().unwrap(), 1);
    assert_eq!(b.wait_timeout(DEADLINE).unwrap(), 1);
    let (_, out) = procs.next_exit();
    assert_eq!(stdout_of(&out), "0");
    b.abort().unwrap();
    assert!(b.broken().unwrap());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier(_))));
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(100)),
        Err(Error::BrokenBarrier(_))
    ));
}
