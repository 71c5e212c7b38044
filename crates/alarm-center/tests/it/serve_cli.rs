//! `alarm-center serve` as a real process: SIGTERM drains and exits 0; `kill -9` during ingest leaves an
//! intact store holding every event committed before the kill; `events`/`devices` read it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use alarm_center_proto::encode;

use crate::common::{cli, exit_within};

struct Running {
    child: Child,
    addr: String,
    events: mpsc::Receiver<serde_json::Value>,
    stderr: Arc<std::sync::Mutex<Vec<String>>>,
    /// Reads standard error until the process closes it.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Sends SIGTERM, expects a successful exit within 20 s, and returns the whole log.
    fn terminate(&mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "no exit 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "exit status {exit:?}");
        // The last lines may still be in the pipe: read to its end.
        self.stderr_reader.take().unwrap().join().unwrap();
        self.stderr.lock().unwrap().join("\n")
    }
}

/// A test that fails part-way leaves no server behind.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &std::path::Path) -> Running {
    serve_with(data_dir, &[])
}

/// `serve` with more environment variables.
fn serve_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["serve", "--listen", "127.0.0.1:0", "--stdout", "--data-dir"])
        .arg(data_dir)
        .env("ALARM_CENTER_LOG", "info")
        .env("ALARM_CENTER_API__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (addr_tx, addr_rx) = mpsc::channel();
    let kept = lines.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(at) = line.find("listen=") {
                let _ = addr_tx.send(
                    line[at + 7..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            kept.lock().unwrap().push(line);
        }
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx
                .send(serde_json::from_str(&line).expect("stdout line is JSON"))
                .is_err()
            {
                return;
            }
        }
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server did not start");
    Running {
        child,
        addr,
        events,
        stderr: lines,
        stderr_reader: Some(stderr_reader),
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let mut device = TcpStream::connect(&server.addr).unwrap();
    device.write_all(&encode::dvrip_mask(2, 0, 0b11)).unwrap();
    // The frame's last bytes are still in flight when the signal comes: the drain must keep them.
    device
        .write_all(&encode::dvrip_mask(2, 0, 0b10)[..20])
        .unwrap();
    for _ in 0..3 {
        server
            .events
            .recv_timeout(Duration::from_secs(10))
            .expect("event");
    }
    let log = server.terminate();
    assert!(
        log.contains("SIGTERM received") && log.contains("store flushed"),
        "{log}"
    );
    let events = cli(&["events", "--json"], dir.path());
    assert_eq!(events.lines().count(), 3, "{events}");
    let devices = cli(&["devices"], dir.path());
    assert!(devices.contains("addr-127.0.0.1"), "{devices}");
    let sinks = cli(&["sinks"], dir.path());
    assert!(sinks.contains("no sink has run yet"), "{sinks}");
    let frames = alarm_center_store::Db::open_read_only(dir.path())
        .unwrap()
        .frame_count()
        .unwrap();
    assert_eq!(frames, 2, "the incomplete frame was kept at shutdown");
}

/// The names of a process's threads (Linux: /proc/PID/task/*/comm).
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn device_connections_run_on_the_configured_threads_which_are_waited_for_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve_with(
        dir.path(),
        &[("ALARM_CENTER_SERVER__CONNECTION_THREADS", "3")],
    );
    // A thread names itself once it runs, which may be just after the server said it is accepting.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = thread_names(server.child.id());
        let shards = names.iter().filter(|n| n.starts_with("connections-"));
        match shards.count() {
            3 => break,
            n if n > 3 || Instant::now() > deadline => panic!("{names:?}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    // Thirty devices at once, each identified by its serial number, each with one alarm.
    const DEVICES: usize = 30;
    let mut devices: Vec<TcpStream> = (0..DEVICES)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    for (n, device) in devices.iter_mut().enumerate() {
        let body = format!(
            r#"{{"id":9,"method":"client.notifyEventStream","params":{{"SerialNo":"SHARD-{n}","eventList":[{{"Action":"Start","Code":"VideoMotion","Index":0}}]}}}}"#
        );
        device.write_all(&encode::dhip(1, 1, &body)).unwrap();
    }
    let mut motions = 0;
    while motions < DEVICES {
        let event = server
            .events
            .recv_timeout(Duration::from_secs(10))
            .expect("an event of every device");
        motions += usize::from(event["code"] == "VideoMotion");
    }
    // The devices stay connected: shutdown waits for every thread's connections to end.
    let log = server.terminate();
    assert!(
        log.contains("connection_threads=3") && log.contains("store flushed"),
        "{log}"
    );
    assert_eq!(
        log.matches("kind=\"shutdown\"").count(),
        DEVICES,
        "every connection closed by the shutdown: {log}"
    );
    let devices_listed = cli(&["devices"], dir.path());
    for n in 0..DEVICES {
        assert!(
            devices_listed.contains(&format!("SHARD-{n}")),
            "{devices_listed}"
        );
    }
}

#[test]
fn kill_9_during_ingest_leaves_every_committed_event_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|d| {
            let (addr, stop) = (server.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(&addr) else { return };
                let serial = format!("KILL-{d}");
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let action = if i.is_multiple_of(2) { "Start" } else { "Stop" };
                    let body = format!(r#"{{"Code":"VideoMotion","Action":"{action}","Index":{},"SerialNo":"{serial}"}}"#, i % 8);
                    if s.write_all(&encode::dhip(1, i, &body)).is_err() {
                        return;
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 3000 && Instant::now() < deadline {
        if let Ok(e) = server.events.recv_timeout(Duration::from_secs(5)) {
            seen.push(e);
        }
    }
    assert!(seen.len() >= 3000, "only {} events committed", seen.len());
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    // Lines already written to the pipe before the kill were committed too.
    while let Ok(e) = server.events.recv_timeout(Duration::from_millis(500)) {
        seen.push(e);
    }
    for s in senders {
        let _ = s.join();
    }
    let db =
        alarm_center_store::Db::open(dir.path(), alarm_center_store::SyncMode::Normal).unwrap();
    assert_eq!(db.integrity_problem().unwrap(), None);
    let stored = db
        .events(&alarm_center_store::EventQuery {
            limit: Some(10_000_000),
            ..Default::default()
        })
        .unwrap();
    let by_id: std::collections::HashMap<i64, &alarm_center_store::StoredEvent> =
        stored.iter().map(|e| (e.id, e)).collect();
    for e in &seen {
        let id = e["id"].as_i64().unwrap();
        let s = by_id.get(&id).unwrap_or_else(|| {
            panic!("event {id} was printed as committed but is not in the store")
        });
        assert_eq!(s.event.code, e["code"].as_str().unwrap());
        assert_eq!(s.event.action, e["action"].as_str().unwrap());
        assert_eq!(s.event.device, e["device"].as_str().unwrap());
    }
    drop(db);
    // And the server starts again on that store.
    let mut again = serve(dir.path());
    let mut device = TcpStream::connect(&again.addr).unwrap();
    device
        .write_all(&encode::dhip(
            1,
            1,
            r#"{"Code":"VideoLoss","Action":"Start","Index":0,"SerialNo":"KILL-0"}"#,
        ))
        .unwrap();
    let next = again.events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        next["id"].as_i64().unwrap()
            > seen
                .iter()
                .map(|e| e["id"].as_i64().unwrap())
                .max()
                .unwrap()
    );
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}

/// A store of 5,000 events whose pages in the middle of the file are overwritten with garbage (the file
/// keeps its length: damaged inside, not truncated). Returns the database file.
fn damaged_store(data_dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::{Seek, SeekFrom};
    let mut db =
        alarm_center_store::Db::open(data_dir, alarm_center_store::SyncMode::Normal).unwrap();
    let events = (0..5_000)
        .map(|i| alarm_center_store::NewEvent {
            frame: alarm_center_store::FrameRef::None,
            device: "SN1".into(),
            code: "VideoMotion".into(),
            action: "start".into(),
            index: Some(0),
            channel: Some(1),
            channel_name: None,
            kind: "alarm".into(),
            device_time: None,
            received_at: i,
            data: None,
            synthetic: None,
        })
        .collect();
    db.write(&alarm_center_store::Batch {
        events,
        ..Default::default()
    })
    .unwrap();
    drop(db); // checkpoints the log into the file
    let path = data_dir.join(alarm_center_store::DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
    file.write_all(&[0xA5; 3 * 4096]).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    path
}

/// Runs `alarm-center serve` with `extra` arguments until it exits (or `within` passes: then it is
/// killed and the test fails); returns its exit status and standard error.
fn serve_to_exit(
    data_dir: &std::path::Path,
    extra: &[&str],
    within: Duration,
) -> (std::process::ExitStatus, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("ALARM_CENTER_LOG", "info")
        .env("ALARM_CENTER_API__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    exit_within(child, &format!("alarm-center serve {extra:?}"), within)
}

#[test]
fn a_store_damaged_inside_is_refused_at_start_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = damaged_store(dir.path());
    let (status, stderr) = serve_to_exit(dir.path(), &[], Duration::from_secs(60));
    assert!(!status.success(), "{stderr}");
    let shown = path.display().to_string();
    assert!(
        stderr.contains(&format!("the store {shown} is damaged"))
            && stderr.contains("--force")
            && stderr.contains(".recover")
            && !stderr.contains("accepting devices"),
        "{stderr}"
    );

    // --force starts anyway, saying what it found.
    let mut forced = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["serve", "--force", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ALARM_CENTER_LOG", "info")
        .env("ALARM_CENTER_API__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(forced.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("accepting devices")) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = forced.kill();
                panic!("--force did not start: {log:#?}");
            }
        }
    }
    forced.kill().unwrap();
    forced.wait().unwrap();
    assert!(
        log.iter()
            .any(|l| l.contains("ERROR") && l.contains("starting anyway (--force)")),
        "{log:#?}"
    );

    // A sound store passes the check.
    let sound = tempfile::tempdir().unwrap();
    drop(alarm_center_store::Db::open(sound.path(), alarm_center_store::SyncMode::Normal).unwrap());
    let mut server = serve(sound.path());
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
