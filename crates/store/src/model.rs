//! The words of the event log as types: what an event says happened, what kind of event it is, and
//! why the server made it. Each is stored and serialised as the same lower-case text as before
//! (`start`, `alarm`, `auto-clear`); text the server does not know (a device's own action or kind) is
//! kept as it came, in `Other`.

use std::fmt;

/// Implements text conversions for an enum with named variants and an `Other(String)` one.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// `text` as this type: a known name (ignoring ASCII case), else `Other` with the text.
            pub fn parse(text: &str) -> $name {
                $(if text.eq_ignore_ascii_case($text) {
                    return $name::$variant;
                })+
                $name::Other(text.to_owned())
            }

            /// The stored and shown text.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(text) => text,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Reads as its text (`&*action`, `Option<_>::as_deref`).
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                $name::parse(text)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok($name::parse(&text))
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<$name> {
                Ok($name::parse(value.as_str()?))
            }
        }
    };
}

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventAction {
    /// An alarm began.
    Start,
    /// An alarm ended.
    Stop,
    /// A one-off occurrence (and the server's online/offline events).
    Pulse,
    /// A state report.
    State,
    /// Any other action text a device sent.
    Other(String),
}

text_enum!(EventAction { Start => "start", Stop => "stop", Pulse => "pulse", State => "state" });

/// What kind of event: from the frame that carried it, or the server's own about a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An alarm frame's event.
    Alarm,
    /// The server's event about a device (online, offline).
    Device,
    /// A report frame's event.
    Report,
    /// A device's log record (not an alarm: never a Home Assistant entity).
    Log,
    /// Any other frame kind.
    Other(String),
}

text_enum!(EventKind { Alarm => "alarm", Device => "device", Report => "report", Log => "log" });

/// Why the server made an event that no device sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Synthetic {
    /// The device went offline with the alarm active (`supervision.stop-alarms-on-offline`).
    Offline,
    /// No stop came within the code's `[auto-clear]` limit.
    AutoClear,
    /// Any other reason (kept as stored).
    Other(String),
}

text_enum!(Synthetic { Offline => "offline", AutoClear => "auto-clear" });

/// Which raw frame an event, or a device's first contact, refers to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FrameRef {
    /// No frame: the server made the event.
    #[default]
    None,
    /// The frame that carried it, whose place in the batch is not known yet: whoever assembles the
    /// batch turns it into [`FrameRef::InBatch`] (or [`FrameRef::None`] when that frame is not
    /// archived). Written as is, it refers to nothing.
    Carrier,
    /// `Batch::frames[i]`.
    InBatch(usize),
}

impl FrameRef {
    /// [`FrameRef::Carrier`] resolved to the carrier's place in the batch (`None` when not archived).
    pub fn resolve(self, carrier: Option<usize>) -> FrameRef {
        match (self, carrier) {
            (FrameRef::Carrier, Some(i)) => FrameRef::InBatch(i),
            (FrameRef::Carrier, None) => FrameRef::None,
            (other, _) => other,
        }
    }

    /// The place in the batch, if any.
    pub fn in_batch(self) -> Option<usize> {
        match self {
            FrameRef::InBatch(i) => Some(i),
            FrameRef::None | FrameRef::Carrier => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_unknown_text_is_kept() {
        assert_eq!(EventAction::parse("Start"), EventAction::Start);
        assert_eq!(EventAction::Stop.as_str(), "stop");
        assert_eq!(
            EventAction::parse("Toggle"),
            EventAction::Other("Toggle".into())
        );
        assert_eq!(EventAction::parse("Toggle").as_str(), "Toggle");
        assert_eq!(Synthetic::AutoClear.to_string(), "auto-clear");
        assert!(EventKind::Alarm == "alarm");
        let json = serde_json::to_string(&EventKind::Device).unwrap();
        assert_eq!(json, "\"device\"");
        let back: EventKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, EventKind::Device);
    }

    #[test]
    fn a_carrier_reference_resolves_to_its_place_or_to_nothing() {
        assert_eq!(FrameRef::Carrier.resolve(Some(3)), FrameRef::InBatch(3));
        assert_eq!(FrameRef::Carrier.resolve(None), FrameRef::None);
        assert_eq!(FrameRef::None.resolve(Some(3)), FrameRef::None);
        assert_eq!(FrameRef::InBatch(1).resolve(Some(3)).in_batch(), Some(1));
        assert_eq!(FrameRef::Carrier.in_batch(), None);
    }
}
