//! `[[sinks.webhook]]` and its validation.

use super::*;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    /// Name (the sink is called `webhook:<name>`): letters, digits, `-` and `_`.
    pub name: String,
    /// On or off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Target URL template (http or https); values are percent-encoded.
    pub url: String,
    /// GET, POST, PUT, PATCH or DELETE.
    #[serde(default = "post")]
    pub method: String,
    /// Extra headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body template. Default: the event as JSON (for POST, PUT and PATCH; GET and DELETE send no body).
    #[serde(default)]
    pub body: Option<String>,
    /// Content-Type of the body (unless `headers` sets one).
    #[serde(default = "json")]
    pub content_type: String,
    /// Time limit of one request, answer included.
    #[serde(default = "ten_seconds", deserialize_with = "crate::config::duration")]
    pub timeout: Duration,
    /// Attempts after the first before an event becomes a dead letter.
    #[serde(default = "five")]
    pub retries: u32,
    /// Delay before the first retry; it doubles at each retry (with full jitter).
    #[serde(default = "one_second", deserialize_with = "crate::config::duration")]
    pub backoff: Duration,
    /// Longest delay between attempts (also caps `Retry-After`).
    #[serde(default = "one_minute", deserialize_with = "crate::config::duration")]
    pub max_backoff: Duration,
    /// Rules.
    #[serde(default)]
    pub rules: super::super::rules::RulesConfig,
}

pub(super) fn yes() -> bool {
    true
}
pub(super) fn post() -> String {
    "POST".into()
}
pub(super) fn json() -> String {
    "application/json".into()
}
pub(super) fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn five() -> u32 {
    5
}
pub(super) fn one_second() -> Duration {
    Duration::from_secs(1)
}
pub(super) fn one_minute() -> Duration {
    Duration::from_secs(60)
}

impl Default for WebhookConfig {
    /// The defaults of every optional key; `name` and `url` are empty (invalid) and must be set.
    fn default() -> Self {
        WebhookConfig {
            name: String::new(),
            enabled: true,
            url: String::new(),
            method: post(),
            headers: BTreeMap::new(),
            body: None,
            content_type: json(),
            timeout: ten_seconds(),
            retries: five(),
            backoff: one_second(),
            max_backoff: one_minute(),
            rules: super::super::rules::RulesConfig::default(),
        }
    }
}

impl WebhookConfig {
    /// Lists what is wrong with this webhook (empty when usable). Messages name the key at fault but not
    /// the webhook; the caller prefixes them.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.is_empty() {
            problems.push("name is required".to_owned());
        } else if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!(
                "name {:?} may only contain letters, digits, '-' and '_'",
                self.name
            ));
        }
        if let Err(e) = parse_method(&self.method) {
            problems.push(e);
        }
        match Template::parse(&self.url) {
            Err(e) => problems.push(format!("url: {e}")),
            Ok(url) => {
                if let Err(e) = check_url(&url) {
                    problems.push(format!("url {:?}: {e}", self.url));
                }
            }
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!("headers: {name:?} is not a valid header name"));
            }
            match Template::parse(value) {
                Err(e) => problems.push(format!("headers.{name}: {e}")),
                Ok(t) => {
                    let literal_ok = t.parts.iter().all(|p| match p {
                        Part::Text(text) => HeaderValue::from_str(text).is_ok(),
                        Part::Field { .. } => true,
                    });
                    if !literal_ok {
                        problems.push(format!(
                            "headers.{name}: the value contains characters not allowed in a header"
                        ));
                    }
                }
            }
        }
        if let Some(body) = &self.body {
            if let Err(e) = Template::parse(body) {
                problems.push(format!("body: {e}"));
            }
        }
        if HeaderValue::from_str(&self.content_type).is_err() || self.content_type.trim().is_empty()
        {
            problems.push(format!(
                "content-type {:?} is not a valid header value",
                self.content_type
            ));
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be more than 0s".to_owned());
        }
        if self.max_backoff < self.backoff {
            problems.push(format!(
                "max-backoff ({}) must not be shorter than backoff ({})",
                humantime::format_duration(self.max_backoff),
                humantime::format_duration(self.backoff)
            ));
        }
        problems
    }
}

pub(super) fn parse_method(text: &str) -> Result<Method, String> {
    let upper = text.trim().to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(format!(
            "method {text:?} is not one of {}",
            METHODS.join(", ")
        ));
    }
    Method::from_bytes(upper.as_bytes()).map_err(|e| format!("method {text:?}: {e}"))
}

/// The URL template must fix the scheme (http or https) and give a URL for any event.
pub(super) fn check_url(url: &Template) -> Result<(), String> {
    let fixed = match url.parts.first() {
        Some(Part::Text(text)) => text.to_ascii_lowercase(),
        _ => String::new(),
    };
    if !(fixed.starts_with("http://") || fixed.starts_with("https://")) {
        return Err("must start with http:// or https://".to_owned());
    }
    let sample = url.render(&Ctx::new(&sample_event()), Escape::Url);
    let parsed = reqwest::Url::parse(&sample).map_err(|e| format!("not a URL ({e})"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    Ok(())
}

pub(super) fn sample_event() -> StoredEvent {
    StoredEvent {
        id: 1,
        frame_id: Some(1),
        event: alarm_center_store::NewEvent {
            frame: alarm_center_store::FrameRef::None,
            device: "device".into(),
            code: "VideoMotion".into(),
            action: "start".into(),
            index: Some(0),
            channel: Some(1),
            channel_name: Some("channel".into()),
            kind: "alarm".into(),
            device_time: Some("2024-01-01T00:00:00+00:00".into()),
            // 2024-01-01T00:00:00.000Z
            received_at: 1_704_067_200_000,
            data: Some("{}".into()),
            synthetic: None,
        },
    }
}

// ---------------------------------------------------------------------------------------------------
// Templates
