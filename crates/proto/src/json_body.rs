//! Reading events, device identity and keep-alive periods out of JSON bodies, whatever the framing.
//!
//! The body is read in one pass with a serde visitor that picks out the keys we know (ignoring ASCII
//! case) and skips everything else without building a tree; an event's `Data` is kept as its raw JSON
//! text. This is several times cheaper than parsing into `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Action, DeviceInfo, Event, JsonText};
use crate::xm;

/// What a JSON body says.
#[derive(Debug, Default)]
pub(crate) struct JsonFacts {
    pub(crate) events: Vec<Event>,
    pub(crate) method: Option<String>,
    pub(crate) has_result: bool,
    pub(crate) keepalive_period: Option<u32>,
    /// An XM message whose `Type` is `"Log"` (the device's "Log" upload flag), not an alarm.
    pub(crate) xm_log: bool,
}

/// The keys we read, whatever their case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Method,
    Result,
    Params,
    EventList,
    Code,
    Action,
    Index,
    Data,
    /// A device time key; the number ranks it (lower is preferred).
    Time(u8),
    XmEvent,
    Status,
    Channel,
    Serial,
    Mac,
    Ip,
    Address,
    Domain,
    Period,
    Other,
}

/// Classifies an object key, ignoring ASCII case.
pub(crate) fn key_of(name: &str) -> Key {
    // Lower-case into a stack buffer and match: no allocation, one pass over the key.
    let mut buf = [0u8; 20];
    let Some(lower) = buf.get_mut(..name.len()) else {
        return Key::Other;
    };
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    match &*lower {
        b"method" => Key::Method,
        b"result" => Key::Result,
        b"params" => Key::Params,
        b"eventlist" => Key::EventList,
        b"code" => Key::Code,
        b"action" => Key::Action,
        b"index" => Key::Index,
        b"data" => Key::Data,
        b"localetime" => Key::Time(0),
        b"time" => Key::Time(1),
        b"starttime" => Key::Time(2),
        b"localtime" => Key::Time(3),
        b"event" => Key::XmEvent,
        b"status" => Key::Status,
        b"channel" => Key::Channel,
        b"serialno" | b"serialnumber" | b"serialid" | b"serial" | b"deviceserial" | b"devicesn"
        | b"sn" => Key::Serial,
        b"mac" | b"macaddress" | b"macaddr" => Key::Mac,
        b"ip" | b"ipaddress" | b"ipaddr" => Key::Ip,
        b"address" => Key::Address,
        b"domain" | b"domainname" | b"ddns" => Key::Domain,
        // `KeepAlive` / `nKeepAlive`: the NetSDK heartbeat (0x4028) names its period so.
        b"timeout" | b"keepaliveperiod" | b"keepaliveinterval" | b"aliveinterval"
        | b"keepalivetime" | b"keepalive" | b"nkeepalive" => Key::Period,
        _ => Key::Other,
    }
}

/// An object key, borrowed from the input when it has no escapes, with its classification.
struct KeyName<'de>(Key, Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName(key_of(v), Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName(key_of(v), Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value reduced to what we need from a scalar; objects and arrays are skipped.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Int(i64),
    Other,
}

impl Scalar<'_> {
    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Other => None,
        }
    }

    fn text(self) -> Option<String> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s.into_owned()),
            _ => None,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Other, Scalar::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(if v.is_finite() {
            Scalar::Int(v as i64)
        } else {
            Scalar::Other
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// The fields of one JSON object that we read. Objects nest: `params`, `eventList[]`.
#[derive(Default)]
struct Object<'de> {
    method: Option<String>,
    has_result: bool,
    params: Option<Box<Object<'de>>>,
    #[expect(clippy::vec_box)]
    // boxed: an `Object` is large and moves through serde's layers by value
    event_list: Option<Vec<Box<Object<'de>>>>,
    code: Option<String>,
    action: Option<Cow<'de, str>>,
    index: Option<i64>,
    data: Option<&'de RawValue>,
    time: Option<(u8, String)>,
    xm_event: Option<String>,
    status: Option<Cow<'de, str>>,
    channel: Option<i64>,
    device: DeviceInfo,
    period: Option<u32>,
    /// Keys we do not read, with their raw values (the data of an XM event).
    others: Vec<(Cow<'de, str>, &'de RawValue)>,
}

/// An object, or nothing when the value is of another type.
struct MaybeObject<'de>(Option<Box<Object<'de>>>);

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = MaybeObject<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut o = Box::<Object<'de>>::default();
        while let Some(KeyName(key, name)) = map.next_key::<KeyName<'de>>()? {
            match key {
                Key::Params => o.params = map.next_value::<MaybeObject<'de>>()?.0,
                Key::EventList => o.event_list = map.next_value::<MaybeList<'de>>()?.0,
                Key::Data => o.data = Some(map.next_value::<&'de RawValue>()?),
                Key::Other => o.others.push((name, map.next_value::<&'de RawValue>()?)),
                Key::Result => {
                    map.next_value::<IgnoredAny>()?;
                    o.has_result = true;
                }
                _ => {
                    let value: Scalar<'de> = map.next_value()?;
                    o.set(key, value);
                }
            }
        }
        Ok(MaybeObject(Some(o)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeObject(None))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeObject(None))
    }
}

impl<'de> Deserialize<'de> for MaybeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor)
    }
}

/// An array of objects (non-objects skipped), or nothing when the value is not an array.
#[expect(clippy::vec_box)] // see `Object::event_list`
struct MaybeList<'de>(Option<Vec<Box<Object<'de>>>>);

impl<'de> Deserialize<'de> for MaybeList<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = MaybeList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<MaybeObject<'de>>()? {
                    items.extend(item.0);
                }
                Ok(MaybeList(Some(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeList(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeList(None))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

impl Object<'_> {
    /// Stores a scalar under its key; the first value of each identity field wins.
    fn set(&mut self, key: Key, value: Scalar<'_>) {
        fn first(slot: &mut Option<String>, value: Option<String>) {
            if slot.is_none() {
                *slot = value;
            }
        }
        match key {
            Key::Method => self.method = value.text(),
            Key::Code => self.code = value.text(),
            Key::XmEvent => self.xm_event = value.text(),
            Key::Action => self.action = value.text().map(Cow::Owned),
            Key::Status => self.status = value.text().map(Cow::Owned),
            Key::Index => self.index = value.int(),
            Key::Channel => self.channel = value.int(),
            Key::Time(rank) => {
                if self.time.as_ref().is_none_or(|(r, _)| rank < *r) {
                    if let Some(text) = value.text() {
                        self.time = Some((rank, text));
                    }
                }
            }
            Key::Serial => first(&mut self.device.serial, value.text()),
            Key::Mac => first(&mut self.device.mac, value.text()),
            Key::Ip => first(&mut self.device.ip, value.text()),
            Key::Domain => first(&mut self.device.domain, value.text()),
            // XM writes its IPv4 as the hex of a little-endian u32; keep other spellings verbatim.
            Key::Address => {
                let text = value.text();
                let ip = text
                    .as_deref()
                    .and_then(xm::address_to_ipv4)
                    .map(|ip| ip.to_string());
                first(&mut self.device.ip, ip.or(text));
            }
            Key::Period => {
                if self.period.is_none() {
                    self.period = value
                        .int()
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p > 0);
                }
            }
            Key::Params | Key::EventList | Key::Data | Key::Result | Key::Other => {}
        }
    }

    /// The event this object describes: a Dahua `Code` object or an XM `Event` object.
    fn into_event(self: Box<Self>, device: &mut DeviceInfo) -> Option<Event> {
        if let Some(code) = self.code {
            // The event's own time keys first, else those inside its Data.
            let inner = self
                .data
                .and_then(|raw| serde_json::from_str::<MaybeObject<'_>>(raw.get()).ok()?.0);
            merge(device, self.device);
            let mut time = self.time.map(|(_, t)| t);
            if let Some(inner) = inner {
                time = time.or(inner.time.map(|(_, t)| t));
                merge(device, inner.device);
            }
            return Some(Event {
                code: Cow::Owned(code),
                action: self.action.as_deref().map_or(Action::Pulse, Action::parse),
                index: self.index,
                device_time: time,
                data: self
                    .data
                    .filter(|raw| raw.get() != "null")
                    .map(|raw| JsonText::new(raw.get())),
            });
        }
        let code = self.xm_event?;
        let mut data = String::from("{");
        for (i, (key, raw)) in self.others.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
            data.push(':');
            data.push_str(raw.get());
        }
        data.push('}');
        Some(Event {
            code: Cow::Owned(code),
            action: self.status.as_deref().map_or(Action::Pulse, Action::parse),
            index: self.channel,
            device_time: self.time.map(|(_, t)| t),
            data: (!self.others.is_empty()).then(|| JsonText::new(&data)),
        })
    }
}

/// Fills the empty fields of `device` from `more`.
fn merge(device: &mut DeviceInfo, more: DeviceInfo) {
    device.serial = device.serial.take().or(more.serial);
    device.mac = device.mac.take().or(more.mac);
    device.ip = device.ip.take().or(more.ip);
    device.domain = device.domain.take().or(more.domain);
}

/// Reads what a JSON body says. `Err` when the text is not valid JSON.
pub(crate) fn json_facts(
    text: &[u8],
    device: &mut DeviceInfo,
) -> Result<JsonFacts, serde_json::Error> {
    let MaybeObject(top) = serde_json::from_slice::<MaybeObject<'_>>(text)?;
    let Some(mut top) = top else {
        return Ok(JsonFacts::default());
    };
    let mut found = std::mem::take(&mut top.device);
    let mut params = top.params.take();
    if let Some(params) = params.as_deref_mut() {
        merge(&mut found, std::mem::take(&mut params.device));
    }
    let keepalive_period = top.period.or(params.as_ref().and_then(|p| p.period));
    let method = top.method.take();
    let has_result = top.has_result;
    let xm_log = top.xm_event.is_some()
        && top.others.iter().any(|(key, raw)| {
            key.eq_ignore_ascii_case("type") && raw.get().eq_ignore_ascii_case("\"log\"")
        });
    // Events: params.eventList[], a top-level eventList, a Code/Event object at the top or in params.
    let list = params
        .as_deref_mut()
        .and_then(|p| p.event_list.take())
        .or_else(|| top.event_list.take());
    let events: Vec<Event> = match list {
        Some(list) => list
            .into_iter()
            .filter_map(|o| o.into_event(&mut found))
            .collect(),
        None if top.code.is_some() || top.xm_event.is_some() => {
            top.into_event(&mut found).into_iter().collect()
        }
        None => params
            .filter(|p| p.code.is_some() || p.xm_event.is_some())
            .and_then(|p| p.into_event(&mut found))
            .into_iter()
            .collect(),
    };
    merge(device, found);
    Ok(JsonFacts {
        events,
        method,
        has_result,
        keepalive_period,
        xm_log,
    })
}
