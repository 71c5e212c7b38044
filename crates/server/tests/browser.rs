//! The web UI in a real browser (Debian's chromium driven through chromedriver's WebDriver protocol):
//! it loads, sees a simulated device come online, shows its alarm live, and decodes a pasted capture.
//! Reads `BROWSER_TEST_CHROMEDRIVER` (and `BROWSER_TEST_CHROMIUM`); without it the test says so and
//! passes, with it a missing or broken browser fails it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alarm_center_proto::encode;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(chromedriver: &str, chromium: &str, profile: &std::path::Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{chromedriver}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut driver = Driver {
            child,
            base,
            session: String::new(),
            http,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while driver
            .http
            .get(format!("{}/status", driver.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1200,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let created = driver.call("POST", "/session", caps).await;
        driver.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        driver
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            json!({"url": url}),
        )
        .await;
    }

    /// The first element matching `css`, waiting for it to appear.
    async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self
                .call(
                    "POST",
                    &format!("/session/{}/element", self.session),
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            if let Some(id) = found[ELEMENT].as_str() {
                return id.to_owned();
            }
            if tokio::time::Instant::now() > deadline {
                let shot = self.screenshot().await;
                panic!("{css} not found within {WAIT:?} (screenshot: {shot})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/click", self.session),
            json!({}),
        )
        .await;
    }

    async fn clear(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/clear", self.session),
            json!({}),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        let got = self
            .call(
                "GET",
                &format!("/session/{}/element/{id}/text", self.session),
                Value::Null,
            )
            .await;
        got.as_str().unwrap_or_default().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/value", self.session),
            json!({"text": text}),
        )
        .await;
    }

    /// Saves a screenshot next to the test binary and returns its path.
    async fn screenshot(&self) -> String {
        use base64_png::decode;
        let png = self
            .call(
                "GET",
                &format!("/session/{}/screenshot", self.session),
                Value::Null,
            )
            .await;
        let path = std::env::temp_dir().join(format!("alarm-center-ui-{}.png", std::process::id()));
        if let Some(b64) = png.as_str() {
            let _ = std::fs::write(&path, decode(b64));
        }
        path.display().to_string()
    }
}

/// A small base64 decoder for the screenshot (no extra dependency for one test).
mod base64_png {
    pub(crate) fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        };
        let digits: Vec<u8> = text.bytes().filter_map(value).collect();
        digits
            .chunks(4)
            .flat_map(|c| {
                let n = c
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
                let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                bytes.into_iter().take(c.len().saturating_sub(1))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_devices_live_alarms_and_decodes_a_pasted_capture() {
    let Ok(chromedriver) = std::env::var("BROWSER_TEST_CHROMEDRIVER") else {
        eprintln!("BROWSER_TEST_CHROMEDRIVER is not set: browser test not run");
        return;
    };
    let chromium =
        std::env::var("BROWSER_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut t = start(|_| {}).await;
    let ui = format!("http://{}/", t.server.api_addr().unwrap());
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver, &chromium, profile.path()).await;
    driver.go(&ui).await;
    driver.click("#nav-devices").await;
    // A simulated device comes online.
    let mut device = t.connect().await;
    send(
        &mut device,
        &encode::dhip(
            1,
            1,
            r#"{"id":1,"method":"global.keepAlive","params":{"timeout":60,"SerialNo":"UI-CAM-1"}}"#,
        ),
    )
    .await;
    t.events(1, WAIT).await;
    driver
        .find(r#".device-row[data-device="UI-CAM-1"][data-state="online"]"#)
        .await;
    // Its alarm appears live.
    driver.click("#nav-live").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&mut device, &encode::dhip(1, 2, r#"{"method":"client.notifyEventStream","params":{"SerialNo":"UI-CAM-1","eventList":[{"Code":"VideoMotion","Action":"Start","Index":0}]}}"#)).await;
    driver
        .find(r#".event-row[data-code="VideoMotion"][data-action="start"][data-device="UI-CAM-1"]"#)
        .await;
    // A pasted capture is decoded.
    driver.click("#nav-frames").await;
    let hex = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sample-xm-alarmcenter-humandetect.hex"
    ))
    .unwrap();
    driver.type_into("#paste-input", &hex).await;
    driver.click("#paste-decode").await;
    driver
        .find(r#"#paste-result .decoded-frame[data-protocol="xm"][data-kind="alarm"]"#)
        .await;
    // An HTTP-mode request shows its request line and header fields.
    let hex = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/http-notifyevent.hex"
    ))
    .unwrap();
    driver.clear("#paste-input").await;
    driver.type_into("#paste-input", &hex).await;
    driver.click("#paste-decode").await;
    let head = driver
        .text(r#"#paste-result .decoded-frame[data-protocol="http"][data-kind="alarm"] .http-head"#)
        .await;
    assert!(
        head.contains("POST /cgi-bin/NotifyEvent HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.contains("Content-Type") && head.contains("application/json"),
        "{head}"
    );
    let shot = driver.screenshot().await;
    eprintln!("screenshot: {shot}");
    driver
        .call(
            "DELETE",
            &format!("/session/{}", driver.session),
            Value::Null,
        )
        .await;
    t.server.shutdown().await.unwrap();
}
