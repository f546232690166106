//! Several real OS processes on the same objects.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cli_bin, cli_fails, cli_ok, read_line_within, wait_within, Server, DEADLINE};
use procshare::{Error, Manager};

/// Starts `procshare ARGS` without waiting for it.
fn spawn_cli(url: &str, args: &[&str]) -> std::process::Child {
    Command::new(cli_bin())
        .arg("--url")
        .arg(url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn procshare")
}

#[test]
fn concurrent_processes_lose_no_update() {
    let s = Server::start();
    let url = s.url();
    let n = 16;
    let mut children: Vec<_> = (0..n)
        .flat_map(|i| {
            [
                spawn_cli(&url, &["value", "add", "hits", "1"]),
                spawn_cli(&url, &["list", "push", "log", &i.to_string()]),
                spawn_cli(&url, &["dict", "set", "seen", &i.to_string(), "true"]),
            ]
        })
        .collect();
    for c in &mut children {
        let status = wait_within(c, DEADLINE).expect("finished in time");
        assert!(status.success());
    }
    assert_eq!(cli_ok(&url, &["value", "get", "hits"]), n.to_string());
    assert_eq!(cli_ok(&url, &["list", "len", "log"]), n.to_string());
    assert_eq!(cli_ok(&url, &["dict", "len", "seen"]), n.to_string());
    let mut items: Vec<i64> =
        serde_json::from_str(&cli_ok(&url, &["list", "items", "log"])).unwrap();
    items.sort();
    assert_eq!(items, (0..n).collect::<Vec<i64>>());
}

#[tokio::test]
async fn a_lock_held_by_another_process() {
    let s = Server::start();
    let url = s.url();
    // Process A takes the lock and holds it.
    let mut holder = spawn_cli(&url, &["lock", "acquire", "res", "--hold", "600"]);
    let token = read_line_within(holder.stdout.take().unwrap(), DEADLINE).expect("token printed");
    assert_eq!(token.trim(), "1");
    assert_eq!(cli_ok(&url, &["lock", "status", "res"]), "locked");

    // Process B times out (exit 3); this process may not release A's lock.
    let err = cli_fails(&url, &["lock", "acquire", "res", "--timeout", "0.2"], 3);
    assert!(err.contains("timeout"), "{err}");
    let m = Manager::connect(&url).await.unwrap();
    let lock = m.lock("res").await.unwrap();
    assert!(matches!(lock.release().await, Err(Error::NotOwner(_))));

    // Process C waits on the server; when A is told to stop it releases
    // the lock on its way out, and C gets it with the next token.
    let mut waiter = spawn_cli(&url, &["lock", "acquire", "res", "--timeout", "60"]);
    common::signal(holder.id(), "TERM");
    let status = wait_within(&mut holder, DEADLINE).expect("holder exits");
    assert!(status.success(), "holder released cleanly");
    let status = wait_within(&mut waiter, DEADLINE).expect("waiter exits");
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut waiter.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out.trim(), "2");
    assert!(!lock.locked().await.unwrap());
    assert!(lock.acquire_timeout(Duration::from_secs(5)).await.unwrap() > 2);
}
