//! One server per data directory: a second `serve` on the same `--data-dir` exits at once naming the
//! first, changes nothing, and the query commands keep working beside the running server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `alarm-center serve` on `dir`, its log on a pipe.
fn serve(dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("ALARM_CENTER_API__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_second_server_on_the_same_data_directory_exits_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_alarm-center");
    let mut first = serve(dir.path());
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("accepting devices"));
    assert!(started, "the first server did not start");
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let began = Instant::now();
    let mut second = serve(dir.path());
    // It must exit at once; a second server that runs is killed after 10 s and fails the test.
    while second.try_wait().unwrap().is_none() && began.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if second.try_wait().unwrap().is_none() {
        let _ = second.kill();
    }
    let second = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second server ran: {stderr}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "it did not exit at once"
    );
    assert!(
        stderr.contains(&format!("is in use by process {}", first.id())),
        "{stderr}"
    );
    // It stopped before opening the store: it wrote nothing there.
    assert!(!stderr.contains("store opened"), "{stderr}");
    // The first server still runs, and a query command works beside it.
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first server stopped"
    );
    let devices = Command::new(bin)
        .args(["devices", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        devices.status.success(),
        "{}",
        String::from_utf8_lossy(&devices.stderr)
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(first.id().to_string())
        .status();
    assert!(first.wait().unwrap().success());
}
