//! Tests of `config.rs`: how flags, the file and the environment resolve.

use super::*;

fn settings(argv: &[&str], env_token: Option<&str>) -> anyhow::Result<Settings> {
    let m = Args::command()
        .try_get_matches_from(std::iter::once("procshared").chain(argv.iter().copied()))?;
    let args = Args::from_arg_matches(&m)?;
    resolve_with_env(args, &m, env_token.map(str::to_owned))
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "procshared-config-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn defaults_are_loopback_tcp_without_auth() {
    let s = settings(&[], None).unwrap();
    assert_eq!(s.listen, Some(DEFAULT_LISTEN.parse().unwrap()));
    assert!(s.unix.is_none() && s.token.is_none() && s.tls.is_none());
    assert_eq!(s.unix_mode, 0o600);
    assert_eq!(
        s.keepalive_interval,
        Some(service::DEFAULT_KEEPALIVE_INTERVAL)
    );
}

#[test]
fn unix_alone_means_no_tcp() {
    let s = settings(&["--unix", "/tmp/x.sock"], None).unwrap();
    assert_eq!(s.listen, None);
    let s = settings(&["--unix", "/tmp/x.sock", "--listen", "127.0.0.1:0"], None).unwrap();
    assert!(s.listen.is_some() && s.unix.is_some());
}

#[test]
fn a_non_loopback_address_needs_auth_or_insecure() {
    let e = settings(&["--listen", "0.0.0.0:0"], None).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("refusing to listen on 0.0.0.0:0"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(settings(&["--listen", "0.0.0.0:0", "--insecure"], None).is_ok());
    let s = settings(&["--listen", "[::]:0"], Some("tok")).unwrap();
    assert!(s.authenticates());
    assert_eq!(s.warnings().len(), 1, "clear-text warning");
    // IPv6 loopback is loopback.
    assert!(settings(&["--listen", "[::1]:0"], None).is_ok());
}

#[test]
fn flags_beat_the_file_and_the_file_beats_defaults() {
    let d = temp_dir();
    std::fs::write(d.join("token"), "from-file\n").unwrap();
    let f = d.join("procshared.toml");
    std::fs::write(
        &f,
        "listen = \"127.0.0.2:7000\"\nunix = \"s.sock\"\nunix_mode = 0o660\n\
         token_file = \"token\"\nkeepalive_interval = 0\nmax_message_bytes = 1000\n",
    )
    .unwrap();
    let cfg = f.to_str().unwrap();
    let s = settings(&["--config", cfg], None).unwrap();
    assert_eq!(s.listen, Some("127.0.0.2:7000".parse().unwrap()));
    assert_eq!(
        s.unix.as_deref(),
        Some(d.join("s.sock").as_path()),
        "relative to the file"
    );
    assert_eq!(s.unix_mode, 0o660);
    assert!(s.token.as_ref().unwrap().matches(b"from-file"));
    assert_eq!(s.keepalive_interval, None);
    assert_eq!(s.max_message_bytes, 1000);
    let s = settings(
        &[
            "--config",
            cfg,
            "--listen",
            "127.0.0.3:1",
            "--unix-mode",
            "0600",
        ],
        None,
    )
    .unwrap();
    assert_eq!(s.listen, Some("127.0.0.3:1".parse().unwrap()));
    assert_eq!(s.unix_mode, 0o600);
}

#[test]
fn the_example_config_shows_every_key_and_only_real_ones() {
    let text = include_str!("../../deploy/procshared.toml");
    // Uncomment every `#key = value` line: the result must parse and set
    // every option.
    let uncommented: Vec<&str> = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect();
    let f = FileConfig::parse(&uncommented.join("\n")).unwrap();
    let FileConfig {
        listen,
        unix,
        unix_mode,
        token_file,
        tls_cert,
        tls_key,
        client_ca,
        insecure,
        keepalive_interval,
        keepalive_timeout,
        max_message_bytes,
        log_level,
        log_format,
        data_dir,
        fsync,
        snapshot_log_bytes,
        max_lease_secs,
        max_sessions,
        session_answer_bytes,
        max_kept_answer_bytes,
        max_waiters,
        max_value_bytes,
        max_objects,
        max_queue_len,
        max_name_bytes,
    } = f;
    assert!(listen.is_some() && unix.is_some() && unix_mode.is_some());
    assert!(token_file.is_some() && tls_cert.is_some() && tls_key.is_some());
    assert!(client_ca.is_some() && insecure.is_some() && log_level.is_some());
    assert!(keepalive_interval.is_some() && keepalive_timeout.is_some());
    assert!(max_message_bytes.is_some());
    assert!(data_dir.is_some() && snapshot_log_bytes.is_some());
    assert!(max_lease_secs.is_some() && max_sessions.is_some() && max_waiters.is_some());
    assert!(max_value_bytes.is_some() && max_objects.is_some() && max_queue_len.is_some());
    assert!(max_name_bytes.is_some() && session_answer_bytes.is_some());
    assert!(max_kept_answer_bytes.is_some());
    assert!(fsync.is_some_and(|p| p.parse::<FsyncPolicy>().is_ok()));
    assert!(log_format.is_some_and(|f| f.parse::<LogFormat>().is_ok()));
}

#[test]
fn bad_files_are_clear_errors() {
    let d = temp_dir();
    let f = d.join("bad.toml");
    std::fs::write(&f, "listen = \"127.0.0.1:1\"\nlisten_typo = 1\n").unwrap();
    let e = format!(
        "{:#}",
        settings(&["--config", f.to_str().unwrap()], None).unwrap_err()
    );
    assert!(
        e.contains("bad.toml") && e.contains("line 2") && e.contains("listen_typo"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let e = settings(&["--config", "/nonexistent.toml"], None).unwrap_err();
    assert!(format!("{e:#}").contains("/nonexistent.toml"));
    let e = settings(&["--tls-cert", "/x"], None).unwrap_err();
    assert!(e.to_string().contains("--tls-key"), "{e}");
    let e = settings(&["--client-ca", "/x"], None).unwrap_err();
    assert!(e.to_string().contains("--tls-cert"), "{e}");
    assert!(settings(&["--unix-mode", "999"], None).is_err());
    assert!(settings(&["--keepalive-timeout", "0"], None).is_err());
}

#[test]
fn the_log_format_comes_from_the_flag_then_the_file_and_is_checked() {
    assert_eq!(settings(&[], None).unwrap().log_format, LogFormat::Text);
    let s = settings(&["--log-format", "json"], None).unwrap();
    assert_eq!(s.log_format, LogFormat::Json);

    let d = temp_dir();
    let f = d.join("log-format.toml");
    std::fs::write(&f, "log_format = \"json\"\n").unwrap();
    let path = f.to_str().unwrap();
    let s = settings(&["--config", path], None).unwrap();
    assert_eq!(s.log_format, LogFormat::Json);
    let s = settings(&["--config", path, "--log-format", "text"], None).unwrap();
    assert_eq!(s.log_format, LogFormat::Text, "the flag beats the file");

    std::fs::write(&f, "log_format = \"yaml\"\n").unwrap();
    let msg = format!("{:#}", settings(&["--config", path], None).unwrap_err());
    assert!(
        msg.contains("log_format") && msg.contains("expected text or json"),
        "{msg}"
    );
    let msg = settings(&["--log-format", "yaml"], None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("--log-format"), "{msg}");
}

#[test]
fn session_only_connections_are_served_directly_unless_asked_not_to() {
    let s = settings(&[], None).unwrap();
    assert!(s.direct_sessions && s.server_config().direct_sessions);
    let s = settings(&["--sessions-via-tonic"], None).unwrap();
    assert!(!s.direct_sessions && !s.server_config().direct_sessions);
}
