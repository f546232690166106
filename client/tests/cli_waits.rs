//! The CLI commands for objects people wait on — queue, event, semaphore,
//! barrier, condition, lock, describe — against a real `procshared`: output,
//! exit codes (0 ok, 1 error, 2 usage, 3 a wait that ran out), and waits
//! between `procshare` processes only. A test learns that processes are
//! blocked from `procshare describe`, never by sleeping.

mod common;

use std::collections::BTreeSet;

use common::{
    cli, cli_fails, cli_ok, read_line_within, signal, spawn_cli_child, stderr_of, stdout_of,
    wait_for_field_cli, wait_for_waiters_cli, wait_within, CliGroup, Server, DEADLINE,
};
use serde_json::json;

fn describe(url: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&cli_ok(url, &["describe", name])).expect("describe prints JSON")
}

// ---------------------------------------------------------------- queue

#[test]
fn queue_put_get_len_and_timeouts() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(cli_ok(&url, &["queue", "len", "q"]), "0");
    cli_ok(&url, &["queue", "put", "q", "1"]);
    cli_ok(&url, &["queue", "put", "q", "\"two\""]);
    cli_ok(&url, &["queue", "put", "q", r#"{"x": [3, null]}"#]);
    assert_eq!(cli_ok(&url, &["queue", "len", "q"]), "3");
    assert_eq!(cli_ok(&url, &["queue", "get", "q"]), "1");
    assert_eq!(
        cli_ok(&url, &["queue", "get", "q", "--timeout", "5"]),
        "\"two\""
    );
    assert_eq!(cli_ok(&url, &["queue", "get", "q"]), r#"{"x":[3,null]}"#);
    assert_eq!(cli_ok(&url, &["queue", "len", "q"]), "0");

    // Nothing to get within the timeout: exit 3, Empty.
    let err = cli_fails(&url, &["queue", "get", "q", "--timeout", "0.1"], 3);
    assert!(err.contains("empty"), "{err}");
    let err = cli_fails(&url, &["queue", "get", "q", "--timeout", "0"], 3);
    assert!(err.contains("empty"), "{err}");

    // A bounded queue: no room within the timeout is exit 3, Full.
    cli_ok(&url, &["queue", "put", "bq", "1", "--maxsize", "1"]);
    let err = cli_fails(&url, &["queue", "put", "bq", "2", "--timeout", "0.1"], 3);
    assert!(err.contains("full"), "{err}");
    let d = describe(&url, "bq");
    assert_eq!(d["kind"], "queue");
    assert_eq!(
        (d["len"].as_u64(), d["maxsize"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(d["waiters"], 0);
    // An existing queue keeps its maxsize.
    cli_fails(
        &url,
        &[
            "queue",
            "put",
            "bq",
            "2",
            "--maxsize",
            "5",
            "--timeout",
            "0.1",
        ],
        3,
    );
    assert_eq!(cli_ok(&url, &["queue", "len", "bq"]), "1");

    // Bad input: exit 2, nothing put.
    let err = cli_fails(&url, &["queue", "put", "q", "not json"], 2);
    assert!(err.contains("JSON"), "{err}");
    cli_fails(&url, &["queue", "get", "q", "--timeout", "-1"], 2);
    cli_fails(&url, &["queue", "put", "q"], 2);
    assert_eq!(cli_ok(&url, &["queue", "len", "q"]), "0");
}

#[test]
fn queue_get_waits_for_a_put_from_another_process() {
    let s = Server::start();
    let url = s.url();
    let mut getters = CliGroup::new(&url);
    getters.spawn(&["queue", "get", "q"]);
    let d = wait_for_waiters_cli(&url, "q", 1);
    assert_eq!(d["len"], 0);
    assert!(getters.exited_now().is_none());
    cli_ok(&url, &["queue", "put", "q", "[1,2]"]);
    let (_, out) = getters.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "[1,2]");
    assert_eq!(wait_for_waiters_cli(&url, "q", 0)["len"], 0);
}

#[test]
fn queue_put_waits_for_room_made_by_another_process() {
    let s = Server::start();
    let url = s.url();
    cli_ok(&url, &["queue", "put", "q", "1", "--maxsize", "1"]);
    let mut putters = CliGroup::new(&url);
    putters.spawn(&["queue", "put", "q", "2", "--timeout", "600"]);
    assert_eq!(wait_for_waiters_cli(&url, "q", 1)["len"], 1);
    assert!(putters.exited_now().is_none());
    assert_eq!(cli_ok(&url, &["queue", "get", "q"]), "1");
    let (_, out) = putters.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(cli_ok(&url, &["queue", "get", "q"]), "2");
}

#[test]
fn queue_get_and_len_on_a_joinable_queue() {
    let s = Server::start();
    let url = s.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let jq = m.joinable_queue::<i64>("jq", 0).unwrap();
    jq.put(5).unwrap();
    assert_eq!(cli_ok(&url, &["queue", "len", "jq"]), "1");
    assert_eq!(cli_ok(&url, &["queue", "get", "jq"]), "5");
    jq.task_done().unwrap();
    jq.join_timeout(DEADLINE).unwrap();
    let d = describe(&url, "jq");
    assert_eq!(d["kind"], "joinable_queue");
    assert_eq!(d["unfinished"], 0);
}

/// `queue get` and `queue len` accept an existing JoinableQueue; `queue put`
/// should too.
#[test]
fn queue_put_onto_a_joinable_queue() {
    let s = Server::start();
    let url = s.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let jq = m.joinable_queue::<i64>("jq", 0).unwrap();
    cli_ok(&url, &["queue", "put", "jq", "7"]);
    assert_eq!(jq.get_nowait().unwrap(), 7);
    assert_eq!(describe(&url, "jq")["unfinished"], 1);
}

// ---------------------------------------------------------------- event

#[test]
fn event_set_clear_is_set_and_wait() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(cli_ok(&url, &["event", "is-set", "e"]), "false");
    let err = cli_fails(&url, &["event", "wait", "e", "--timeout", "0.1"], 3);
    assert!(err.contains("timeout"), "{err}");
    cli_ok(&url, &["event", "set", "e"]);
    assert_eq!(cli_ok(&url, &["event", "is-set", "e"]), "true");
    assert_eq!(cli_ok(&url, &["event", "wait", "e"]), "true");
    assert_eq!(
        cli_ok(&url, &["event", "wait", "e", "--timeout", "0"]),
        "true"
    );
    let d = describe(&url, "e");
    assert_eq!(
        (d["kind"].as_str(), d["is_set"].as_bool()),
        (Some("event"), Some(true))
    );
    cli_ok(&url, &["event", "clear", "e"]);
    assert_eq!(cli_ok(&url, &["event", "is-set", "e"]), "false");
    cli_fails(&url, &["event", "wait", "e", "--timeout", "0.1"], 3);
    cli_fails(&url, &["event", "wait", "e", "--timeout", "x"], 2);
}

#[test]
fn event_set_wakes_every_waiting_process() {
    let s = Server::start();
    let url = s.url();
    let mut waiters = CliGroup::new(&url);
    waiters.spawn_n(3, &["event", "wait", "go"]);
    waiters.spawn(&["event", "wait", "go", "--timeout", "600"]);
    let d = wait_for_waiters_cli(&url, "go", 4);
    assert_eq!(d["is_set"], false);
    assert!(waiters.exited_now().is_none());
    cli_ok(&url, &["event", "set", "go"]);
    for (_, out) in waiters.exits(4) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "true");
    }
    wait_for_waiters_cli(&url, "go", 0);
}

// ------------------------------------------------------------ semaphore

#[test]
fn semaphore_acquire_release_and_value() {
    let s = Server::start();
    let url = s.url();
    // release and value need an existing semaphore.
    let err = cli_fails(&url, &["semaphore", "value", "s"], 1);
    assert!(err.contains("not found"), "{err}");
    cli_fails(&url, &["semaphore", "release", "s"], 1);
    // acquire creates it with --value, takes a permit, gives it back.
    assert_eq!(
        cli_ok(&url, &["semaphore", "acquire", "s", "--value", "2"]),
        "acquired"
    );
    assert_eq!(cli_ok(&url, &["semaphore", "value", "s"]), "2");
    // An existing semaphore keeps its value.
    cli_ok(
        &url,
        &[
            "semaphore",
            "acquire",
            "s",
            "--value",
            "9",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(cli_ok(&url, &["semaphore", "value", "s"]), "2");
    cli_ok(&url, &["semaphore", "release", "s"]);
    assert_eq!(cli_ok(&url, &["semaphore", "value", "s"]), "3");
    let d = describe(&url, "s");
    assert_eq!(
        (d["kind"].as_str(), d["value"].as_u64()),
        (Some("semaphore"), Some(3))
    );

    // No permit within the timeout: exit 3.
    let err = cli_fails(
        &url,
        &[
            "semaphore",
            "acquire",
            "zero",
            "--value",
            "0",
            "--timeout",
            "0.1",
        ],
        3,
    );
    assert!(err.contains("timeout"), "{err}");
    assert_eq!(cli_ok(&url, &["semaphore", "value", "zero"]), "0");

    // Usage errors: exit 2.
    cli_fails(&url, &["semaphore", "acquire", "s"], 2);
    cli_fails(&url, &["semaphore", "acquire", "s", "--value", "-1"], 2);
    cli_fails(
        &url,
        &["semaphore", "acquire", "s", "--value", "1", "--hold", "-1"],
        2,
    );
}

#[test]
fn semaphore_acquire_waits_for_a_release_from_another_process() {
    let s = Server::start();
    let url = s.url();
    // A holder process keeps the only permit.
    let mut holder = spawn_cli_child(
        &url,
        &["semaphore", "acquire", "s", "--value", "1", "--hold", "600"],
    );
    let line = read_line_within(holder.stdout.take().unwrap(), DEADLINE);
    assert_eq!(line.as_deref().map(str::trim), Some("acquired"));
    assert_eq!(cli_ok(&url, &["semaphore", "value", "s"]), "0");
    cli_fails(
        &url,
        &[
            "semaphore",
            "acquire",
            "s",
            "--value",
            "1",
            "--timeout",
            "0.1",
        ],
        3,
    );

    // A waiter process blocks until the holder leaves (SIGTERM: it releases).
    let mut waiters = CliGroup::new(&url);
    waiters.spawn(&["semaphore", "acquire", "s", "--value", "1"]);
    assert_eq!(wait_for_waiters_cli(&url, "s", 1)["value"], 0);
    assert!(waiters.exited_now().is_none());
    signal(holder.id(), "TERM");
    assert!(wait_within(&mut holder, DEADLINE).unwrap().success());
    let (_, out) = waiters.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "acquired");
    assert_eq!(cli_ok(&url, &["semaphore", "value", "s"]), "1");
}

#[test]
fn semaphore_release_from_another_process_frees_a_waiter() {
    let s = Server::start();
    let url = s.url();
    let mut waiters = CliGroup::new(&url);
    waiters.spawn(&["semaphore", "acquire", "s", "--value", "0"]);
    wait_for_waiters_cli(&url, "s", 1);
    cli_ok(&url, &["semaphore", "release", "s"]);
    let (_, out) = waiters.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "acquired");
    assert_eq!(cli_ok(&url, &["semaphore", "value", "s"]), "1");
}

#[test]
fn semaphore_release_and_value_on_a_bounded_semaphore() {
    let s = Server::start();
    let url = s.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let b = m.bounded_semaphore("b", 1).unwrap();
    assert_eq!(cli_ok(&url, &["semaphore", "value", "b"]), "1");
    let err = cli_fails(&url, &["semaphore", "release", "b"], 1);
    assert!(err.contains("invalid argument"), "{err}");
    assert!(b.try_acquire().unwrap());
    assert_eq!(cli_ok(&url, &["semaphore", "value", "b"]), "0");
    cli_ok(&url, &["semaphore", "release", "b"]);
    assert_eq!(b.value().unwrap(), 1);
    assert_eq!(describe(&url, "b")["kind"], "bounded_semaphore");
}

/// `semaphore release` and `semaphore value` accept an existing
/// BoundedSemaphore; `semaphore acquire` should too.
#[test]
fn semaphore_acquire_on_a_bounded_semaphore() {
    let s = Server::start();
    let url = s.url();
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let b = m.bounded_semaphore("b", 1).unwrap();
    assert_eq!(
        cli_ok(&url, &["semaphore", "acquire", "b", "--value", "1"]),
        "acquired"
    );
    assert_eq!(b.value().unwrap(), 1);
}

// -------------------------------------------------------------- barrier

#[test]
fn barrier_wait_indexes_timeouts_and_broken() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(
        cli_ok(&url, &["barrier", "wait", "one", "--parties", "1"]),
        "0"
    );
    assert_eq!(
        cli_ok(&url, &["barrier", "wait", "one", "--parties", "1"]),
        "0"
    );
    let err = cli_fails(&url, &["barrier", "wait", "none", "--parties", "0"], 1);
    assert!(err.contains("invalid argument"), "{err}");
    cli_fails(&url, &["barrier", "wait", "b"], 2);

    // Three processes pass together with indexes 0, 1, 2.
    let mut procs = CliGroup::new(&url);
    procs.spawn_n(2, &["barrier", "wait", "b3", "--parties", "3"]);
    let d = wait_for_field_cli(&url, "b3", "n_waiting", 2);
    assert_eq!(
        (d["parties"].as_u64(), d["broken"].as_bool()),
        (Some(3), Some(false))
    );
    assert!(procs.exited_now().is_none());
    let last = cli_ok(&url, &["barrier", "wait", "b3", "--parties", "3"]);
    assert_eq!(last, "2");
    let mut indexes = BTreeSet::from([last]);
    for (_, out) in procs.exits(2) {
        assert!(out.status.success(), "{out:?}");
        indexes.insert(stdout_of(&out));
    }
    assert_eq!(indexes, ["0", "1", "2"].map(String::from).into());

    // Alone with a timeout: exit 3, and the barrier is broken for the next.
    let err = cli_fails(
        &url,
        &[
            "barrier",
            "wait",
            "b2",
            "--parties",
            "2",
            "--timeout",
            "0.1",
        ],
        3,
    );
    assert!(err.contains("broken barrier"), "{err}");
    let err = cli_fails(
        &url,
        &["barrier", "wait", "b2", "--parties", "2", "--timeout", "5"],
        1,
    );
    assert!(err.contains("broken barrier"), "{err}");
    let d = describe(&url, "b2");
    assert_eq!(d["kind"], "barrier");
    assert_eq!(
        (d["broken"].as_bool(), d["n_waiting"].as_u64()),
        (Some(true), Some(0))
    );
}

// ------------------------------------------------------------ condition

#[test]
fn condition_wait_and_notify_between_processes() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(cli_ok(&url, &["condition", "notify", "c"]), "0");
    assert_eq!(cli_ok(&url, &["condition", "notify", "c", "--all"]), "0");
    let err = cli_fails(&url, &["condition", "wait", "c", "--timeout", "0.1"], 3);
    assert!(err.contains("timeout"), "{err}");
    cli_fails(&url, &["condition", "notify", "c", "--n", "2", "--all"], 2);
    let d = describe(&url, "c");
    assert_eq!(d["kind"], "condition");
    assert_eq!(
        (d["waiters"].as_u64(), d["locked"].as_bool()),
        (Some(0), Some(false))
    );

    let mut waiters = CliGroup::new(&url);
    waiters.spawn_n(4, &["condition", "wait", "c"]);
    wait_for_waiters_cli(&url, "c", 4);
    assert_eq!(cli_ok(&url, &["condition", "notify", "c", "--n", "0"]), "0");
    assert_eq!(cli_ok(&url, &["condition", "notify", "c", "--n", "2"]), "2");
    for (_, out) in waiters.exits(2) {
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout_of(&out), "true");
    }
    wait_for_waiters_cli(&url, "c", 2);
    assert!(waiters.exited_now().is_none(), "two still wait");
    assert_eq!(cli_ok(&url, &["condition", "notify", "c"]), "1");
    let (_, out) = waiters.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(cli_ok(&url, &["condition", "notify", "c", "--all"]), "1");
    let (_, out) = waiters.next_exit();
    assert_eq!(stdout_of(&out), "true");
    assert_eq!(wait_for_waiters_cli(&url, "c", 0)["locked"], false);
}

// ----------------------------------------------------------------- lock

#[test]
fn lock_acquire_waits_for_a_holder_process() {
    let s = Server::start();
    let url = s.url();
    let mut holder = spawn_cli_child(&url, &["lock", "acquire", "L", "--hold", "600"]);
    let token = read_line_within(holder.stdout.take().unwrap(), DEADLINE).expect("token");
    assert_eq!(token.trim(), "1");
    let err = cli_fails(&url, &["lock", "acquire", "L", "--timeout", "0.1"], 3);
    assert!(err.contains("timeout"), "{err}");
    let mut waiters = CliGroup::new(&url);
    waiters.spawn(&["lock", "acquire", "L"]);
    let d = wait_for_waiters_cli(&url, "L", 1);
    assert_eq!(
        (d["kind"].as_str(), d["locked"].as_bool()),
        (Some("lock"), Some(true))
    );
    assert!(waiters.exited_now().is_none());
    signal(holder.id(), "TERM");
    assert!(wait_within(&mut holder, DEADLINE).unwrap().success());
    let (_, out) = waiters.next_exit();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out), "2");
    assert_eq!(cli_ok(&url, &["lock", "status", "L"]), "unlocked");
}

// ------------------------------------------------------------- describe

#[test]
fn describe_every_kind_and_errors() {
    let s = Server::start();
    let url = s.url();
    let err = cli_fails(&url, &["describe", "nothing"], 1);
    assert!(
        err.contains("not found") && err.contains("nothing"),
        "{err}"
    );
    cli_fails(&url, &["describe"], 2);

    let m = procshare::blocking::Manager::connect(&url).unwrap();
    m.rlock("r").unwrap();
    m.array::<u8>("a", 3).unwrap();
    m.namespace("ns").unwrap();
    m.pipe::<i64>("p").unwrap();
    cli_ok(&url, &["dict", "set", "d", "1", "2"]);
    cli_ok(&url, &["list", "push", "l", "1"]);
    cli_ok(&url, &["value", "set", "v", "1"]);
    cli_ok(&url, &["queue", "put", "q", "1"]);
    cli_ok(&url, &["event", "set", "e"]);
    for (name, kind) in [
        ("r", "rlock"),
        ("a", "array"),
        ("ns", "namespace"),
        ("p", "pipe"),
        ("d", "dict"),
        ("l", "list"),
        ("v", "value"),
        ("q", "queue"),
        ("e", "event"),
    ] {
        let d = describe(&url, name);
        assert_eq!(d["kind"], kind, "{name}: {d}");
        assert_eq!(d["waiters"], 0, "{name}: {d}");
    }
    assert_eq!(describe(&url, "q")["len"], 1);
    assert_eq!(describe(&url, "e")["is_set"], true);

    // One line of JSON.
    let out = cli(&url, &["describe", "p"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).lines().count(), 1);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["kind"], json!("pipe"));
}

// ---------------------------------------------------------- wrong kinds

#[test]
fn wait_commands_on_the_wrong_kind_fail_with_both_kinds_named() {
    let s = Server::start();
    let url = s.url();
    cli_ok(&url, &["dict", "set", "d", "1", "2"]);
    for args in [
        &["queue", "put", "d", "1"][..],
        &["queue", "get", "d", "--timeout", "0.1"],
        &["queue", "len", "d"],
        &["event", "set", "d"],
        &["event", "wait", "d", "--timeout", "0.1"],
        &["semaphore", "acquire", "d", "--value", "1"],
        &["semaphore", "value", "d"],
        &["barrier", "wait", "d", "--parties", "2"],
        &["condition", "notify", "d"],
        &["lock", "acquire", "d", "--timeout", "0.1"],
    ] {
        let err = cli_fails(&url, args, 1);
        assert!(err.contains("dict"), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    assert_eq!(cli_ok(&url, &["dict", "items", "d"]), "[[1,2]]");
}
