//! A device cannot forge log lines: what it sends (serial numbers, HTTP paths, bodies) reaches the log
//! with its control characters escaped. Runs the real binary with standard error on a pipe.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alarm_center_proto::encode;

#[test]
fn newlines_and_ansi_escapes_from_a_device_are_escaped_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ALARM_CENTER_LOG", "info")
        .env("ALARM_CENTER_API__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(all.clone());
        }
        all
    });
    // The listening address, from the start-up log line.
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let seen = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server did not start");
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find("listen=") {
            break text[at + 7..].split_whitespace().next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "server did not start: {text}");
    };
    // A serial with a newline, a forged log line and an ANSI "clear screen"; an HTTP path likewise.
    let evil = "EVIL\\nERROR forged line\\r\\u001b[2J";
    let mut device = TcpStream::connect(&addr).unwrap();
    device
        .write_all(&encode::dhip(
            1,
            1,
            &format!(r#"{{"id":1,"method":"global.keepAlive","params":{{"timeout":30,"SerialNo":"{evil}"}}}}"#),
        ))
        .unwrap();
    device
        .write_all(&encode::dhip(
            1,
            2,
            &format!(r#"{{"Code":"X","Action":"Start","Index":0,"Data":{{"a":"{evil}"}}"#),
        ))
        .unwrap();
    let mut http = TcpStream::connect(&addr).unwrap();
    http.write_all(b"POST /x%0a\x1b[31mred HTTP/1.1\r\nContent-Type: text/\x1b[2Jplain\r\nContent-Length: 3\r\n\r\na=b")
        .unwrap();
    let mut answer = [0u8; 256];
    let _ = http.read(&mut answer);
    std::thread::sleep(Duration::from_millis(300));
    drop(device);
    drop(http);
    // SIGTERM: the server logs its shutdown and exits.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success());
    let log = reader.join().unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(
        !log.contains(&0x1b),
        "a raw ESC byte reached the log:\n{text}"
    );
    assert!(!log.contains(&b'\r'), "a raw CR reached the log:\n{text}");
    for line in text.lines() {
        assert!(!line.starts_with("ERROR forged"), "forged line:\n{text}");
    }
    assert!(
        text.contains("EVIL\\nERROR forged line\\r\\u{1b}[2J"),
        "the serial is logged escaped:\n{text}"
    );
}
