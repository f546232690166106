//! The cancelled-wait guarantee (SPEC §2): a blocking call whose client goes
//! away is cancelled and leaves nothing behind — no lost queue item, no
//! stuck permit, no lock taken, no notify swallowed. The client is a real
//! `procshare` process, killed with SIGKILL while the server has it blocked;
//! the test then waits until the server counts no waiter before checking.

mod common;

use std::time::Duration;

use common::{signal, stdout_of, wait_for_waiters, CliGroup, Server};
use procshare::{Error, Manager};

async fn manager(s: &Server) -> Manager {
    Manager::connect(&s.url()).await.expect("connect")
}

/// Kills process `i` of the group with SIGKILL and checks it died of it.
fn kill9(group: &CliGroup, i: usize) {
    signal(group.pid(i), "KILL");
}

fn assert_killed(out: &std::process::Output) {
    assert_eq!(out.status.code(), None, "killed by a signal: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_queue_getter_takes_no_item() {
    let s = Server::start();
    let m = manager(&s).await;
    let q = m.queue::<String>("q", 0).await.unwrap();
    let mut getters = CliGroup::new(&s.url());
    getters.spawn_n(3, &["queue", "get", "q"]);
    wait_for_waiters(&m, "q", 3).await;
    for i in 0..3 {
        kill9(&getters, i);
    }
    for (_, out) in getters.exits(3) {
        assert_killed(&out);
    }
    wait_for_waiters(&m, "q", 0).await;

    q.put("only".into()).await.unwrap();
    assert_eq!(q.qsize().await.unwrap(), 1, "no dead getter took it");
    assert_eq!(q.get_nowait().await.unwrap(), "only");

    // With a live getter behind a killed one, the live one gets the item.
    let dead = getters.spawn(&["queue", "get", "q"]);
    wait_for_waiters(&m, "q", 1).await;
    let live = getters.spawn(&["queue", "get", "q"]);
    wait_for_waiters(&m, "q", 2).await;
    kill9(&getters, dead);
    let (i, out) = getters.next_exit();
    assert_eq!(i, dead);
    assert_killed(&out);
    wait_for_waiters(&m, "q", 1).await;
    q.put("next".into()).await.unwrap();
    let (i, out) = getters.next_exit();
    assert_eq!(i, live);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "\"next\"");
    assert!(q.empty().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_queue_putter_puts_nothing() {
    let s = Server::start();
    let m = manager(&s).await;
    let q = m.queue::<i64>("full", 1).await.unwrap();
    q.put(1).await.unwrap();
    let mut putters = CliGroup::new(&s.url());
    putters.spawn(&["queue", "put", "full", "2"]);
    wait_for_waiters(&m, "full", 1).await;
    kill9(&putters, 0);
    assert_killed(&putters.next_exit().1);
    wait_for_waiters(&m, "full", 0).await;
    assert_eq!(q.get().await.unwrap(), 1);
    assert!(matches!(q.get_nowait().await, Err(Error::Empty(_))));
    // The room freed is really free.
    q.put_nowait(3).await.unwrap();
    assert_eq!(q.get_nowait().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_semaphore_waiter_holds_no_permit() {
    let s = Server::start();
    let m = manager(&s).await;
    let sem = m.semaphore("s", 0).await.unwrap();
    let mut waiters = CliGroup::new(&s.url());
    waiters.spawn_n(2, &["semaphore", "acquire", "s", "--value", "0"]);
    wait_for_waiters(&m, "s", 2).await;
    kill9(&waiters, 0);
    kill9(&waiters, 1);
    for (_, out) in waiters.exits(2) {
        assert_killed(&out);
    }
    let d = wait_for_waiters(&m, "s", 0).await;
    assert_eq!(d["value"], 0);
    assert_eq!(d["holders"], 0, "{d}");

    sem.release().await.unwrap();
    assert_eq!(sem.value().await.unwrap(), 1, "the permit was not taken");
    assert!(sem.try_acquire().await.unwrap());
    assert!(!sem.try_acquire().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_lock_waiter_does_not_take_the_lock() {
    let s = Server::start();
    let m = manager(&s).await;
    let l = m.lock("L").await.unwrap();
    let token = l.acquire().await.unwrap();
    let mut waiters = CliGroup::new(&s.url());
    waiters.spawn(&["lock", "acquire", "L"]);
    wait_for_waiters(&m, "L", 1).await;
    kill9(&waiters, 0);
    assert_killed(&waiters.next_exit().1);
    wait_for_waiters(&m, "L", 0).await;

    l.release().await.unwrap();
    assert!(!l.locked().await.unwrap(), "nobody took it on release");
    let other = manager(&s).await.lock("L").await.unwrap();
    let next = other
        .try_acquire()
        .await
        .unwrap()
        .expect("the lock is free for the next client");
    assert_eq!(next, token + 1, "no acquire happened in between");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_condition_waiter_is_skipped_by_notify() {
    let s = Server::start();
    let m = manager(&s).await;
    let c = m.condition("c", None).await.unwrap();
    let mut waiters = CliGroup::new(&s.url());
    let dead = waiters.spawn(&["condition", "wait", "c"]);
    wait_for_waiters(&m, "c", 1).await;
    let live = waiters.spawn(&["condition", "wait", "c"]);
    wait_for_waiters(&m, "c", 2).await;
    kill9(&waiters, dead);
    let (i, out) = waiters.next_exit();
    assert_eq!(i, dead);
    assert_killed(&out);
    let d = wait_for_waiters(&m, "c", 1).await;
    assert_eq!(d["locked"], false, "the dead waiter left the lock free");

    // notify(1) goes to the live waiter, not to the dead one.
    c.acquire().await.unwrap();
    assert_eq!(c.notify(1).await.unwrap(), 1);
    c.release().await.unwrap();
    let (i, out) = waiters.next_exit();
    assert_eq!(i, live);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "true");
    c.acquire().await.unwrap();
    assert_eq!(c.notify(1).await.unwrap(), 0);
    c.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_event_waiter_is_forgotten() {
    let s = Server::start();
    let m = manager(&s).await;
    let e = m.event("e").await.unwrap();
    let mut waiters = CliGroup::new(&s.url());
    waiters.spawn_n(2, &["event", "wait", "e"]);
    wait_for_waiters(&m, "e", 2).await;
    kill9(&waiters, 0);
    assert_killed(&waiters.next_exit().1);
    wait_for_waiters(&m, "e", 1).await;
    e.set().await.unwrap();
    let (i, out) = waiters.next_exit();
    assert_eq!(i, 1);
    assert_eq!(stdout_of(&out), "true");
    wait_for_waiters(&m, "e", 0).await;
    assert!(e.wait(Some(Duration::ZERO)).await.unwrap());
}

/// A waiter that was notified, then killed while it waits to re-acquire the
/// lock (the notifier still holds it), never returns from `wait`: its notify
/// should go to the next waiter, as condition.rs promises ("one that was
/// notified just as it was cancelled hands the notify on").
#[tokio::test(flavor = "multi_thread")]
async fn a_notified_waiter_killed_before_it_returns_hands_the_notify_on() {
    let s = Server::start();
    let m = manager(&s).await;
    // Bound to a named lock, so that `describe("L")` shows who waits for it.
    let c = m.condition("c", Some("L")).await.unwrap();
    let mut waiters = CliGroup::new(&s.url());
    let first = waiters.spawn(&["condition", "wait", "c"]);
    wait_for_waiters(&m, "c", 1).await;
    let second = waiters.spawn(&["condition", "wait", "c"]);
    wait_for_waiters(&m, "c", 2).await;

    c.acquire().await.unwrap();
    assert_eq!(c.notify(1).await.unwrap(), 1);
    // The first waiter was woken and now waits for the lock we hold.
    wait_for_waiters(&m, "L", 1).await;
    kill9(&waiters, first);
    let (i, out) = waiters.next_exit();
    assert_eq!(i, first);
    assert_killed(&out);
    // Its notify went on to the second waiter, which left the condition's
    // queue and now waits for the lock in its place.
    wait_for_waiters(&m, "c", 0).await;
    wait_for_waiters(&m, "L", 1).await;
    c.release().await.unwrap();

    // Nobody returned from that notify: the second waiter should have it.
    let (i, out) = waiters.next_exit();
    assert_eq!(i, second);
    assert_eq!(stdout_of(&out), "true");
}
