//! Dahua's HTTP Alarm Center mode over real sockets: a client that behaves like the NVR.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_store::{Db, EventQuery, FrameQuery};
use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// An event body in the shape the public HTTP-mode receivers read.
fn event(code: &str, action: &str, index: Option<u32>) -> String {
    let index = index
        .map(|i| format!(r#""Index":{i},"#))
        .unwrap_or_default();
    format!(
        r#"{{"Action":"{action}","Code":"{code}",{index}"Data":{{"StartTime":"2024-08-21 17:15:31","IP":"192.0.2.20","uuid":"u-1","Name":"cam1_r1_h_trip","Object":{{"ObjectType":"Human"}}}}}}"#
    )
}

fn post(body: &str) -> Vec<u8> {
    encode::http_event("alarm-center:15002", body)
}

/// One answer as read from the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads answers off a connection, keeping what follows the last one.
struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    fn new() -> Reader {
        Reader { buf: Vec::new() }
    }

    /// The next answer (a `HEAD` answer has no body whatever its length says).
    async fn next(&mut self, stream: &mut TcpStream, head: bool) -> Answer {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(n) = response.parse(&self.buf).unwrap() {
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let status = response.code.unwrap();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let length = if head || status == 100 { 0 } else { length };
                if self.buf.len() >= n + length {
                    let body = String::from_utf8_lossy(&self.buf[n..n + length]).into_owned();
                    self.buf.drain(..n + length);
                    return Answer {
                        status,
                        headers,
                        body,
                    };
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .expect("no answer in time")
                .unwrap();
            assert!(
                read > 0,
                "connection closed before an answer; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }
}

/// Waits for the server to close the connection (`read` returns 0 or an error).
async fn closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server kept the connection open");
}

fn alarm_events(db: &Db) -> Vec<alarm_center_store::StoredEvent> {
    let mut events = db
        .events(&EventQuery {
            ascending: true,
            ..EventQuery::default()
        })
        .unwrap();
    events.retain(|e| e.event.kind != "device");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nvr_on_one_keep_alive_connection_gets_an_answer_per_committed_event() {
    let t = start(|_| {}).await;
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let mut nvr = t.connect().await;
    let mut answers = Reader::new();

    // 1: a whole request; its 200 means the event is already in the store.
    send(
        &mut nvr,
        &post(&event("SmartMotionHuman", "Start", Some(0))),
    )
    .await;
    let a = answers.next(&mut nvr, false).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK\n"));
    assert_eq!(a.header("connection"), ["keep-alive"]);
    assert_eq!(alarm_events(&db).len(), 1, "answered before the commit");

    // 2: byte by byte; 3: pipelined right behind it, before reading any answer.
    for byte in post(&event("SmartMotionHuman", "Stop", Some(0))) {
        send(&mut nvr, &[byte]).await;
    }
    send(&mut nvr, &post(&event("CrossLineDetection", "Pulse", None))).await;
    for _ in 0..2 {
        let a = answers.next(&mut nvr, false).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let events = alarm_events(&db);
    let shape: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {:?}",
                e.event.device, e.event.code, e.event.action, e.event.channel
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            "192.0.2.20@127.0.0.1 SmartMotionHuman start Some(1)",
            "192.0.2.20@127.0.0.1 SmartMotionHuman stop Some(1)",
            "192.0.2.20@127.0.0.1 CrossLineDetection pulse None",
        ]
    );
    // Without Index: no channel, and the rule name is in the data.
    let data = events[2].event.data.as_deref().unwrap();
    assert!(data.contains(r#""Name":"cam1_r1_h_trip""#), "{data}");
    assert_eq!(
        events[0].event.device_time.as_deref(),
        Some("2024-08-21T17:15:31+00:00")
    );
    // Every request is one archived frame, protocol http, the whole request.
    let frames = db.frames(&FrameQuery::default()).unwrap();
    assert_eq!(frames.len(), 3);
    assert!(frames
        .iter()
        .all(|f| f.protocol == "http" && f.kind == "alarm" && f.error.is_none()));
    let first = frames.iter().min_by_key(|f| f.id).unwrap();
    assert_eq!(
        db.frame(first.id).unwrap().unwrap().bytes,
        post(&event("SmartMotionHuman", "Start", Some(0)))
    );

    // GET and HEAD are answered too; Connection: close closes after the answer.
    send(&mut nvr, b"GET /cgi-bin/keepAlive HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let a = answers.next(&mut nvr, false).await;
    assert_eq!(a.status, 200);
    let a = answers.next(&mut nvr, true).await;
    assert_eq!((a.status, a.header("connection")), (200, vec!["close"]));
    closed(&mut nvr).await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_413_and_408_and_are_archived() {
    let t = start(|c| {
        c.server.max_frame = 2048;
        c.server.frame_timeout = Duration::from_millis(500);
    })
    .await;
    let db = Db::open_read_only(t.dir.path()).unwrap();

    let mut bad = t.connect().await;
    send(
        &mut bad,
        b"POST /cgi-bin/NotifyEvent HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
    )
    .await;
    let a = Reader::new().next(&mut bad, false).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("Content-Length"), "{}", a.body);
    closed(&mut bad).await;

    let mut big = t.connect().await;
    let body = format!(
        r#"{{"Code":"X","Action":"Start","Data":{{"Pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    send(&mut big, &post(&body)).await;
    let a = Reader::new().next(&mut big, false).await;
    assert_eq!(a.status, 413, "{a:?}");
    closed(&mut big).await;

    // A body that never arrives: 408 after the frame timeout, then the connection closes.
    let mut slow = t.connect().await;
    send(
        &mut slow,
        b"POST /cgi-bin/NotifyEvent HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"Code\"",
    )
    .await;
    let a = Reader::new().next(&mut slow, false).await;
    assert_eq!(a.status, 408);
    closed(&mut slow).await;

    // Nothing became an event; the malformed and oversized requests are kept with their errors.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alarm_events(&db).is_empty());
    let frames = db.frames(&FrameQuery::default()).unwrap();
    let errors: Vec<String> = frames.iter().filter_map(|f| f.error.clone()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("malformed") && e.contains("Content-Length")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("oversized")), "{errors:?}");
    assert!(
        frames
            .iter()
            .all(|f| f.protocol == "http" && f.device.is_none()),
        "{frames:?}"
    );
    t.server.shutdown().await.unwrap();
}

/// The `Authorization` value a client computes for a Digest challenge (RFC 7616, `qop=auth`).
fn digest_authorization(challenge: &str, user: &str, password: &str, uri: &str) -> String {
    let field = |name: &str| {
        let start = challenge.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = challenge[start..].trim_start_matches('"');
        rest[..rest.find(['"', ',']).unwrap_or(rest.len())].to_owned()
    };
    let (realm, nonce, algorithm) = (field("realm"), field("nonce"), field("algorithm"));
    let h = |text: String| -> String {
        let bytes: Vec<u8> = if algorithm == "SHA-256" {
            Sha256::digest(text.as_bytes()).to_vec()
        } else {
            Md5::digest(text.as_bytes()).to_vec()
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("POST:{uri}"));
    let response = h(format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
    format!(
        r#"Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm={algorithm}, qop=auth, nc=00000001, cnonce="0a4f113b", response="{response}""#
    )
}

fn authorized_post(authorization: &str, body: &str) -> Vec<u8> {
    encode::http_request(
        "POST",
        "/cgi-bin/NotifyEvent",
        &[
            ("Host", "x"),
            ("Content-Type", "application/json"),
            ("Authorization", authorization),
        ],
        body.as_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_basic_and_digest_pass_and_a_wrong_password_gets_401() {
    let t = start(|c| {
        c.server.http_username = Some("alarm".into());
        c.server.http_password = Some("s3cret".into());
    })
    .await;
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let mut nvr = t.connect().await;
    let mut answers = Reader::new();

    // Without credentials: 401 with Digest (SHA-256, MD5) and Basic challenges; the connection stays.
    send(&mut nvr, &post(&event("VideoMotion", "Start", Some(0)))).await;
    let a = answers.next(&mut nvr, false).await;
    assert_eq!(a.status, 401);
    let challenges = a.header("www-authenticate");
    assert_eq!(challenges.len(), 3, "{challenges:?}");
    assert!(challenges[0].starts_with("Digest") && challenges[0].contains("algorithm=SHA-256"));
    assert!(challenges[1].contains("algorithm=MD5"));
    assert!(challenges[2].starts_with("Basic"));

    for challenge in &challenges[..2] {
        let ok = digest_authorization(challenge, "alarm", "s3cret", "/cgi-bin/NotifyEvent");
        send(
            &mut nvr,
            &authorized_post(&ok, &event("VideoMotion", "Start", Some(1))),
        )
        .await;
        assert_eq!(
            answers.next(&mut nvr, false).await.status,
            200,
            "{challenge}"
        );
        let wrong = digest_authorization(challenge, "alarm", "guess", "/cgi-bin/NotifyEvent");
        send(
            &mut nvr,
            &authorized_post(&wrong, &event("VideoMotion", "Start", Some(2))),
        )
        .await;
        assert_eq!(answers.next(&mut nvr, false).await.status, 401);
    }
    let basic = |pw: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("alarm:{pw}"))
        )
    };
    send(
        &mut nvr,
        &authorized_post(&basic("s3cret"), &event("VideoMotion", "Stop", Some(1))),
    )
    .await;
    assert_eq!(answers.next(&mut nvr, false).await.status, 200);
    send(
        &mut nvr,
        &authorized_post(&basic("nope"), &event("VideoMotion", "Stop", Some(2))),
    )
    .await;
    assert_eq!(answers.next(&mut nvr, false).await.status, 401);

    // Only the three authenticated requests made events; the refused ones are frames with the reason.
    let events = alarm_events(&db);
    assert_eq!(events.len(), 3, "{:?}", summary(&events));
    assert!(
        events.iter().all(|e| e.event.channel == Some(2)),
        "{:?}",
        summary(&events)
    );
    // A refused request is answered at once; its frame is committed soon after.
    let refused_frames = || -> Vec<String> {
        db.frames(&FrameQuery::default())
            .unwrap()
            .into_iter()
            .filter_map(|f| f.error)
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    let mut refused = refused_frames();
    while refused.len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        refused = refused_frames();
    }
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused.iter().all(|e| e.starts_with("HTTP 401")),
        "{refused:?}"
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_device_and_a_dhip_device_work_side_by_side() {
    let mut t = start(|_| {}).await;
    let mut dhip = t.connect().await;
    send(
        &mut dhip,
        &encode::dhip(
            1,
            1,
            r#"{"id":1,"method":"global.keepAlive","params":{"timeout":30,"SerialNo":"NVR-D"}}"#,
        ),
    )
    .await;
    send(
        &mut dhip,
        &encode::dhip(1, 2, r#"{"id":2,"method":"client.notifyEventStream","params":{"SerialNo":"NVR-D","eventList":[{"Code":"VideoMotion","Action":"Start","Index":0}]}}"#),
    )
    .await;
    let mut http = t.connect().await;
    let body = r#"{"Action":"Start","Code":"FaceRecognition","Index":2,"Data":{"Candidates":[{"Person":{"Name":"Ann","ID":"7"},"Similarity":91}]}}"#;
    send(
        &mut http,
        &encode::http_request(
            "POST",
            "/cgi-bin/NotifyEvent",
            &[("X-Serial-Number", "NVR-H")],
            body.as_bytes(),
        ),
    )
    .await;
    assert_eq!(Reader::new().next(&mut http, false).await.status, 200);
    // Both devices' events, in whichever order they were committed.
    let seen = |events: &[alarm_center_store::StoredEvent], code: &str| {
        events.iter().any(|e| e.event.code == code)
    };
    let mut events = Vec::new();
    while !(seen(&events, "VideoMotion") && seen(&events, "FaceRecognition")) {
        events.extend(t.events(1, WAIT).await);
    }
    let face = events
        .iter()
        .find(|e| e.event.code == "FaceRecognition")
        .unwrap();
    assert_eq!(
        (face.event.device.as_str(), face.event.channel),
        ("NVR-H", Some(3))
    );
    assert!(face.event.data.as_deref().unwrap().contains("\"Ann\""));
    assert!(events
        .iter()
        .any(|e| e.event.device == "NVR-D" && e.event.code == "VideoMotion"));
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_and_chunked_bodies_are_read() {
    let t = start(|_| {}).await;
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let mut nvr = t.connect().await;
    let mut answers = Reader::new();
    let body = event("CrossRegionDetection", "Start", Some(3));
    let request = encode::http_chunked(
        "POST",
        "/cgi-bin/NotifyEvent",
        &[
            ("Host", "x"),
            ("Expect", "100-continue"),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
        7,
    );
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    send(&mut nvr, &request[..head_end]).await;
    assert_eq!(answers.next(&mut nvr, false).await.status, 100);
    send(&mut nvr, &request[head_end..]).await;
    assert_eq!(answers.next(&mut nvr, false).await.status, 200);
    let events = alarm_events(&db);
    assert_eq!(
        summary(&events),
        ["192.0.2.20@127.0.0.1 CrossRegionDetection start Some(4)"]
    );
    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut old = t.connect().await;
    send(
        &mut old,
        b"POST /cgi-bin/NotifyEvent HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    let a = Reader::new().next(&mut old, false).await;
    assert_eq!(a.status, 200);
    closed(&mut old).await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_device_refused_gets_403_not_200() {
    let t = start(|c| {
        c.server.allow_unknown_devices = false;
    })
    .await;
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let mut nvr = t.connect().await;
    let body = event("VideoMotion", "Start", Some(0));
    send(
        &mut nvr,
        &encode::http_request(
            "POST",
            "/cgi-bin/NotifyEvent",
            &[("X-Serial-Number", "NOT-CONFIGURED")],
            body.as_bytes(),
        ),
    )
    .await;
    let a = Reader::new().next(&mut nvr, false).await;
    assert_eq!(a.status, 403, "{a:?}");
    closed(&mut nvr).await;
    assert!(alarm_events(&db).is_empty());
    t.server.shutdown().await.unwrap();
}

/// An HTTP device waits for each answer, which waits for the commit: its requests are committed at
/// once, not held for `store.commit-interval` (with 100 such devices the interval capped the server at
/// 100 answers per interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_not_held_for_the_commit_interval() {
    const REQUESTS: usize = 5;
    let t = start(|c| c.store.commit_interval = Duration::from_secs(3)).await;
    let mut nvr = t.connect().await;
    let mut answers = Reader::new();
    let started = tokio::time::Instant::now();
    for i in 0..REQUESTS {
        let action = if i % 2 == 0 { "Start" } else { "Stop" };
        send(&mut nvr, &post(&event("SmartMotionHuman", action, Some(0)))).await;
        let a = answers.next(&mut nvr, false).await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    // Held, the last four would have waited about 3 s each.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "{REQUESTS} requests one after the other took {took:?}"
    );
}
