//! The HTTP API over a real socket: devices, events with filters and pagination, frames, decode, sinks,
//! metrics, health, bad parameters and authentication.

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{base}{path}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `POST /api/decode` with `body` as `content_type`: the status and the JSON answer.
async fn decode(base: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/decode"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_events_frames_decode_and_metrics() {
    let mut t = start(|_| {}).await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    let mut device = t.connect().await;
    send(&mut device, &encode::dvrip_mask(2, 0, 0b11)).await;
    send(&mut device, b"\x01\x02garbage").await;
    send(&mut device, &encode::dvrip_mask(2, 0, 0b01)).await;
    t.events(4, WAIT).await;

    let (status, devices) = get(&base, "/api/devices", None).await;
    assert_eq!(status, 200);
    assert_eq!(devices["next"], Value::Null);
    assert_eq!(devices["devices"][0]["id"], "addr-127.0.0.1");
    assert_eq!(devices["devices"][0]["state"], "online");

    let (_, all) = get(&base, "/api/events", None).await;
    let codes = code_actions(all["events"].as_array().unwrap());
    assert_eq!(
        codes,
        [
            "VideoMotion stop",
            "VideoMotion start",
            "VideoMotion start",
            "DeviceOnline pulse"
        ],
        "newest first"
    );
    // Cursor pagination: two pages of two.
    let (_, page1) = get(&base, "/api/events?limit=2", None).await;
    let next = page1["next"].as_i64().unwrap();
    let (_, page2) = get(&base, &format!("/api/events?limit=2&before={next}"), None).await;
    assert_eq!(page2["events"].as_array().unwrap().len(), 2);
    assert_eq!(page2["events"][1]["code"], "DeviceOnline");
    let (_, stops) = get(&base, "/api/events?action=stop&code=VideoMotion", None).await;
    assert_eq!(stops["events"].as_array().unwrap().len(), 1);

    let (_, frames) = get(&base, "/api/frames?unknown=true", None).await;
    let junk = &frames["frames"][0];
    assert_eq!(junk["protocol"], "junk");
    let (status, one) = get(&base, &format!("/api/frames/{}", junk["id"]), None).await;
    assert_eq!(status, 200);
    assert_eq!(one["hex"], "010267617262616765");
    let (_, masks) = get(&base, "/api/frames?limit=1", None).await;
    let (_, mask) = get(
        &base,
        &format!("/api/frames/{}", masks["frames"][0]["id"]),
        None,
    )
    .await;
    assert_eq!(mask["decoded"][0]["body"]["mask"], 1);
    let raw = reqwest::get(format!(
        "{base}/api/frames/{}/raw",
        masks["frames"][0]["id"]
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_eq!(&raw[..], &encode::dvrip_mask(2, 0, 0b01)[..]);

    let hex = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sample-xm-alarmcenter-humandetect.hex"
    ))
    .unwrap();
    let (_, decoded) = decode(&base, "text/x-hexdump", hex).await;
    assert_eq!(
        decoded["streams"][0]["frames"][0]["events"][0]["code"],
        "HumanDetect"
    );
    let (_, decoded) = decode(&base, "application/octet-stream", encode::dvrip_heartbeat()).await;
    assert_eq!(decoded["streams"][0]["frames"][0]["kind"], "keepalive");

    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let metrics = response.text().await.unwrap();
    assert!(metrics.ends_with("\n# EOF\n"), "{metrics}");
    assert!(metrics.contains("alarm_center_frames_total 3"), "{metrics}");
    assert!(
        metrics.contains("alarm_center_frames_junk_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("alarm_center_devices_online 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"alarm_center_frames_by_kind_total{protocol="dvrip",kind="alarm"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"alarm_center_decode_errors_total{cause="unrecognized"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"alarm_center_events_by_code_total{code="VideoMotion"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("alarm_center_commit_latency_seconds_count 3"),
        "{metrics}"
    );
    // One duration per write transaction, recorded just before the commit is counted; the commits
    // family is encoded first, so a transaction finishing during the scrape (a `last_seen` flush)
    // may show in the histogram only.
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing: {metrics}"))
            .parse::<u64>()
            .unwrap()
    };
    let commits = value("alarm_center_store_commits_total");
    assert!(commits >= 1, "{metrics}");
    let writes = value("alarm_center_store_write_seconds_count");
    assert!((commits..=commits + 1).contains(&writes), "{metrics}");
    assert!(
        metrics.contains("# TYPE alarm_center_events_committed counter\n"),
        "{metrics}"
    );
    let (status, _) = get(&base, "/healthz", None).await;
    assert_eq!(status, 200);
    let (status, ready) = get(&base, "/readyz", None).await;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)));
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_json_error_with_the_right_status() {
    let t = start(|_| {}).await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    for (path, status, says) in [
        ("/api/events?limit=0", 400, "limit"),
        ("/api/events?limit=x", 400, "limit"),
        ("/api/events?since=yesterday", 400, "RFC 3339"),
        ("/api/events?before=abc", 400, "before"),
        ("/api/events?colour=red", 400, "unknown parameter"),
        ("/api/frames?unknown=maybe", 400, "`true` or `false`"),
        ("/api/devices?limit=0", 400, "limit"),
        ("/api/devices?limit=5001", 400, "limit"),
        ("/api/devices?colour=red", 400, "unknown parameter"),
        ("/api/frames/xyz", 400, "frame id"),
        ("/api/frames/999999", 404, "no frame"),
        ("/api/events?until=tomorrow", 400, "RFC 3339"),
        ("/api/events?device=nobody", 404, "no device \"nobody\""),
        (
            "/api/devices/nobody/connections",
            404,
            "no device \"nobody\"",
        ),
        ("/api/nothing", 404, "no such endpoint"),
    ] {
        let (got, body) = get(&base, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(says)),
            "{path}: {body}"
        );
    }
    let (status, body) = decode(&base, "text/x-hexdump", "00000000  zz").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("hex dump"),
        "{body}"
    );
    let (status, _) = decode(&base, "text/x-hexdump", "").await;
    assert_eq!(status, 400);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protects_the_api_but_not_health() {
    let t = start(|c| c.api.token = Some("s3cret".into())).await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    assert_eq!(get(&base, "/api/devices", None).await.0, 401);
    assert_eq!(get(&base, "/api/devices", Some("wrong")).await.0, 401);
    assert_eq!(get(&base, "/metrics", None).await.0, 401);
    assert_eq!(get(&base, "/api/devices", Some("s3cret")).await.0, 200);
    assert_eq!(get(&base, "/healthz", None).await.0, 200);
    t.server.shutdown().await.unwrap();
}

#[test]
fn a_public_address_needs_a_token() {
    let mut config = alarm_center_server::Config::default();
    config.api.listen = "0.0.0.0:8080".parse().unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("api.token is required"), "{err}");
    config.api.token = Some("x".into());
    assert!(config.validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_new_events_with_filters() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let t = start(|_| {}).await;
    let api = t.server.api_addr().unwrap();
    // A plain HTTP/1.1 client: read the event stream line by line.
    let mut http = tokio::net::TcpStream::connect(api).await.unwrap();
    let request = format!("GET /api/stream?code=VideoMotion HTTP/1.1\r\nHost: {api}\r\nAccept: text/event-stream\r\n\r\n");
    http.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(http).lines();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line.is_empty() {
            break; // end of the response head
        }
    }
    let mut device = t.connect().await;
    send(&mut device, &encode::dvrip_mask(2, 0, 0b1)).await;
    send(&mut device, &encode::dvrip_mask(3, 0, 0b1)).await; // VideoLoss: filtered out
    send(&mut device, &encode::dvrip_mask(2, 0, 0b0)).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("no event")
            .unwrap()
            .unwrap();
        if let Some(data) = line
            .strip_prefix("data: ")
            .or_else(|| line.split_once("data: ").map(|(_, d)| d))
        {
            if let Ok(v) = serde_json::from_str::<Value>(data) {
                got.push(format!(
                    "{} {}",
                    v["code"].as_str().unwrap(),
                    v["action"].as_str().unwrap()
                ));
            }
        }
    }
    assert_eq!(got, ["VideoMotion start", "VideoMotion stop"]);
    // Shutdown ends the stream (the server does not wait for the client).
    tokio::time::timeout(WAIT, t.server.shutdown())
        .await
        .expect("shutdown waited for the stream")
        .unwrap();
}

/// Issue 9 (10): `/api/devices` answers pages in id order (`limit`, default 500, at most 5000; `after` =
/// the `next` of the previous page), not every device at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_paginated_in_id_order() {
    let mut t = start(|_| {}).await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    let serials = ["CAM-E", "CAM-A", "CAM-D", "CAM-B", "CAM-C"];
    let mut connections = Vec::new();
    for (i, serial) in serials.iter().enumerate() {
        let mut device = t.connect().await;
        let keepalive = format!(
            r#"{{"id":1,"method":"global.keepAlive","params":{{"timeout":60,"SerialNo":"{serial}"}}}}"#
        );
        send(&mut device, &encode::dhip(1, i as u32 + 1, &keepalive)).await;
        t.until(WAIT, |e| {
            e.event.code == "DeviceOnline" && e.event.device == *serial
        })
        .await;
        connections.push(device);
    }
    let ids = |page: &Value| -> Vec<String> {
        page["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, page1) = get(&base, "/api/devices?limit=2", None).await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(ids(&page1), ["CAM-A", "CAM-B"]);
    assert_eq!(page1["next"], "CAM-B");
    assert_eq!(page1["online"], 5);
    let (_, page2) = get(&base, "/api/devices?limit=2&after=CAM-B", None).await;
    assert_eq!(ids(&page2), ["CAM-C", "CAM-D"]);
    assert_eq!(page2["next"], "CAM-D");
    let (_, page3) = get(&base, "/api/devices?limit=2&after=CAM-D", None).await;
    assert_eq!(ids(&page3), ["CAM-E"]);
    assert_eq!(page3["next"], Value::Null);
    // Exactly a full last page: `next` is null, not a cursor to an empty page.
    let (_, exact) = get(&base, "/api/devices?limit=3&after=CAM-B", None).await;
    assert_eq!(ids(&exact), ["CAM-C", "CAM-D", "CAM-E"]);
    assert_eq!(exact["next"], Value::Null);
    let (_, all) = get(&base, "/api/devices", None).await;
    assert_eq!(ids(&all), ["CAM-A", "CAM-B", "CAM-C", "CAM-D", "CAM-E"]);
    let (_, max) = get(&base, "/api/devices?limit=5000", None).await;
    assert_eq!(ids(&max).len(), 5);
    drop(connections);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_times_live_connection_counters_and_the_openapi_document() {
    let mut t = start(|_| {}).await;
    let base = format!("http://{}", t.server.api_addr().unwrap());
    let mut device = t.connect().await;
    let first = encode::dvrip_mask(2, 0, 0b1);
    let second = encode::dvrip_mask(2, 0, 0b0);
    send(&mut device, &first).await;
    send(&mut device, &second).await;
    t.events(3, WAIT).await;

    // `since`/`until` as durations ago.
    let (status, recent) = get(&base, "/api/events?since=10m", None).await;
    assert_eq!(status, 200, "{recent}");
    assert_eq!(recent["events"].as_array().unwrap().len(), 3);
    let (_, none) = get(&base, "/api/events?until=10m", None).await;
    assert_eq!(none["events"].as_array().unwrap().len(), 0, "{none}");

    // The connection is still open: its counters are read live, not the NULLs of its stored row.
    let (status, answer) = get(&base, "/api/devices/addr-127.0.0.1/connections", None).await;
    assert_eq!(status, 200, "{answer}");
    let open = &answer["connections"][0];
    assert_eq!(open["closed_at"], Value::Null, "{answer}");
    assert_eq!(open["frames"], 2, "{answer}");
    assert_eq!(
        open["bytes"],
        (first.len() + second.len()) as u64,
        "{answer}"
    );

    // The OpenAPI document, unauthenticated, naming every endpoint the server routes.
    let response = reqwest::get(format!("{base}/api/openapi.yaml"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/yaml"));
    let text = response.text().await.unwrap();
    assert!(text.starts_with("openapi: "), "{}", &text[..40]);
    for path in [
        "/api/devices:",
        "/api/devices/{id}/connections:",
        "/api/events:",
        "/api/frames:",
        "/api/frames/{id}:",
        "/api/frames/{id}/raw:",
        "/api/decode:",
        "/api/sinks:",
        "/api/stream:",
        "/api/openapi.yaml:",
        "/metrics:",
        "/healthz:",
        "/readyz:",
    ] {
        assert!(
            text.contains(&format!("\n  {path}\n")),
            "{path} is not documented"
        );
    }
    t.server.shutdown().await.unwrap();
}
