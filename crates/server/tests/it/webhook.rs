//! The webhook sink end to end: device frames in, HTTP requests out to a small test server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_server::Config;
use alarm_center_store::{Db, StoredEvent};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(5);

/// A request the test server received.
#[derive(Debug, Clone)]
struct Req {
    at: Instant,
    method: String,
    target: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: String,
}

impl Req {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?}: {e}", self.body))
    }
}

/// What the test server answers: status, extra headers, and how long it waits first.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

fn status(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        delay: Duration::ZERO,
    }
}

type Responder = Arc<dyn Fn(usize, &Req) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server recording every request (keep-alive, Content-Length bodies).
struct Hook {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Req>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn start(respond: impl Fn(usize, &Req) -> Reply + Send + Sync + 'static) -> Hook {
        Hook::start_on("127.0.0.1:0".parse().unwrap(), respond).await
    }

    async fn start_on(
        addr: SocketAddr,
        respond: impl Fn(usize, &Req) -> Reply + Send + Sync + 'static,
    ) -> Hook {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Responder = Arc::new(respond);
        let seen = requests.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, seen.clone(), respond.clone()));
            }
        });
        Hook {
            addr,
            requests,
            accept,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Req> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests within {within:?}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(stream: TcpStream, seen: Arc<Mutex<Vec<Req>>>, respond: Responder) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or_default().to_owned(),
            words.next().unwrap_or_default().to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length = headers
            .get("content-length")
            .map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let req = Req {
            at: Instant::now(),
            method,
            target,
            headers,
            body: String::from_utf8(body).unwrap(),
        };
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push(req.clone());
            seen.len() - 1
        };
        let reply = respond(n, &req);
        tokio::time::sleep(reply.delay).await;
        let mut head = format!("HTTP/1.1 {} X\r\nContent-Length: 2\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\nok");
        if stream.get_mut().write_all(head.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Adds a webhook named `name` posting to `url`, with short backoffs, then `extra` keys.
fn add_webhook(config: &mut Config, name: &str, url: &str, extra: Value) {
    let mut hook = json!({
        "name": name,
        "url": url,
        "timeout": "5s",
        "backoff": "20ms",
        "max-backoff": "100ms",
    });
    for (key, value) in extra.as_object().unwrap() {
        hook[key] = value.clone();
    }
    config
        .sinks
        .webhook
        .push(serde_json::from_value(hook).unwrap());
}

/// Device events a sink should see: the line-crossing pulses (not the online event).
fn pulses_only() -> Value {
    json!({ "include-codes": ["CrossLineDetection"] })
}

fn pulse(index: u32, name: &str) -> Vec<u8> {
    let event = json!({
        "Code": "CrossLineDetection",
        "Action": "Pulse",
        "Index": index,
        "Data": { "Name": name, "Count": index * 10 },
    });
    encode::bare_json(&event.to_string())
}

fn pulses(n: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| pulse(i, &format!("rule {i}")))
        .collect()
}

fn ids(requests: &[Req]) -> Vec<i64> {
    requests
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect()
}

fn event_ids(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_posted_as_json_in_order() {
    let hook = Hook::start(|_, _| status(200)).await;
    let mut t = start(|c| add_webhook(c, "all", &hook.url("/events"), json!({}))).await;
    let mut device = t.connect().await;
    send(&mut device, &pulses(5)).await;
    let events = t.events(6, WAIT).await;
    let requests = hook.wait_for(6, WAIT).await;
    for (req, event) in requests.iter().zip(&events) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/events");
        assert_eq!(req.headers["content-type"], "application/json");
        assert_eq!(
            req.json(),
            serde_json::to_value(event).unwrap(),
            "the event as JSON"
        );
    }
    assert_eq!(
        ids(&requests),
        event_ids(&events),
        "one request per event, in log order"
    );
    assert_eq!(events[0].event.code, "DeviceOnline");
    assert_eq!(requests[3].json()["data"]["Name"], "rule 2");
    t.server.shutdown().await.unwrap();
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let cursor = db.sink_cursor("webhook:all").unwrap().unwrap();
    assert_eq!(cursor.position, events.last().unwrap().id);
    assert_eq!(cursor.delivered, 6);
    assert_eq!(hook.requests().len(), 6, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_headers_and_body_are_templated() {
    let hook = Hook::start(|_, _| status(204)).await;
    let url = hook
        .url("/hook/{{device}}/{{code}}?ch={{channel}}&name={{data.Name}}&none={{channel_name}}");
    let mut t = start(|c| {
        c.devices.push(alarm_center_server::config::DeviceConfig {
            id: "gate 1/a".into(),
            address: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        });
        add_webhook(
            c,
            "templated",
            &url,
            json!({
                "method": "put",
                "headers": { "X-Device": "{{device}}", "X-Event": "{{id}}-{{action}}", "Authorization": "Bearer s3cret" },
                "body": r#"{"device":{{device|json}},"name":{{data.Name|json}},"count":{{data.Count}},"missing":{{data.Nope|json}},"data":{{data}},"id":{{id|json}},"text":"{{code}} on {{channel}}"}"#,
                "content-type": "application/vnd.test+json",
                "rules": pulses_only(),
            }),
        );
    })
    .await;
    let mut device = t.connect().await;
    send(&mut device, &pulse(0, "Gate \"A\" & B/C")).await;
    send(&mut device, &pulse(1, "x")).await;
    let events = t.events(3, WAIT).await;
    let requests = hook.wait_for(2, WAIT).await;
    let (event, req) = (&events[1], &requests[0]);
    assert_eq!(req.method, "PUT");
    assert_eq!(
        req.target,
        "/hook/gate%201%2Fa/CrossLineDetection?ch=1&name=Gate%20%22A%22%20%26%20B%2FC&none="
    );
    assert_eq!(req.headers["x-device"], "gate 1/a");
    assert_eq!(req.headers["x-event"], format!("{}-pulse", event.id));
    assert_eq!(req.headers["authorization"], "Bearer s3cret");
    assert_eq!(req.headers["content-type"], "application/vnd.test+json");
    assert_eq!(
        req.json(),
        json!({
            "device": "gate 1/a",
            "name": "Gate \"A\" & B/C",
            "count": 0,
            "missing": null,
            "data": { "Name": "Gate \"A\" & B/C", "Count": 0 },
            "id": event.id,
            "text": "CrossLineDetection on 1",
        })
    );
    assert_eq!(requests[1].json()["count"], 10);
    assert_eq!(requests[1].json()["id"], events[2].id);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_accepted() {
    let hook = Hook::start(|n, _| status(if n < 2 { 500 } else { 200 })).await;
    let mut t = start(|c| {
        add_webhook(
            c,
            "flaky",
            &hook.url("/"),
            json!({ "rules": pulses_only() }),
        )
    })
    .await;
    let mut device = t.connect().await;
    send(&mut device, &pulse(0, "a")).await;
    let events = t.events(2, WAIT).await;
    let requests = hook.wait_for(3, WAIT).await;
    assert!(
        requests.iter().all(|r| r.json()["id"] == events[1].id),
        "the same event three times"
    );
    // Nothing more: delivered once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 3);
    t.server.shutdown().await.unwrap();
    let db = Db::open_read_only(t.dir.path()).unwrap();
    assert!(db.dead_letters("webhook:flaky").unwrap().is_empty());
    let cursor = db.sink_cursor("webhook:flaky").unwrap().unwrap();
    assert_eq!(
        (cursor.position, cursor.delivered, cursor.dead_letters),
        (events[1].id, 1, 0)
    );
    assert_eq!(cursor.filtered, 1, "the online event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_up_to_max_backoff() {
    let hook = Hook::start(|n, _| match n {
        0 => Reply {
            headers: vec![("Retry-After", "1".into())],
            ..status(429)
        },
        1 => Reply {
            headers: vec![("Retry-After", "3600".into())],
            ..status(503)
        },
        _ => status(200),
    })
    .await;
    let t = start(|c| {
        add_webhook(
            c,
            "busy",
            &hook.url("/"),
            json!({ "rules": pulses_only(), "max-backoff": "1500ms" }),
        )
    })
    .await;
    let mut device = t.connect().await;
    send(&mut device, &pulse(0, "a")).await;
    let requests = hook.wait_for(3, WAIT).await;
    let gap = |i: usize| requests[i].at - requests[i - 1].at;
    assert!(
        gap(1) >= Duration::from_millis(950),
        "Retry-After: 1 honoured: {:?}",
        gap(1)
    );
    assert!(
        gap(2) >= Duration::from_millis(1400) && gap(2) < Duration::from_millis(2500),
        "Retry-After capped by max-backoff: {:?}",
        gap(2)
    );
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_exhausted_events_become_dead_letters_and_the_rest_goes_on() {
    // Index 1 is refused (400, never retried), index 2 always fails (503, retried twice), others pass.
    let hook = Hook::start(|_, req| match req.json()["index"].as_i64() {
        Some(1) => status(400),
        Some(2) => status(503),
        _ => status(200),
    })
    .await;
    let mut t = start(|c| {
        add_webhook(
            c,
            "picky",
            &hook.url("/in"),
            json!({ "rules": pulses_only(), "retries": 2 }),
        )
    })
    .await;
    let mut device = t.connect().await;
    send(&mut device, &pulses(4)).await;
    let events = t.events(5, WAIT).await;
    let requests = hook.wait_for(6, WAIT).await;
    let sent: Vec<i64> = requests
        .iter()
        .map(|r| r.json()["index"].as_i64().unwrap())
        .collect();
    assert_eq!(sent, [0, 1, 2, 2, 2, 3]);
    t.server.shutdown().await.unwrap();
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let dead = db.dead_letters("webhook:picky").unwrap();
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert_eq!((dead[0].event_id, dead[0].attempts), (events[2].id, 1));
    assert!(dead[0].error.contains("400"), "{}", dead[0].error);
    assert_eq!((dead[1].event_id, dead[1].attempts), (events[3].id, 3));
    assert!(dead[1].error.contains("503"), "{}", dead[1].error);
    let request: Value = serde_json::from_str(dead[0].request.as_deref().unwrap()).unwrap();
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], hook.url("/in"));
    let body: Value = serde_json::from_str(request["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::to_value(&events[2]).unwrap(),
        "the request, for replay"
    );
    let cursor = db.sink_cursor("webhook:picky").unwrap().unwrap();
    assert_eq!(
        (cursor.position, cursor.delivered, cursor.dead_letters),
        (events[4].id, 2, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_slow_ingest() {
    let hook = Hook::start(|_, _| Reply {
        delay: Duration::from_secs(2),
        ..status(200)
    })
    .await;
    let mut t = start(|c| add_webhook(c, "slow", &hook.url("/"), json!({}))).await;
    let started = Instant::now();
    let mut device = t.connect().await;
    send(&mut device, &pulses(200)).await;
    let events = t.events(201, WAIT).await;
    let ingest = started.elapsed();
    let delivered = hook.requests().len();
    assert!(ingest < Duration::from_secs(6), "ingest took {ingest:?}");
    // At 2 s per request, at most one request per 2 s of ingest (plus the one in flight) was answered.
    assert!(
        delivered as u64 <= ingest.as_secs() / 2 + 1,
        "{delivered} requests answered in {ingest:?}"
    );
    // Shutdown does not wait for the webhook either; what was not delivered stays after the cursor.
    let stopping = Instant::now();
    t.server.shutdown().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let cursor = Db::open_read_only(t.dir.path())
        .unwrap()
        .sink_cursor("webhook:slow")
        .unwrap()
        .unwrap();
    assert!(cursor.position < events.last().unwrap().id, "{cursor:?}");
    assert!(cursor.delivered <= 5, "{cursor:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_for_an_endpoint_that_is_down_and_arrive_in_order() {
    // A port with nothing listening (yet).
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut t = start(|c| {
        add_webhook(
            c,
            "later",
            &format!("http://{addr}/late"),
            json!({ "retries": 1000, "backoff": "50ms", "max-backoff": "200ms" }),
        )
    })
    .await;
    let mut device = t.connect().await;
    send(&mut device, &pulses(20)).await;
    let events = t.events(21, WAIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let hook = Hook::start_on(addr, |_, _| status(200)).await;
    let requests = hook.wait_for(21, WAIT).await;
    assert_eq!(ids(&requests), event_ids(&events));
    t.server.shutdown().await.unwrap();
    let db = Db::open_read_only(t.dir.path()).unwrap();
    let cursor = db.sink_cursor("webhook:later").unwrap().unwrap();
    assert_eq!(cursor.position, events.last().unwrap().id);
    assert_eq!((cursor.delivered, cursor.dead_letters), (21, 0));
    assert!(db.dead_letters("webhook:later").unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_a_backoff_and_keeps_the_event() {
    let hook = Hook::start(|_, _| status(500)).await;
    let mut t = start(|c| {
        add_webhook(
            c,
            "down",
            &hook.url("/"),
            json!({ "rules": pulses_only(), "backoff": "30s", "max-backoff": "30s" }),
        )
    })
    .await;
    let mut device = t.connect().await;
    send(&mut device, &pulse(0, "a")).await;
    let events = t.events(2, WAIT).await;
    hook.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    t.server.shutdown().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let db = Db::open_read_only(t.dir.path()).unwrap();
    assert!(db.dead_letters("webhook:down").unwrap().is_empty());
    let cursor = db.sink_cursor("webhook:down").unwrap().unwrap();
    assert_eq!(
        cursor.position,
        events[1].id - 1,
        "offered again at the next start"
    );
}
