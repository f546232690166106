//! The `procshare` CLI against a real `procshared`: output formats and exit
//! codes (0 ok, 1 error, 2 usage, 3 timeout).

mod common;

use common::{cli_fails, cli_ok, Server};

#[test]
fn ping_ls_delete() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(
        cli_ok(&url, &["ping"]),
        format!("ok {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(cli_ok(&url, &["ls"]), "");
    cli_ok(&url, &["dict", "set", "d", "1", "2"]);
    cli_ok(&url, &["list", "push", "l", "1"]);
    cli_ok(&url, &["value", "set", "v", "1"]);
    cli_ok(&url, &["lock", "status", "k"]);
    assert_eq!(cli_ok(&url, &["ls"]), "dict d\nlock k\nlist l\nvalue v");
    cli_ok(&url, &["delete", "d"]);
    assert_eq!(cli_ok(&url, &["ls"]), "lock k\nlist l\nvalue v");
    let err = cli_fails(&url, &["delete", "d"], 1);
    assert!(err.starts_with("error: ") && err.contains("\"d\""), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
}

#[test]
fn dict_commands() {
    let s = Server::start();
    let url = s.url();
    cli_ok(
        &url,
        &["dict", "set", "d", "\"a\"", "{\"x\": [1, 2.5, null]}"],
    );
    cli_ok(&url, &["dict", "set", "d", "7", "true"]);
    assert_eq!(
        cli_ok(&url, &["dict", "get", "d", "\"a\""]),
        r#"{"x":[1,2.5,null]}"#
    );
    assert_eq!(cli_ok(&url, &["dict", "len", "d"]), "2");
    assert_eq!(
        cli_ok(&url, &["dict", "items", "d"]),
        r#"[["a",{"x":[1,2.5,null]}],[7,true]]"#
    );
    assert_eq!(cli_ok(&url, &["dict", "del", "d", "7"]), "true");
    let err = cli_fails(&url, &["dict", "get", "d", "7"], 1);
    assert!(err.contains("not found"), "{err}");
    cli_fails(&url, &["dict", "del", "d", "7"], 1);
    assert_eq!(cli_ok(&url, &["dict", "len", "d"]), "1");
}

#[test]
fn list_commands() {
    let s = Server::start();
    let url = s.url();
    for v in ["1", "\"two\"", "[3]"] {
        cli_ok(&url, &["list", "push", "l", v]);
    }
    assert_eq!(cli_ok(&url, &["list", "len", "l"]), "3");
    assert_eq!(cli_ok(&url, &["list", "get", "l", "0"]), "1");
    assert_eq!(cli_ok(&url, &["list", "get", "l", "-1"]), "[3]");
    assert_eq!(cli_ok(&url, &["list", "items", "l"]), r#"[1,"two",[3]]"#);
    assert_eq!(cli_ok(&url, &["list", "pop", "l"]), "[3]");
    let err = cli_fails(&url, &["list", "get", "l", "5"], 1);
    assert!(err.contains("out of range"), "{err}");
    cli_ok(&url, &["list", "pop", "l"]);
    cli_ok(&url, &["list", "pop", "l"]);
    cli_fails(&url, &["list", "pop", "l"], 1);
}

#[test]
fn value_commands() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(cli_ok(&url, &["value", "get", "v"]), "null");
    assert_eq!(cli_ok(&url, &["value", "add", "v", "5"]), "5");
    assert_eq!(cli_ok(&url, &["value", "add", "v", "-7"]), "-2");
    assert_eq!(cli_ok(&url, &["value", "add", "v", "0.5"]), "-1.5");
    cli_ok(&url, &["value", "set", "v", "\"text\""]);
    assert_eq!(cli_ok(&url, &["value", "get", "v"]), "\"text\"");
    let err = cli_fails(&url, &["value", "add", "v", "1"], 1);
    assert!(err.contains("not a number"), "{err}");
}

#[test]
fn lock_commands() {
    let s = Server::start();
    let url = s.url();
    assert_eq!(cli_ok(&url, &["lock", "status", "k"]), "unlocked");
    assert_eq!(cli_ok(&url, &["lock", "acquire", "k"]), "1");
    assert_eq!(
        cli_ok(
            &url,
            &["lock", "acquire", "k", "--hold", "0.01", "--timeout", "5"]
        ),
        "2"
    );
    assert_eq!(cli_ok(&url, &["lock", "status", "k"]), "unlocked");
}

#[test]
fn errors_and_exit_codes() {
    let s = Server::start();
    let url = s.url();
    // Malformed JSON is a usage error: exit 2, nothing stored.
    let err = cli_fails(&url, &["dict", "set", "d", "unquoted", "1"], 2);
    assert!(err.contains("JSON"), "{err}");
    cli_fails(&url, &["value", "set", "v", "{nope"], 2);
    cli_fails(&url, &["value", "add", "v", "18446744073709551615"], 2);
    cli_fails(&url, &["lock", "acquire", "k", "--timeout", "-1"], 2);
    // Unknown commands and missing arguments: exit 2.
    cli_fails(&url, &["frobnicate"], 2);
    cli_fails(&url, &["dict", "get", "d"], 2);
    cli_fails(&url, &["list", "get", "l", "notanumber"], 2);
    assert_eq!(cli_ok(&url, &["ls"]), "", "no usage error created anything");
    // Wrong kind: exit 1, one line naming both kinds.
    cli_ok(&url, &["dict", "set", "d", "1", "1"]);
    let err = cli_fails(&url, &["list", "len", "d"], 1);
    assert!(err.contains("dict") && err.contains("list"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
    // A bad name: exit 1 with the reason.
    let long = "n".repeat(300);
    let err = cli_fails(&url, &["dict", "len", &long], 1);
    assert!(err.contains("limit"), "{err}");
    // An unreachable server: exit 1.
    drop(s);
    let err = cli_fails(&url, &["ping"], 1);
    assert!(err.contains("unavailable"), "{err}");
}

#[test]
fn url_comes_from_the_environment() {
    let s = Server::start();
    let out = std::process::Command::new(common::cli_bin())
        .arg("ping")
        .env("PROCSHARE_URL", s.url())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok "));
}

#[test]
fn stats_and_snapshot() {
    let dir = std::env::temp_dir().join(format!("procshare-cli-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = Server::start_with(&["--data-dir", dir.to_str().unwrap(), "--fsync", "always"]);
    let url = s.url();
    cli_ok(&url, &["dict", "set", "d", "1", "2"]);
    let stats: serde_json::Value = serde_json::from_str(&cli_ok(&url, &["stats"])).unwrap();
    assert_eq!(stats["objects"], 1);
    assert_eq!(stats["fsync"], "always");
    assert_eq!(
        stats["sessions"], 1,
        "the stats command's own session: {stats}"
    );
    assert!(stats["log_bytes"].as_u64().unwrap() > 0, "{stats}");
    let snap: serde_json::Value = serde_json::from_str(&cli_ok(&url, &["snapshot"])).unwrap();
    assert_eq!(snap["objects"], 1);
    let stats: serde_json::Value = serde_json::from_str(&cli_ok(&url, &["stats"])).unwrap();
    assert_eq!(
        stats["log_bytes"], 0,
        "the snapshot covers the whole log: {stats}"
    );
    assert_eq!(stats["last_snapshot_seq"], snap["seq"]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);

    // Without a data dir: stats work, a snapshot is a clear error.
    let s = Server::start();
    let stats: serde_json::Value = serde_json::from_str(&cli_ok(&s.url(), &["stats"])).unwrap();
    assert!(stats["data_dir"].is_null());
    let err = cli_fails(&s.url(), &["snapshot"], 1);
    assert!(err.contains("--data-dir"), "{err}");
}
