//! Webhook sink: one HTTP request per event, in log order, with retries and dead letters.
//!
//! URL, header values and body are templates: `{{field}}` is replaced by a field of the event
//! (`id`, `device`, `code`, `action`, `index`, `channel`, `channel_name`, `kind`, `device_time`,
//! `received_at`, `frame_id`, `synthetic`, `data` = the raw JSON data, `event` = the whole event as
//! JSON) or `{{data.Key}}` by a top-level key of the data; an absent value renders as nothing. In the
//! URL, values are percent-encoded. `{{field|json}}` renders the value as a JSON literal (a quoted,
//! escaped string; numbers as numbers; `null` when absent) to build JSON bodies safely.
//!
//! Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and full
//! jitter (a `Retry-After`, in seconds or as a date, is honoured); other answers that are not 2xx, and the last
//! failed retry, make the event a dead letter carrying the request for replay.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use alarm_center_store::StoredEvent;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{Destination, Outcome};
mod config;
mod template;

pub use config::WebhookConfig;
use config::*;
use template::*;

/// How long a request in flight at shutdown may still take.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Methods a webhook may use.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Most bytes of an error answer quoted in the error.
const ERROR_BODY_MAX: usize = 300;
/// Most bytes of a successful answer read (so the connection can be reused); the rest is dropped.
const OK_BODY_MAX: usize = 64 * 1024;

/// `[[sinks.webhook]]`.
/// What a webhook sends as body.
enum Body {
    None,
    Event,
    Template(Template),
}

/// One event's request, rendered once and sent at every attempt.
struct Request {
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<String>,
}

/// The result of one attempt.
enum Attempt {
    Delivered,
    /// Worth retrying, after `retry_after` if the server said so.
    Retry {
        error: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help.
    Permanent {
        error: String,
        status: Option<u16>,
    },
}

/// Delivers events by HTTP.
pub(crate) struct WebhookSink {
    name: String,
    client: reqwest::Client,
    method: Method,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Body,
    content_type: Option<HeaderValue>,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    shutdown: CancellationToken,
}

impl WebhookSink {
    pub(crate) fn new(
        config: WebhookConfig,
        shutdown: CancellationToken,
    ) -> Result<WebhookSink, crate::SinkError> {
        let invalid = |problems: Vec<String>| {
            crate::SinkError::Config(format!(
                "webhook {:?}: {}",
                config.name,
                problems.join("; ")
            ))
        };
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let method = parse_method(&config.method).map_err(|e| invalid(vec![e]))?;
        let url = Template::parse(&config.url).map_err(|e| invalid(vec![e]))?;
        let mut headers = Vec::new();
        let mut content_type_set = false;
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(vec![e.to_string()]))?;
            content_type_set |= name == CONTENT_TYPE;
            headers.push((name, Template::parse(value).map_err(|e| invalid(vec![e]))?));
        }
        let body = match &config.body {
            Some(t) => Body::Template(Template::parse(t).map_err(|e| invalid(vec![e]))?),
            None if matches!(method, Method::GET | Method::DELETE) => Body::None,
            None => Body::Event,
        };
        let content_type = if content_type_set {
            None
        } else {
            Some(
                HeaderValue::from_str(&config.content_type)
                    .map_err(|e| invalid(vec![e.to_string()]))?,
            )
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("alarm-center/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| {
                crate::SinkError::Internal(format!("webhook {:?}: HTTP client: {e}", config.name))
            })?;
        Ok(WebhookSink {
            name: format!("webhook:{}", config.name),
            client,
            method,
            url,
            headers,
            body,
            content_type,
            retries: config.retries,
            backoff: config.backoff,
            max_backoff: config.max_backoff,
            shutdown,
        })
    }

    fn request(&self, event: &StoredEvent) -> Request {
        let ctx = Ctx::new(event);
        let url = self.url.render(&ctx, Escape::Url);
        let headers = self
            .headers
            .iter()
            .map(|(name, t)| {
                let text = t.render(&ctx, Escape::Header);
                // Validated characters plus control-free values: always a valid header value.
                let value =
                    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
                (name.clone(), value)
            })
            .collect();
        let body = match &self.body {
            Body::None => None,
            Body::Event => Some(ctx.event_json().to_owned()),
            Body::Template(t) => Some(t.render(&ctx, Escape::None)),
        };
        Request { url, headers, body }
    }

    /// The request as JSON text, kept with a dead letter for replay.
    fn replay(&self, request: &Request) -> String {
        serde_json::json!({
            "method": self.method.as_str(),
            "url": request.url,
            "body": request.body,
        })
        .to_string()
    }

    async fn attempt(&self, request: &Request) -> Attempt {
        let mut builder = self.client.request(self.method.clone(), &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            if let Some(ct) = &self.content_type {
                builder = builder.header(CONTENT_TYPE, ct);
            }
            builder = builder.body(body.clone());
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = error_text(&e);
                return if e.is_builder() || e.is_redirect() {
                    Attempt::Permanent {
                        error,
                        status: None,
                    }
                } else {
                    Attempt::Retry {
                        error,
                        status: None,
                        retry_after: None,
                    }
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            // Read the answer so the connection can be reused; it does not matter whether that works.
            let mut read = 0;
            while let Ok(Some(chunk)) = response.chunk().await {
                read += chunk.len();
                if read > OK_BODY_MAX {
                    break;
                }
            }
            return Attempt::Delivered;
        }
        failed(response).await
    }

    /// The wait before retry number `retry` (1-based): `Retry-After` if given, else full jitter over
    /// `backoff * 2^(retry-1)`; both capped by `max-backoff`.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_backoff);
        }
        let cap = self
            .backoff
            .saturating_mul(1u32 << (retry - 1).min(30))
            .min(self.max_backoff);
        let ms = cap.as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(rand::random_range(0..=ms))
    }

    /// Delivers one event: `None` at shutdown.
    async fn deliver_one(&self, event: &StoredEvent) -> Option<Outcome> {
        let request = self.request(event);
        if let Err(e) = reqwest::Url::parse(&request.url) {
            let error = format!("the URL {:?} is invalid for this event: {e}", request.url);
            tracing::warn!(sink = %self.name, event = event.id, attempt = 0, error = %error, "webhook request not sent");
            return Some(Outcome::DeadLetter {
                attempts: 0,
                error,
                request: Some(self.replay(&request)),
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A request in flight at shutdown gets a moment to finish, so that an event the endpoint
            // accepted is recorded as delivered and not sent again after a restart.
            let grace = async {
                self.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            let result = tokio::select! {
                result = self.attempt(&request) => result,
                () = grace => return None,
            };
            let (error, status, retry_after, permanent) = match result {
                Attempt::Delivered => return Some(Outcome::Delivered),
                Attempt::Retry {
                    error,
                    status,
                    retry_after,
                } => (error, status, retry_after, false),
                Attempt::Permanent { error, status } => (error, status, None, true),
            };
            if permanent || attempt > self.retries {
                tracing::warn!(sink = %self.name, event = event.id, attempt, status, error = %error, "webhook request failed; giving up");
                return Some(Outcome::DeadLetter {
                    attempts: attempt,
                    error,
                    request: Some(self.replay(&request)),
                });
            }
            let wait = self.delay(attempt, retry_after);
            tracing::warn!(sink = %self.name, event = event.id, attempt, status, error = %error, retry_in = ?wait, "webhook request failed; will retry");
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// A reqwest error with its causes (reqwest's own text says little: "error sending request").
fn error_text(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    let mut last = String::new();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause; keep each text once.
        if !cause_text.is_empty() && !last.contains(&cause_text) && cause_text != last {
            let _ = write!(text, ": {cause_text}");
        }
        last = cause_text;
        source = cause.source();
    }
    text
}

impl Destination for WebhookSink {
    fn batch_size(&self) -> usize {
        // One request per event: progress is recorded every few events.
        8
    }

    async fn deliver(&mut self, events: &[StoredEvent]) -> (Vec<Outcome>, Option<String>) {
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            if self.shutdown.is_cancelled() {
                return (outcomes, Some("shutdown".to_owned()));
            }
            match self.deliver_one(event).await {
                Some(outcome) => outcomes.push(outcome),
                None => return (outcomes, Some("shutdown".to_owned())),
            }
        }
        (outcomes, None)
    }
}

/// A `Retry-After` value as a wait: seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`,
/// counted from `now`; a date in the past is no wait).
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What a non-2xx answer means: retry (408, 429, 5xx; after its `Retry-After` when given) or give up,
/// with the status and the start of the body as the error.
async fn failed(mut response: reqwest::Response) -> Attempt {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
    let mut snippet = Vec::new();
    while snippet.len() < ERROR_BODY_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let mut error = format!("HTTP {status}");
    let snippet = String::from_utf8_lossy(&snippet[..snippet.len().min(ERROR_BODY_MAX)]);
    let snippet = snippet.trim();
    if !snippet.is_empty() {
        let _ = write!(error, ": {snippet}");
    }
    let code = Some(status.as_u16());
    if retryable(status) {
        Attempt::Retry {
            error,
            status: code,
            retry_after,
        }
    } else {
        Attempt::Permanent {
            error,
            status: code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    fn event(data: Option<&str>) -> StoredEvent {
        StoredEvent {
            id: 42,
            frame_id: Some(7),
            event: alarm_center_store::NewEvent {
                frame: alarm_center_store::FrameRef::None,
                device: "NVR 1/a".into(),
                code: "VideoMotion".into(),
                action: "start".into(),
                index: Some(2),
                channel: Some(3),
                channel_name: None,
                kind: "alarm".into(),
                device_time: None,
                // 2024-05-01T10:00:00.000Z
                received_at: 1_714_557_600_000,
                data: data.map(String::from),
                synthetic: None,
            },
        }
    }

    fn render(template: &str, event: &StoredEvent, escape: Escape) -> String {
        Template::parse(template)
            .unwrap()
            .render(&Ctx::new(event), escape)
    }

    #[test]
    fn templates_render_fields_data_keys_and_json() {
        let e = event(Some(r#"{"Name":"say \"hi\"","N":5,"O":{"a":1},"Z":null}"#));
        assert_eq!(
            render("{{id}} {{ device }} {{channel}} {{channel_name}}|{{data.Name}}|{{data.N}}|{{data.O}}|{{data.Z}}|{{data.Nope}}", &e, Escape::None),
            r#"42 NVR 1/a 3 |say "hi"|5|{"a":1}||"#
        );
        assert_eq!(
            render("{{device|json}} {{id|json}} {{channel_name|json}} {{data.Name|json}} {{data.O | json}}", &e, Escape::None),
            r#""NVR 1/a" 42 null "say \"hi\"" {"a":1}"#
        );
        assert_eq!(
            render("{{data}}", &e, Escape::None),
            e.event.data.as_deref().unwrap()
        );
        assert_eq!(
            render("{{data}}|{{data|json}}", &event(None), Escape::None),
            "|null"
        );
        let whole: serde_json::Value =
            serde_json::from_str(&render("{{event}}", &e, Escape::None)).unwrap();
        assert_eq!(whole["id"], 42);
        assert_eq!(
            render("http://h/{{device}}?c={{code}}", &e, Escape::Url),
            "http://h/NVR%201%2Fa?c=VideoMotion"
        );
        let mut crlf = event(None);
        crlf.event.device = "a\r\nX-Evil: 1".into();
        assert_eq!(render("{{device}}", &crlf, Escape::Header), "a  X-Evil: 1");
    }

    #[test]
    fn template_errors_are_reported() {
        assert!(Template::parse("{{nope}}")
            .unwrap_err()
            .contains("unknown field \"nope\""));
        assert!(Template::parse("{{id|upper}}")
            .unwrap_err()
            .contains("unknown filter"));
        assert!(Template::parse("a {{id").unwrap_err().contains("unclosed"));
        assert!(Template::parse("{{data.}}").is_err());
        assert_eq!(
            Template::parse("a } }} b").unwrap().parts,
            vec![Part::Text("a } }} b".into())]
        );
    }

    #[test]
    fn validation_lists_every_problem() {
        let good = WebhookConfig {
            name: "ok_1-2".into(),
            url: "https://example.com/hook/{{device}}".into(),
            headers: [(
                "Authorization".to_owned(),
                "Bearer {{data.Token}}".to_owned(),
            )]
            .into(),
            body: Some(r#"{"d":{{device|json}}}"#.into()),
            method: "put".into(),
            ..WebhookConfig::default()
        };
        assert_eq!(good.validate(), Vec::<String>::new());
        let bad = WebhookConfig {
            name: "bad name".into(),
            url: "ftp://example.com/{{nope}}".into(),
            method: "TRACE".into(),
            headers: [("Bad Header".to_owned(), "{{device|x}}".to_owned())].into(),
            body: Some("{{evt}}".into()),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(1),
            ..WebhookConfig::default()
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        let scheme = WebhookConfig {
            url: "ftp://example.com/".into(),
            ..good.clone()
        }
        .validate();
        assert!(scheme[0].contains("http:// or https://"), "{scheme:?}");
        let templated_host = WebhookConfig {
            url: "{{data.Url}}".into(),
            ..good.clone()
        }
        .validate();
        assert_eq!(templated_host.len(), 1, "{templated_host:?}");
        assert_eq!(
            WebhookConfig {
                name: String::new(),
                ..good
            }
            .validate(),
            ["name is required"]
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_under_the_cap() {
        let config = WebhookConfig {
            name: "t".into(),
            url: "http://127.0.0.1:1/".into(),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..WebhookConfig::default()
        };
        let sink = WebhookSink::new(config, CancellationToken::new()).unwrap();
        for _ in 0..200 {
            assert!(sink.delay(1, None) <= Duration::from_millis(100));
            assert!(sink.delay(2, None) <= Duration::from_millis(200));
            assert!(sink.delay(40, None) <= Duration::from_millis(350));
        }
        assert!((0..200).any(|_| sink.delay(3, None) > Duration::from_millis(200)));
        assert_eq!(
            sink.delay(1, Some(Duration::from_secs(1))),
            Duration::from_millis(350)
        );
        assert_eq!(
            sink.delay(1, Some(Duration::from_millis(10))),
            Duration::from_millis(10)
        );
    }
}
