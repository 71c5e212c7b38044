//! Events extracted from frames, and the device identity a frame carries.

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// The condition began (mask bit newly set, JSON `Start`, XM `Start`).
    Start,
    /// The condition ended.
    Stop,
    /// A one-off occurrence with no duration; also used when a JSON event carries no `Action`.
    Pulse,
    /// A state report (JSON `State`).
    State,
    /// Any other action text, lower-cased verbatim.
    Other(String),
}

impl Action {
    /// Parses a device's action text case-insensitively (`Start`, `stop`, …).
    pub fn parse(text: &str) -> Action {
        const KNOWN: [(&str, Action); 4] = [
            ("start", Action::Start),
            ("stop", Action::Stop),
            ("pulse", Action::Pulse),
            ("state", Action::State),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| text.eq_ignore_ascii_case(name))
            .map_or_else(|| Action::Other(text.to_lowercase()), |(_, action)| action)
    }

    /// The lower-case name used in the output.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Pulse => "pulse",
            Action::State => "state",
            Action::Other(text) => text,
        }
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One event: an alarm starting or stopping, a pulse, a state report.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event code: the JSON `Code` / XM `Event` verbatim, or the normalized name of a DVRIP alarm type.
    pub code: Cow<'static, str>,
    /// Start, stop, pulse, state.
    pub action: Action,
    /// 0-based input/channel/disk index when the event names one (JSON may send -1 for "none").
    pub index: Option<i64>,
    /// The device's own timestamp, verbatim (`Time`, `LocaleTime` or `StartTime`; usually without zone).
    pub device_time: Option<Box<str>>,
    /// Extra event fields as compact JSON text (JSON `Data`, remaining XM fields, text body keys).
    pub data: Option<JsonText>,
}

impl Event {
    /// The 1-based channel number (index + 1) when the index is non-negative.
    pub fn channel(&self) -> Option<i64> {
        self.index
            .filter(|i| *i >= 0)
            .and_then(|i| i.checked_add(1))
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("code", &self.code)?;
        map.serialize_entry("action", &self.action)?;
        if let Some(index) = self.index {
            map.serialize_entry("index", &index)?;
        }
        if let Some(channel) = self.channel() {
            map.serialize_entry("channel", &channel)?;
        }
        if let Some(time) = &self.device_time {
            map.serialize_entry("device_time", time)?;
        }
        if let Some(data) = &self.data {
            map.serialize_entry("data", data)?;
        }
        map.end()
    }
}

/// Identity fields a frame carries about the device that sent it. Only what the frame says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// Serial number (XM `SerialID`, JSON serial fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// MAC address as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// IP address the device reports (XM `Address` as dotted IPv4, text `Global IP`, JSON IP fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// DDNS/domain name (text `Domain name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl DeviceInfo {
    /// True when the frame carried no identity at all.
    pub fn is_empty(&self) -> bool {
        self.serial.is_none() && self.mac.is_none() && self.ip.is_none() && self.domain.is_none()
    }
}

/// A JSON text known to be valid, as the device wrote it. Serialised as the JSON it contains (with the
/// whitespace outside strings removed, so that it fits on one line), not as a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Box<str>);

impl JsonText {
    /// Wraps text that is known to be valid JSON.
    pub(crate) fn new(valid_json: &str) -> JsonText {
        JsonText(valid_json.into())
    }

    /// Wraps a string known to be valid JSON, without copying it (when it has no spare capacity).
    pub(crate) fn from_string(valid_json: String) -> JsonText {
        JsonText(valid_json.into_boxed_str())
    }

    /// Serialises a value.
    pub fn from_value(value: &serde_json::Value) -> JsonText {
        JsonText(value.to_string().into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text into a value.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serde_json::from_str::<serde_json::Value>(&self.0).is_err() {
            // Valid JSON grammar that serde_json cannot hold (e.g. 1e999): keep it as a string.
            return serializer.serialize_str(&self.0);
        }
        match serde_json::value::RawValue::from_string(minify_json(self.0.as_bytes())) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

/// Removes the whitespace outside strings from a JSON text: one object per output line, with the
/// original key order and number spelling kept. Invalid UTF-8 is replaced.
pub fn minify_json(text: &[u8]) -> String {
    if !text
        .iter()
        .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return String::from_utf8_lossy(text).into_owned();
    }
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            continue;
        }
        out.push(b);
    }
    match String::from_utf8(out) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}
