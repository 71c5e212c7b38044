//! What `alarm-center serve` says at start, as a user sees it: the start-up block, busy ports that name
//! what to change and leave the data directory untouched, listen addresses as people write them, and
//! errors that say their cause once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::exit_within;

/// Runs `alarm-center` with `args` until it exits (killed, and the test fails, after 60 s); returns
/// whether it succeeded and its standard error.
fn run_to_exit(args: &[&str], data_dir: &Path) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("ALARM_CENTER_LOG", "info")
        .env_remove("ALARM_CENTER_API__LISTEN")
        .env_remove("ALARM_CENTER_SERVER__LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stderr) = exit_within(
        child,
        &format!("alarm-center {args:?}"),
        Duration::from_secs(60),
    );
    (status.success(), stderr)
}

#[test]
fn a_busy_api_port_stops_the_start_and_leaves_no_data_directory() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, stderr) = run_to_exit(
        &["serve", "--listen", "127.0.0.1:0", "--api-listen", &port],
        &data,
    );
    assert!(!ok, "{stderr}");
    for needle in [
        "cannot listen for the web UI and API on 127.0.0.1:",
        "another alarm-center may be running",
        "--api-listen",
        "api.listen",
        "ALARM_CENTER_API__LISTEN",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!data.exists(), "the data directory was created:\n{stderr}");
    assert!(!stderr.contains("internal"), "{stderr}");
}

#[test]
fn a_busy_device_port_names_the_flag_key_and_variable() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, stderr) = run_to_exit(
        &["serve", "--listen", &addr, "--api-listen", "127.0.0.1:0"],
        &data,
    );
    assert!(!ok, "{stderr}");
    for needle in [
        "cannot listen for devices on",
        "--listen",
        "server.listen",
        "ALARM_CENTER_SERVER__LISTEN",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!data.exists(), "the data directory was created:\n{stderr}");
}

#[test]
fn a_listen_address_that_is_not_one_shows_an_example() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = run_to_exit(&["serve", "--listen", "nowhere"], dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("--listen") && stderr.contains("localhost:15002"),
        "{stderr}"
    );
}

#[test]
fn an_error_says_its_cause_once() {
    // A data directory under a regular file cannot be created.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let (ok, stderr) = run_to_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ],
        &file.join("data"),
    );
    assert!(!ok, "{stderr}");
    assert_eq!(
        stderr.matches("os error").count(),
        1,
        "the cause is repeated:\n{stderr}"
    );
    assert!(!stderr.contains("internal"), "{stderr}");
}

#[test]
fn the_start_up_block_says_what_a_user_needs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[sinks.webhook]]\nname = \"notify\"\nurl = \"https://hooks.example/a?token=secret\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["serve", "--listen", ":0", "--api-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("ALARM_CENTER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut block = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = line.contains("web UI:");
        block.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = block.join("\n");
    let store = dir.path().join("data").join("alarm-center.db");
    for needle in [
        &format!("alarm-center {} is running", env!("CARGO_PKG_VERSION")),
        "devices:  0.0.0.0:",
        &format!("store:    {}", store.display()),
        "webhook:notify → POST https://hooks.example/a",
        "web UI:   http://127.0.0.1:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("secret"), "a secret was printed:\n{text}");
}
