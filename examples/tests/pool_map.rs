//! Runs the real `pool_map` binary: local worker processes and workers
//! started as separate commands, results in input order, a handler's error
//! for one item only, and a worker SIGKILLed mid-task whose task another
//! worker finishes once the lease runs out.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{assert_server, line, run, run_ok, KillOnDrop, Procshared, RUN_DEADLINE};

const EXE: &str = env!("CARGO_BIN_EXE_pool_map");

/// `NAME: WxH checksum C (worker W)` or `NAME: error: MESSAGE`, in order.
fn results(out: &str) -> Vec<(String, Result<String, String>)> {
    out.lines()
        .filter(|l| l.starts_with("photo-"))
        .map(|l| {
            let (name, rest) = l.split_once(": ").unwrap();
            let outcome = match rest.strip_prefix("error: ") {
                Some(e) => Err(e.to_owned()),
                None => {
                    let (_, w) = rest.split_once("(worker ").unwrap();
                    Ok(w.trim_end_matches(')').to_owned())
                }
            };
            (name.to_owned(), outcome)
        })
        .collect()
}

fn assert_in_order(out: &str, items: usize, corrupt: &[usize]) -> Vec<String> {
    let got = results(out);
    assert_eq!(got.len(), items, "{out}");
    let mut workers = Vec::new();
    for (i, (name, outcome)) in got.iter().enumerate() {
        if corrupt.contains(&i) {
            assert_eq!(name, &format!("photo-{i:03}.corrupt"), "{out}");
            let e = outcome.as_ref().unwrap_err();
            assert!(e.contains("cannot decode"), "{out}");
        } else {
            assert_eq!(name, &format!("photo-{i:03}.jpg"), "{out}");
            workers.push(
                outcome
                    .clone()
                    .unwrap_or_else(|e| panic!("{name}: {e}\n{out}")),
            );
        }
    }
    assert!(
        line(out, "done: ").starts_with(&format!(
            "{} ok, {} failed, 0 wrong",
            items - corrupt.len(),
            corrupt.len()
        )),
        "{out}"
    );
    workers
}

/// Starts `pool_map ARGS` in the background; its output arrives on the
/// receiver when it exits.
fn spawn(args: &[&str]) -> (KillOnDrop, mpsc::Receiver<(String, String)>) {
    let mut child = Command::new(EXE)
        .args(args)
        .env_remove("PROCSHARE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pool_map");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        let err_reader = std::thread::spawn(move || {
            let _ = err.read_to_string(&mut e);
            e
        });
        let _ = out.read_to_string(&mut o);
        let e = err_reader.join().unwrap_or_default();
        let _ = tx.send((o, e));
    });
    (KillOnDrop(child), rx)
}

/// Waits for a background `pool_map` to exit; returns (success, stdout, stderr).
fn finish(mut p: (KillOnDrop, mpsc::Receiver<(String, String)>)) -> (bool, String, String) {
    let (out, err) =
        p.1.recv_timeout(RUN_DEADLINE)
            .unwrap_or_else(|_| panic!("pool_map did not finish within {RUN_DEADLINE:?}"));
    let status = p.0 .0.wait().expect("wait for pool_map");
    (status.success(), out, err)
}

fn kill(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn results_in_order_and_an_error_for_corrupt_files_only_embedded() {
    let r = run(
        EXE,
        &["run", "--workers", "3", "--items", "20", "--corrupt", "2,7"],
        None,
    );
    assert!(r.status.success(), "{}", r.dump());
    assert_server(&r.stdout, None);
    let workers = assert_in_order(&r.stdout, 20, &[2, 7]);
    assert!(
        workers.iter().all(|w| w.starts_with("local-")),
        "{workers:?}"
    );
    assert!(r.stderr.contains("progress: 20/20"), "{}", r.dump());
}

#[test]
fn a_worker_started_as_a_separate_command_shares_the_work() {
    let server = Procshared::start();
    let url = server.url().to_owned();
    // The worker a user would start by hand, on this host or another.
    let outside = spawn(&[
        "worker", "--server", &url, "--pool", "thumbs", "--name", "outside",
    ]);
    let out = run_ok(
        EXE,
        &[
            "run",
            "--server",
            &url,
            "--pool",
            "thumbs",
            "--workers",
            "2",
            "--items",
            "30",
        ],
        None,
    );
    assert_server(&out, Some(&url));
    let workers = assert_in_order(&out, 30, &[]);
    // The pool was closed at the end of the run: the outside worker exits.
    let (ok, _, err) = finish(outside);
    assert!(ok, "{err}");
    let done: usize = line(&err, "worker outside: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        done,
        workers.iter().filter(|w| *w == "outside").count(),
        "{out}\n{err}"
    );

    // The pool outlives the run (it was named): its counts.
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let status = m.pool("thumbs").unwrap().status().unwrap();
    assert_eq!(
        (status.queued, status.running, status.done, status.failed),
        (0, 0, 30, 0)
    );
    assert!(status.closed);
}

#[test]
fn a_worker_killed_mid_task_has_its_task_finished_by_another() {
    let server = Procshared::start();
    let url = server.url().to_owned();
    let common = [
        "--server",
        url.as_str(),
        "--pool",
        "killed",
        "--lease",
        "1",
        "--hold",
        "photo-003.jpg",
    ];
    let worker = |name: &str| {
        let mut args = vec!["worker", "--name", name];
        args.extend(common);
        spawn(&args)
    };
    let mut doomed = worker("doomed");
    let caller = spawn(&[
        "run",
        "--server",
        &url,
        "--pool",
        "killed",
        "--workers",
        "0",
        "--items",
        "8",
    ]);
    // The doomed worker says (through the server) that it is running
    // photo-003 and will never finish it.
    let m = procshare::blocking::Manager::connect(&url).unwrap();
    let held = m.event("killed.held").unwrap();
    assert!(
        held.wait(Some(Duration::from_secs(60))).unwrap(),
        "the doomed worker never got photo-003"
    );
    let status = m.pool("killed").unwrap().status().unwrap();
    assert_eq!(status.running, 1, "{status:?}");
    kill(&mut doomed.0 .0);

    let rescuer = worker("rescuer");
    let (ok, out, err) = finish(caller);
    assert!(ok, "{out}\n{err}");
    let got = results(&out);
    assert_eq!(got.len(), 8, "{out}");
    assert_eq!(
        got[3],
        ("photo-003.jpg".to_owned(), Ok("rescuer".to_owned())),
        "{out}"
    );
    assert_in_order(&out, 8, &[]);
    let (ok, _, err) = finish(rescuer);
    assert!(ok, "{err}");
    let status = m.pool("killed").unwrap().status().unwrap();
    assert_eq!((status.done, status.failed, status.running), (8, 0, 0));
}
