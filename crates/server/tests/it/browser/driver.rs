//! A minimal WebDriver client for chromedriver (W3C protocol over HTTP/JSON), enough for the UI tests.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::WAIT;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Driver {
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
    pub(crate) async fn start(
        chromedriver: &str,
        chromium: &str,
        profile: &std::path::Path,
    ) -> Driver {
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

    pub(crate) async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    pub(crate) async fn go(&self, url: &str) {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            json!({"url": url}),
        )
        .await;
    }

    /// The first element matching `css`, waiting for it to appear.
    pub(crate) async fn find(&self, css: &str) -> String {
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

    pub(crate) async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/click", self.session),
            json!({}),
        )
        .await;
    }

    pub(crate) async fn clear(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/clear", self.session),
            json!({}),
        )
        .await;
    }

    pub(crate) async fn text(&self, css: &str) -> String {
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

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &format!("/session/{}/element/{id}/value", self.session),
            json!({"text": text}),
        )
        .await;
    }

    /// Runs `script` (a function body: `return …`) in the page with `args` as `arguments`.
    pub(crate) async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Waits until `script` returns true (`what` names the wait in the failure).
    pub(crate) async fn wait_for(&self, what: &str, script: &str, args: Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.execute(script, args.clone()).await;
            if got == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let shot = self.screenshot().await;
                panic!("{what}: not within {WAIT:?}, last {got} (screenshot: {shot})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets the window (and so the page's width).
    pub(crate) async fn window(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &format!("/session/{}/window/rect", self.session),
            json!({"width": width, "height": height}),
        )
        .await;
    }

    pub(crate) async fn quit(&self) {
        self.call("DELETE", &format!("/session/{}", self.session), Value::Null)
            .await;
    }

    /// Saves a screenshot next to the test binary and returns its path.
    pub(crate) async fn screenshot(&self) -> String {
        use base64::Engine as _;
        let png = self
            .call(
                "GET",
                &format!("/session/{}/screenshot", self.session),
                Value::Null,
            )
            .await;
        let path = std::env::temp_dir().join(format!("alarm-center-ui-{}.png", std::process::id()));
        if let Some(b64) = png.as_str() {
            let _ = std::fs::write(
                &path,
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default(),
            );
        }
        path.display().to_string()
    }
}
