//! Templates of webhook URLs, headers and bodies: `{{field}}`, `{{field|json}}`, `{{data.Key}}`.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Field {
    Id,
    Device,
    Code,
    Action,
    Index,
    Channel,
    ChannelName,
    Kind,
    DeviceTime,
    ReceivedAt,
    FrameId,
    Synthetic,
    Data,
    Event,
    DataKey(String),
}

pub(super) const FIELDS: [&str; 14] = [
    "id",
    "device",
    "code",
    "action",
    "index",
    "channel",
    "channel_name",
    "kind",
    "device_time",
    "received_at",
    "frame_id",
    "synthetic",
    "data",
    "event",
];

impl Field {
    pub(super) fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "id" => Field::Id,
            "device" => Field::Device,
            "code" => Field::Code,
            "action" => Field::Action,
            "index" => Field::Index,
            "channel" => Field::Channel,
            "channel_name" => Field::ChannelName,
            "kind" => Field::Kind,
            "device_time" => Field::DeviceTime,
            "received_at" => Field::ReceivedAt,
            "frame_id" => Field::FrameId,
            "synthetic" => Field::Synthetic,
            "data" => Field::Data,
            "event" => Field::Event,
            _ => {
                let key = name.strip_prefix("data.")?;
                if key.is_empty() {
                    return None;
                }
                Field::DataKey(key.to_owned())
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Text(String),
    Field { field: Field, json: bool },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Template {
    pub(super) parts: Vec<Part>,
}

/// How rendered values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escape {
    None,
    /// Percent-encoding of everything but unreserved characters.
    Url,
    /// Control characters (line breaks) become spaces.
    Header,
}

impl Template {
    pub(super) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
            let inner = after[..close].trim();
            let (name, filter) = match inner.split_once('|') {
                Some((name, filter)) => (name.trim(), Some(filter.trim())),
                None => (inner, None),
            };
            let json = match filter {
                None => false,
                Some("json") => true,
                Some(other) => {
                    return Err(format!(
                        "unknown filter {other:?} in {{{{{inner}}}}}; the only filter is `json`"
                    ))
                }
            };
            let field = Field::parse(name).ok_or_else(|| {
                format!(
                    "unknown field {name:?} in {{{{{inner}}}}}; fields are {} and data.<key>",
                    FIELDS.join(", ")
                )
            })?;
            parts.push(Part::Field { field, json });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub(super) fn render(&self, ctx: &Ctx<'_>, escape: Escape) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field { field, json } => {
                    let value = ctx.value(field);
                    let text = if *json { value.json() } else { value.plain() };
                    match escape {
                        Escape::None => out.push_str(&text),
                        Escape::Url => percent_encode(&text, &mut out),
                        Escape::Header => {
                            out.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }))
                        }
                    }
                }
            }
        }
        out
    }
}

/// Everything but RFC 3986's unreserved characters (letters, digits, `-`, `.`, `_`, `~`).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded as one URL component (UTF-8 bytes, upper-case hex).
pub(super) fn percent_encode(text: &str, out: &mut String) {
    out.extend(percent_encoding::utf8_percent_encode(text, COMPONENT));
}

/// A field's value.
pub(super) enum Value {
    Missing,
    Text(String),
    Number(i64),
    /// JSON text (objects, arrays, booleans, numbers of the data).
    Json(String),
}

impl Value {
    pub(super) fn plain(self) -> String {
        match self {
            Value::Missing => String::new(),
            Value::Text(s) | Value::Json(s) => s,
            Value::Number(n) => n.to_string(),
        }
    }

    pub(super) fn json(self) -> String {
        match self {
            Value::Missing => "null".to_owned(),
            Value::Text(s) => serde_json::Value::String(s).to_string(),
            Value::Number(n) => n.to_string(),
            Value::Json(s) => s,
        }
    }
}

/// An event being rendered; its JSON forms are computed once.
pub(super) struct Ctx<'a> {
    pub(super) event: &'a StoredEvent,
    pub(super) data: OnceCell<Option<serde_json::Map<String, serde_json::Value>>>,
    pub(super) json: OnceCell<String>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(event: &'a StoredEvent) -> Ctx<'a> {
        Ctx {
            event,
            data: OnceCell::new(),
            json: OnceCell::new(),
        }
    }

    pub(super) fn event_json(&self) -> &str {
        self.json
            .get_or_init(|| serde_json::to_string(self.event).unwrap_or_else(|_| "null".to_owned()))
    }

    pub(super) fn value(&self, field: &Field) -> Value {
        let e = self.event;
        let text = |s: &str| Value::Text(s.to_owned());
        let opt_text = |s: &Option<String>| s.as_deref().map_or(Value::Missing, text);
        let opt_num = |n: Option<i64>| n.map_or(Value::Missing, Value::Number);
        match field {
            Field::Id => Value::Number(e.id),
            Field::Device => text(&e.event.device),
            Field::Code => text(&e.event.code),
            Field::Action => text(e.event.action.as_str()),
            Field::Index => opt_num(e.event.index),
            Field::Channel => opt_num(e.event.channel),
            Field::ChannelName => opt_text(&e.event.channel_name),
            Field::Kind => text(e.event.kind.as_str()),
            Field::DeviceTime => opt_text(&e.event.device_time),
            Field::ReceivedAt => text(&e.received_at()),
            Field::FrameId => opt_num(e.frame_id),
            Field::Synthetic => e
                .event
                .synthetic
                .as_ref()
                .map_or(Value::Missing, |s| text(s.as_str())),
            Field::Data => e
                .event
                .data
                .as_ref()
                .map_or(Value::Missing, |d| Value::Json(d.clone())),
            Field::Event => Value::Json(self.event_json().to_owned()),
            Field::DataKey(key) => {
                let data = self.data.get_or_init(|| {
                    e.event
                        .data
                        .as_ref()
                        .and_then(|d| serde_json::from_str(d).ok())
                });
                match data.as_ref().and_then(|d| d.get(key)) {
                    None | Some(serde_json::Value::Null) => Value::Missing,
                    Some(serde_json::Value::String(s)) => Value::Text(s.clone()),
                    Some(other) => Value::Json(other.to_string()),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The sink
