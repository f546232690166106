//! Lock, RLock, Semaphore, BoundedSemaphore, Condition and Event semantics
//! against a real `procshared`, after CPython's `_TestLock`,
//! `_TestSemaphore`, `_TestCondition` and `_TestEvent`. The other parties
//! (holders, waiters, notifiers) are real `procshare` processes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    cli_ok, finish_child, read_line_within, signal, spawn_cli_child, stdout_of, wait_for_waiters,
    CliGroup, Server, DEADLINE,
};
use procshare::{Error, Manager};

const SHORT: Duration = Duration::from_millis(200);

async fn manager(s: &Server) -> Manager {
    Manager::connect(&s.url()).await.expect("connect")
}

/// Starts a `procshare` process and waits for its first line (a holder
/// announcing what it took).
fn holder(url: &str, args: &[&str]) -> (std::process::Child, String) {
    let mut child = spawn_cli_child(url, args);
    let line = read_line_within(child.stdout.take().unwrap(), DEADLINE)
        .unwrap_or_else(|| panic!("procshare {args:?} printed nothing"));
    (child, line.trim().to_owned())
}

// ----------------------------------------------------------------- Lock

/// test_lock: acquire, no re-entry for a plain lock, release, and a release
/// of an unlocked lock is an error.
#[tokio::test(flavor = "multi_thread")]
async fn lock_acquire_release() {
    let s = Server::start();
    let m = manager(&s).await;
    let l = m.lock("l").await.unwrap();
    assert!(!l.locked().await.unwrap());
    let t1 = l.acquire().await.unwrap();
    assert!(l.locked().await.unwrap());
    // Not reentrant, even for its owner.
    assert_eq!(l.try_acquire().await.unwrap(), None);
    assert!(matches!(
        l.acquire_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));
    l.release().await.unwrap();
    assert!(!l.locked().await.unwrap());
    assert!(matches!(l.release().await, Err(Error::NotOwner(_))));
    let t2 = l.try_acquire().await.unwrap().expect("free");
    assert!(t2 > t1, "fencing tokens grow: {t1} then {t2}");
    l.release().await.unwrap();
    // A zero timeout takes a free lock.
    let t3 = l.acquire_timeout(Duration::ZERO).await.unwrap();
    assert!(t3 > t2);
    assert!(matches!(
        l.acquire_timeout(Duration::ZERO).await,
        Err(Error::Timeout(_))
    ));
    l.release().await.unwrap();
}

/// A lock held by another process: this client can neither take nor
/// release it; a waiter here gets it when the holder lets go.
#[tokio::test(flavor = "multi_thread")]
async fn lock_held_by_another_process() {
    let s = Server::start();
    let url = s.url();
    let m = manager(&s).await;
    let (mut child, token) = holder(&url, &["lock", "acquire", "L", "--hold", "600"]);
    let token: u64 = token.parse().unwrap();
    let l = m.lock("L").await.unwrap();
    assert!(l.locked().await.unwrap());
    assert_eq!(l.try_acquire().await.unwrap(), None);
    assert!(matches!(
        l.acquire_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));
    assert!(matches!(l.release().await, Err(Error::NotOwner(_))));
    assert!(
        l.locked().await.unwrap(),
        "a refused release changes nothing"
    );

    // A waiter here, blocked on the server until the holder leaves.
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.acquire().await }
    });
    wait_for_waiters(&m, "L", 1).await;
    assert!(!waiter.is_finished());
    signal(child.id(), "TERM");
    let status = common::wait_within(&mut child, DEADLINE).expect("holder exits");
    assert!(status.success(), "the holder releases on SIGTERM");
    let mine = waiter.await.unwrap().unwrap();
    assert!(mine > token);

    // Now another client is the outsider.
    let other = manager(&s).await;
    let ol = other.lock("L").await.unwrap();
    assert!(matches!(ol.release().await, Err(Error::NotOwner(_))));
    assert_eq!(ol.try_acquire().await.unwrap(), None);
    l.release().await.unwrap();
    assert!(ol.try_acquire().await.unwrap().is_some());
    // ... and a CLI process times out on it (exit 3).
    common::cli_fails(&url, &["lock", "acquire", "L", "--timeout", "0.1"], 3);
    ol.release().await.unwrap();
}

// ---------------------------------------------------------------- RLock

/// test_rlock: the owner re-enters and must release as many times; another
/// task of the same client, or another client, is not the owner.
#[tokio::test(flavor = "multi_thread")]
async fn rlock_reentry_and_per_task_ownership() {
    let s = Server::start();
    let m = manager(&s).await;
    let r = m.rlock("r").await.unwrap();
    let t = r.acquire().await.unwrap();
    assert_eq!(r.acquire().await.unwrap(), t, "re-entry keeps the token");
    assert_eq!(r.try_acquire().await.unwrap(), Some(t));
    assert_eq!(m.describe("r").await.unwrap()["depth"], 3);

    let worker = r.with_task("worker");
    assert_eq!(worker.task(), "worker");
    assert_eq!(worker.try_acquire().await.unwrap(), None);
    assert!(matches!(
        worker.acquire_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));
    assert!(matches!(worker.release().await, Err(Error::NotOwner(_))));
    let other = manager(&s).await.rlock("r").await.unwrap();
    assert_eq!(other.try_acquire().await.unwrap(), None);
    assert!(matches!(other.release().await, Err(Error::NotOwner(_))));

    // A blocked acquire of the other task waits for the last release.
    let blocked = tokio::spawn({
        let worker = worker.clone();
        async move { worker.acquire().await }
    });
    wait_for_waiters(&m, "r", 1).await;
    r.release().await.unwrap();
    r.release().await.unwrap();
    assert!(r.locked().await.unwrap(), "one level left");
    assert!(!blocked.is_finished());
    r.release().await.unwrap();
    let wt = blocked.await.unwrap().unwrap();
    assert!(wt > t);
    assert!(matches!(r.release().await, Err(Error::NotOwner(_))));
    worker.release().await.unwrap();
    assert!(!r.locked().await.unwrap());
    assert!(matches!(worker.release().await, Err(Error::NotOwner(_))));
}

// ------------------------------------------------------------ Semaphore

/// test_semaphore: counting down, try_acquire at zero, a process blocked in
/// acquire released by a release here; a plain semaphore may grow.
#[tokio::test(flavor = "multi_thread")]
async fn semaphore_counts_and_a_release_frees_a_blocked_process() {
    let s = Server::start();
    let m = manager(&s).await;
    let sem = m.semaphore("s", 2).await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 2);
    sem.acquire().await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 1);
    assert!(sem.try_acquire().await.unwrap());
    assert_eq!(sem.value().await.unwrap(), 0);
    assert!(!sem.try_acquire().await.unwrap());
    assert!(matches!(
        sem.acquire_timeout(SHORT).await,
        Err(Error::Timeout(_))
    ));
    assert!(matches!(
        sem.acquire_timeout(Duration::ZERO).await,
        Err(Error::Timeout(_))
    ));
    assert_eq!(sem.value().await.unwrap(), 0);
    sem.release().await.unwrap();
    sem.acquire_timeout(Duration::ZERO).await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 0);

    // A process waits for a permit (and gives it back right after).
    let mut p = CliGroup::new(&s.url());
    p.spawn(&["semaphore", "acquire", "s", "--value", "2"]);
    let d = wait_for_waiters(&m, "s", 1).await;
    assert_eq!(d["value"], 0);
    assert!(p.exited_now().is_none());
    sem.release().await.unwrap();
    let (_, out) = p.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "acquired");
    assert_eq!(sem.value().await.unwrap(), 1);

    sem.release().await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 2);
    // Python's Semaphore may be released above its start value.
    sem.release().await.unwrap();
    sem.release_n(2).await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 5);
}

/// Permits limit how many processes hold at once: with 2 permits and 4
/// processes, 2 hold and 2 wait; each release lets exactly one more in.
#[tokio::test(flavor = "multi_thread")]
async fn semaphore_contention_between_processes() {
    let s = Server::start();
    let url = s.url();
    let m = manager(&s).await;
    let sem = m.semaphore("slots", 2).await.unwrap();
    let args = [
        "semaphore",
        "acquire",
        "slots",
        "--value",
        "2",
        "--hold",
        "600",
    ];
    let (mut a, la) = holder(&url, &args);
    let (mut b, lb) = holder(&url, &args);
    assert_eq!((la.as_str(), lb.as_str()), ("acquired", "acquired"));
    let mut c = spawn_cli_child(&url, &args);
    let mut d = spawn_cli_child(&url, &args);
    let desc = wait_for_waiters(&m, "slots", 2).await;
    assert_eq!(desc["value"], 0);

    // One holder leaves: exactly one waiter gets in.
    signal(a.id(), "TERM");
    assert!(common::wait_within(&mut a, DEADLINE).unwrap().success());
    let desc = wait_for_waiters(&m, "slots", 1).await;
    assert_eq!(desc["value"], 0);
    signal(b.id(), "TERM");
    assert!(common::wait_within(&mut b, DEADLINE).unwrap().success());
    assert_eq!(wait_for_waiters(&m, "slots", 0).await["value"], 0);
    for child in [&mut c, &mut d] {
        let line = read_line_within(child.stdout.take().unwrap(), DEADLINE);
        assert_eq!(line.as_deref().map(str::trim), Some("acquired"));
        signal(child.id(), "TERM");
        assert!(common::wait_within(child, DEADLINE).unwrap().success());
    }
    assert_eq!(sem.value().await.unwrap(), 2, "every permit came back");
}

/// Python's `release(n)` refuses n < 1; releasing zero permits must at
/// least not release one.
#[tokio::test(flavor = "multi_thread")]
async fn semaphore_release_of_zero_permits_releases_none() {
    let s = Server::start();
    let m = manager(&s).await;
    let sem = m.semaphore("s", 0).await.unwrap();
    match sem.release_n(0).await {
        Ok(()) | Err(Error::InvalidArgument(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    assert_eq!(sem.value().await.unwrap(), 0);
    let b = m.bounded_semaphore("b", 1).await.unwrap();
    b.acquire().await.unwrap();
    let _ = b.release_n(0).await;
    assert_eq!(b.value().await.unwrap(), 0);
}

/// release_n(n) lets n blocked processes in at once.
#[tokio::test(flavor = "multi_thread")]
async fn semaphore_release_n_frees_n_blocked_processes() {
    let s = Server::start();
    let m = manager(&s).await;
    let sem = m.semaphore("s", 0).await.unwrap();
    let mut procs = CliGroup::new(&s.url());
    procs.spawn_n(
        3,
        &["semaphore", "acquire", "s", "--value", "0", "--hold", "600"],
    );
    wait_for_waiters(&m, "s", 3).await;
    sem.release_n(2).await.unwrap();
    let d = wait_for_waiters(&m, "s", 1).await;
    assert_eq!(d["value"], 0, "two permits, two takers: {d}");
    assert!(procs.exited_now().is_none(), "the holders hold");
    sem.release().await.unwrap();
    wait_for_waiters(&m, "s", 0).await;
    for i in 0..3 {
        signal(procs.pid(i), "TERM");
    }
    for (_, out) in procs.exits(3) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "acquired");
    }
    assert_eq!(sem.value().await.unwrap(), 3);
}

/// test_bounded_semaphore: a release above the start value is refused and
/// changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn bounded_semaphore_refuses_release_past_its_start() {
    let s = Server::start();
    let m = manager(&s).await;
    let b = m.bounded_semaphore("b", 2).await.unwrap();
    assert!(matches!(b.release().await, Err(Error::InvalidArgument(_))));
    assert_eq!(b.value().await.unwrap(), 2);
    b.acquire().await.unwrap();
    assert!(matches!(
        b.release_n(2).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(b.value().await.unwrap(), 1, "all or nothing");
    b.release().await.unwrap();
    assert!(matches!(b.release().await, Err(Error::InvalidArgument(_))));
    assert_eq!(b.value().await.unwrap(), 2);
    assert_eq!(m.describe("b").await.unwrap()["bound"], 2);
    assert!(matches!(
        m.semaphore("b", 2).await,
        Err(Error::WrongKind(_))
    ));
    // The CLI refuses it too (exit 1), and the value stays.
    let err = common::cli_fails(&s.url(), &["semaphore", "release", "b"], 1);
    assert!(err.contains("invalid argument"), "{err}");
    assert_eq!(cli_ok(&s.url(), &["semaphore", "value", "b"]), "2");
}

/// The blocking facade of a semaphore, against a holder process.
#[test]
fn blocking_semaphore_with_a_holder_process() {
    let s = Server::start();
    let url = s.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let sem = m.semaphore("one", 1).unwrap();
    let (mut child, line) = holder(
        &url,
        &[
            "semaphore",
            "acquire",
            "one",
            "--value",
            "1",
            "--hold",
            "600",
        ],
    );
    assert_eq!(line, "acquired");
    assert_eq!(sem.value().unwrap(), 0);
    assert!(!sem.try_acquire().unwrap());
    assert!(matches!(sem.acquire_timeout(SHORT), Err(Error::Timeout(_))));
    signal(child.id(), "TERM");
    assert!(common::wait_within(&mut child, DEADLINE).unwrap().success());
    sem.acquire_timeout(DEADLINE).unwrap();
    assert_eq!(sem.value().unwrap(), 0);
    sem.release().unwrap();
    assert_eq!(sem.value().unwrap(), 1);
}

// ------------------------------------------------------------ Condition

/// test_notify / test_notify_n / test_notify_all: notify(n) wakes exactly n
/// of the waiting processes, the others keep waiting.
#[tokio::test(flavor = "multi_thread")]
async fn condition_notify_n_wakes_exactly_n_processes() {
    let s = Server::start();
    let m = manager(&s).await;
    let c = m.condition("c", None).await.unwrap();
    const K: u64 = 5;
    let mut waiters = CliGroup::new(&s.url());
    waiters.spawn_n(K as usize, &["condition", "wait", "c"]);
    wait_for_waiters(&m, "c", K).await;
    assert_eq!(c.n_waiting().await.unwrap(), K);
    assert!(waiters.exited_now().is_none());

    c.acquire().await.unwrap();
    assert_eq!(c.notify(2).await.unwrap(), 2);
    c.release().await.unwrap();
    let mut woken = BTreeSet::new();
    for (i, out) in waiters.exits(2) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "true");
        woken.insert(i);
    }
    assert_eq!(woken.len(), 2);
    wait_for_waiters(&m, "c", K - 2).await;
    assert!(waiters.exited_now().is_none(), "only two were notified");

    c.acquire().await.unwrap();
    assert_eq!(c.notify(1).await.unwrap(), 1);
    c.release().await.unwrap();
    let (i, out) = waiters.next_exit();
    assert!(out.status.success() && !woken.contains(&i));
    wait_for_waiters(&m, "c", K - 3).await;
    assert!(waiters.exited_now().is_none());

    c.acquire().await.unwrap();
    assert_eq!(c.notify_all().await.unwrap(), K - 3);
    c.release().await.unwrap();
    for (_, out) in waiters.exits((K - 3) as usize) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "true");
    }
    wait_for_waiters(&m, "c", 0).await;
    c.acquire().await.unwrap();
    assert_eq!(c.notify(3).await.unwrap(), 0, "nobody left to wake");
    assert_eq!(c.notify_all().await.unwrap(), 0);
    c.release().await.unwrap();
}

/// test_timeout / test_wait_result: a wait that runs out returns false and
/// comes back holding the lock at its full depth; wait and notify need the
/// lock.
#[tokio::test(flavor = "multi_thread")]
async fn condition_wait_timeout_and_ownership() {
    let s = Server::start();
    let m = manager(&s).await;
    let c = m.condition("c", None).await.unwrap();
    assert!(matches!(c.wait(Some(SHORT)).await, Err(Error::NotOwner(_))));
    assert!(matches!(c.notify(1).await, Err(Error::NotOwner(_))));
    assert!(matches!(c.notify_all().await, Err(Error::NotOwner(_))));
    assert!(matches!(c.release().await, Err(Error::NotOwner(_))));

    c.acquire().await.unwrap();
    c.acquire().await.unwrap();
    assert!(!c.wait(Some(SHORT)).await.unwrap());
    assert!(!c.wait(Some(Duration::ZERO)).await.unwrap());
    let d = m.describe("c").await.unwrap();
    assert_eq!(
        (d["locked"].as_bool(), d["depth"].as_u64()),
        (Some(true), Some(2))
    );
    // Another task of this client is not the owner.
    let other = c.with_task("other");
    assert!(matches!(
        other.wait(Some(SHORT)).await,
        Err(Error::NotOwner(_))
    ));
    assert!(matches!(other.notify(1).await, Err(Error::NotOwner(_))));
    c.release().await.unwrap();
    c.release().await.unwrap();
    assert!(matches!(c.release().await, Err(Error::NotOwner(_))));

    // A waiting process times out the same way (exit 3) and leaves the
    // lock free.
    let out = common::cli(&s.url(), &["condition", "wait", "c", "--timeout", "0.1"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(m.describe("c").await.unwrap()["locked"], false);
}

/// test_wait_result: a wait notified by another process returns true,
/// holding the lock again.
#[tokio::test(flavor = "multi_thread")]
async fn condition_wait_notified_by_another_process() {
    let s = Server::start();
    let m = manager(&s).await;
    let c = m.condition("c", None).await.unwrap();
    let waiter = tokio::spawn({
        let c = c.clone();
        async move {
            c.acquire().await?;
            let notified = c.wait(Some(DEADLINE)).await?;
            let held = c.release().await;
            held.map(|()| notified)
        }
    });
    wait_for_waiters(&m, "c", 1).await;
    assert_eq!(cli_ok(&s.url(), &["condition", "notify", "c"]), "1");
    assert!(waiter.await.unwrap().unwrap(), "notified, not timed out");
    assert_eq!(cli_ok(&s.url(), &["condition", "notify", "c"]), "0");
}

/// test_waitfor / test_waitfor_timeout: wait_for re-checks a predicate on a
/// shared value after each notify from another process.
#[tokio::test(flavor = "multi_thread")]
async fn condition_wait_for_a_predicate_on_a_shared_value() {
    let s = Server::start();
    let url = s.url();
    let m = manager(&s).await;
    let c = m.condition("cond", None).await.unwrap();
    let state = m.value::<i64>("state", &0).await.unwrap();

    // The notifier: four processes bump the value, four notify.
    let notifier = std::thread::spawn({
        let url = url.clone();
        move || {
            for _ in 0..4 {
                cli_ok(&url, &["value", "add", "state", "1"]);
                cli_ok(&url, &["condition", "notify", "cond"]);
            }
        }
    });
    c.acquire().await.unwrap();
    let st = &state;
    let ok = c
        .wait_for(
            move || async move { Ok(st.get().await? == 4) },
            Some(DEADLINE),
        )
        .await
        .unwrap();
    assert!(ok);
    assert_eq!(state.get().await.unwrap(), 4);
    c.release().await.unwrap();
    notifier.join().unwrap();

    // A predicate that stays false: false after the timeout, lock held.
    c.acquire().await.unwrap();
    let ok = c
        .wait_for(move || async move { Ok(st.get().await? == 5) }, Some(SHORT))
        .await
        .unwrap();
    assert!(!ok);
    c.release().await.unwrap();
    assert!(matches!(c.release().await, Err(Error::NotOwner(_))));
}

/// A condition bound to a named Lock shares that lock: holding the lock is
/// holding the condition.
#[tokio::test(flavor = "multi_thread")]
async fn condition_bound_to_a_named_lock() {
    let s = Server::start();
    let m = manager(&s).await;
    let l = m.lock("L").await.unwrap();
    let c = m.condition("c", Some("L")).await.unwrap();
    assert_eq!(m.describe("c").await.unwrap()["lock"], "L");
    l.acquire().await.unwrap();
    assert_eq!(c.notify(1).await.unwrap(), 0);
    assert!(!c.wait(Some(Duration::ZERO)).await.unwrap());
    assert!(l.locked().await.unwrap(), "the wait gave the lock back");
    l.release().await.unwrap();
    assert!(matches!(c.notify(1).await, Err(Error::NotOwner(_))));
    c.acquire().await.unwrap();
    assert!(l.locked().await.unwrap());
    assert_eq!(l.try_acquire().await.unwrap(), None);
    c.release().await.unwrap();
    assert!(!l.locked().await.unwrap());
    // A name that is not a lock cannot be bound.
    m.event("e").await.unwrap();
    assert!(matches!(
        m.condition("c2", Some("e")).await,
        Err(Error::WrongKind(_))
    ));
}

/// The blocking facade of a condition: notified by a CLI process.
#[test]
fn blocking_condition_wait_for_with_a_notifier_process() {
    let s = Server::start();
    let url = s.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let c = m.condition("bc", None).unwrap();
    let flag = m.value::<bool>("flag", &false).unwrap();
    let notifier = std::thread::spawn({
        let url = url.clone();
        move || {
            cli_ok(&url, &["value", "set", "flag", "true"]);
            cli_ok(&url, &["condition", "notify", "bc", "--all"]);
        }
    });
    c.acquire().unwrap();
    assert!(c.wait_for(|| flag.get(), Some(DEADLINE)).unwrap());
    c.release().unwrap();
    notifier.join().unwrap();
    c.acquire().unwrap();
    assert!(!c.wait(Some(SHORT)).unwrap());
    assert_eq!(c.notify_all().unwrap(), 0);
    c.release().unwrap();
}

// ---------------------------------------------------------------- Event

/// test_event: wait returns false on timeout, true once set (at once while
/// set), and clear resets.
#[tokio::test(flavor = "multi_thread")]
async fn event_wait_set_and_clear() {
    let s = Server::start();
    let m = manager(&s).await;
    let e = m.event("e").await.unwrap();
    assert!(!e.is_set().await.unwrap());
    assert!(!e.wait(Some(Duration::ZERO)).await.unwrap());
    assert!(!e.wait(Some(SHORT)).await.unwrap());
    e.set().await.unwrap();
    assert!(e.is_set().await.unwrap());
    assert!(e.wait(None).await.unwrap());
    assert!(e.wait(Some(SHORT)).await.unwrap());
    assert!(e.wait(Some(Duration::ZERO)).await.unwrap());
    e.set().await.unwrap();
    assert!(e.is_set().await.unwrap(), "set twice is still set");
    e.clear().await.unwrap();
    assert!(!e.is_set().await.unwrap());
    assert!(!e.wait(Some(SHORT)).await.unwrap());
    assert_eq!(wait_for_waiters(&m, "e", 0).await["is_set"], false);

    // Set by another process while this one waits.
    let waiter = tokio::spawn({
        let e = e.clone();
        async move { e.wait(None).await }
    });
    wait_for_waiters(&m, "e", 1).await;
    cli_ok(&s.url(), &["event", "set", "e"]);
    assert!(waiter.await.unwrap().unwrap());
}

/// One set wakes every waiting process; even a set followed at once by a
/// clear wakes them all with true.
#[tokio::test(flavor = "multi_thread")]
async fn event_set_wakes_every_waiting_process() {
    let s = Server::start();
    let m = manager(&s).await;
    let e = m.event("go").await.unwrap();
    let mut waiters = CliGroup::new(&s.url());
    waiters.spawn_n(4, &["event", "wait", "go"]);
    wait_for_waiters(&m, "go", 4).await;
    assert!(waiters.exited_now().is_none());
    e.set().await.unwrap();
    for (_, out) in waiters.exits(4) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "true");
    }
    wait_for_waiters(&m, "go", 0).await;

    // set + clear: the waiters of that moment were woken.
    e.clear().await.unwrap();
    waiters.spawn_n(3, &["event", "wait", "go", "--timeout", "600"]);
    wait_for_waiters(&m, "go", 3).await;
    e.set().await.unwrap();
    e.clear().await.unwrap();
    for (_, out) in waiters.exits(3) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "true");
    }
    assert!(!e.is_set().await.unwrap());
    // A waiter that comes after the clear waits again: it times out.
    let out = finish_child(spawn_cli_child(
        &s.url(),
        &["event", "wait", "go", "--timeout", "0.1"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}
