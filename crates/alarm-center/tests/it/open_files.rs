//! `alarm-center serve` raises its open-files limit: started under `ulimit -n 512` it would fail
//! accepts long before `server.max-connections` (1,100 slow connections stopped ingest in a test).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The soft and hard "Max open files" of a process.
fn open_files(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[test]
fn serve_raises_a_low_soft_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_alarm-center");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 512 && exec '{bin}' serve --listen 127.0.0.1:0 --data-dir '{}'",
            dir.path().display()
        ))
        .env("ALARM_CENTER_API__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Once the server accepts devices, its limit is set.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let started = stderr
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("accepting devices"));
    assert!(started, "the server did not start");
    let limits = open_files(pid).expect("limits of the server process");
    // Standard error is closed from here on (the reader is gone): the server must still stop on
    // SIGTERM (a failed log write used to panic the task that handles signals).
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let stopped = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        child.try_wait().ok().flatten().is_some()
    });
    if !stopped {
        let _ = child.kill();
    }
    assert!(
        stopped,
        "SIGTERM did not stop a server whose standard error is closed"
    );
    assert_eq!(limits.0, limits.1, "soft limit raised to the hard limit");
}
