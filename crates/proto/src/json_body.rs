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
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct JsonFacts {
    pub(crate) events: Vec<Event>,
    /// A `method` is present (non-empty text).
    pub(crate) has_method: bool,
    /// The `method` ends in `keepalive` (any case).
    pub(crate) keepalive_method: bool,
    pub(crate) has_result: bool,
    pub(crate) keepalive_period: Option<u32>,
    /// An XM message whose `Type` is `"Log"` (the device's "Log" upload flag), not an alarm.
    pub(crate) xm_log: bool,
    /// Identity found anywhere in the body (first value of each field wins).
    pub(crate) device: DeviceInfo,
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

/// The keys we read, lower-case, with their classification ([`key_of`] has them by length).
#[cfg(test)]
const KEYS: [(&[u8], Key); 39] = [
    (b"method", Key::Method),
    (b"result", Key::Result),
    (b"params", Key::Params),
    (b"eventlist", Key::EventList),
    (b"code", Key::Code),
    (b"action", Key::Action),
    (b"index", Key::Index),
    (b"data", Key::Data),
    (b"localetime", Key::Time(0)),
    (b"time", Key::Time(1)),
    (b"starttime", Key::Time(2)),
    (b"localtime", Key::Time(3)),
    (b"event", Key::XmEvent),
    (b"status", Key::Status),
    (b"channel", Key::Channel),
    (b"serialno", Key::Serial),
    (b"serialnumber", Key::Serial),
    (b"serialid", Key::Serial),
    (b"serial", Key::Serial),
    (b"deviceserial", Key::Serial),
    (b"devicesn", Key::Serial),
    (b"sn", Key::Serial),
    (b"mac", Key::Mac),
    (b"macaddress", Key::Mac),
    (b"macaddr", Key::Mac),
    (b"ip", Key::Ip),
    (b"ipaddress", Key::Ip),
    (b"ipaddr", Key::Ip),
    (b"address", Key::Address),
    (b"domain", Key::Domain),
    (b"domainname", Key::Domain),
    (b"ddns", Key::Domain),
    // `KeepAlive` / `nKeepAlive`: the NetSDK heartbeat (0x4028) names its period so.
    (b"timeout", Key::Period),
    (b"keepaliveperiod", Key::Period),
    (b"keepaliveinterval", Key::Period),
    (b"aliveinterval", Key::Period),
    (b"keepalivetime", Key::Period),
    (b"keepalive", Key::Period),
    (b"nkeepalive", Key::Period),
];

/// Classifies an object key, ignoring ASCII case.
pub(crate) fn key_of(name: &str) -> Key {
    // The candidates of the key's length only (at most eight), compared byte by byte: most keys differ
    // from every candidate at their first byte. No allocation, no copy of the key.
    let name = name.as_bytes();
    let candidates: &[(&[u8], Key)] = match name.len() {
        2 => &[(b"sn", Key::Serial), (b"ip", Key::Ip)],
        3 => &[(b"mac", Key::Mac)],
        4 => &[
            (b"code", Key::Code),
            (b"data", Key::Data),
            (b"time", Key::Time(1)),
            (b"ddns", Key::Domain),
        ],
        5 => &[(b"index", Key::Index), (b"event", Key::XmEvent)],
        6 => &[
            (b"method", Key::Method),
            (b"result", Key::Result),
            (b"params", Key::Params),
            (b"action", Key::Action),
            (b"status", Key::Status),
            (b"serial", Key::Serial),
            (b"ipaddr", Key::Ip),
            (b"domain", Key::Domain),
        ],
        7 => &[
            (b"channel", Key::Channel),
            (b"macaddr", Key::Mac),
            (b"address", Key::Address),
            (b"timeout", Key::Period),
        ],
        8 => &[
            (b"serialno", Key::Serial),
            (b"serialid", Key::Serial),
            (b"devicesn", Key::Serial),
        ],
        9 => &[
            (b"eventlist", Key::EventList),
            (b"starttime", Key::Time(2)),
            (b"localtime", Key::Time(3)),
            (b"ipaddress", Key::Ip),
            (b"keepalive", Key::Period),
        ],
        10 => &[
            (b"localetime", Key::Time(0)),
            (b"macaddress", Key::Mac),
            (b"domainname", Key::Domain),
            (b"nkeepalive", Key::Period),
        ],
        12 => &[
            (b"serialnumber", Key::Serial),
            (b"deviceserial", Key::Serial),
        ],
        13 => &[
            (b"aliveinterval", Key::Period),
            (b"keepalivetime", Key::Period),
        ],
        15 => &[(b"keepaliveperiod", Key::Period)],
        17 => &[(b"keepaliveinterval", Key::Period)],
        _ => &[],
    };
    candidates
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map_or(Key::Other, |&(_, key)| key)
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

impl<'de> Scalar<'de> {
    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Other => None,
        }
    }

    /// Non-empty text, borrowed from the input when it has no escapes.
    fn text(self) -> Option<Cow<'de, str>> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
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
    method: Option<Cow<'de, str>>,
    has_result: bool,
    params: Option<Box<Object<'de>>>,
    #[expect(clippy::vec_box)]
    // boxed: an `Object` is large and moves through serde's layers by value
    event_list: Option<Vec<Box<Object<'de>>>>,
    code: Option<Cow<'de, str>>,
    action: Option<Cow<'de, str>>,
    index: Option<i64>,
    data: Option<&'de RawValue>,
    xm_event: Option<Cow<'de, str>>,
    status: Option<Cow<'de, str>>,
    channel: Option<i64>,
    /// Time and identity keys.
    found: Found<'de>,
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

/// The time and identity keys of an object: read in every object we read, and in an event's `Data`.
#[derive(Default)]
struct Found<'de> {
    /// The preferred device time key seen (lower rank wins) and its text.
    time: Option<(u8, Cow<'de, str>)>,
    device: DeviceInfo,
}

impl<'de> Found<'de> {
    /// Stores a time or identity value; the first value of each identity field wins.
    fn set(&mut self, key: Key, value: Scalar<'de>) {
        fn first(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
            if slot.is_none() {
                *slot = value.map(Cow::into_owned);
            }
        }
        match key {
            Key::Time(rank) if self.time.as_ref().is_none_or(|(r, _)| rank < *r) => {
                if let Some(text) = value.text() {
                    self.time = Some((rank, text));
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
                    .map(|ip| Cow::Owned(ip.to_string()));
                first(&mut self.device.ip, ip.or(text));
            }
            _ => {}
        }
    }

    fn time(self) -> Option<String> {
        self.time.map(|(_, t)| t.into_owned())
    }
}

/// The time and identity keys of an event's `Data`, or nothing when it is not an object. Every other
/// value is skipped as [`Object`] would read it, without keeping anything.
struct DataFound<'de>(Option<Found<'de>>);

impl<'de> Deserialize<'de> for DataFound<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = DataFound<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = Found::default();
                while let Some(KeyName(key, _)) = map.next_key::<KeyName<'de>>()? {
                    match key {
                        Key::Params => drop(map.next_value::<MaybeObject<'de>>()?),
                        Key::EventList => drop(map.next_value::<MaybeList<'de>>()?),
                        Key::Data | Key::Other | Key::Result => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        _ => {
                            let value: Scalar<'de> = map.next_value()?;
                            found.set(key, value);
                        }
                    }
                }
                Ok(DataFound(Some(found)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(DataFound(None))
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(DataFound(None))
            }
        }
        d.deserialize_any(DataVisitor)
    }
}

/// Event codes common enough to be kept as static text instead of an allocation per event (the code is
/// still the device's text, byte for byte).
const COMMON_CODES: [&str; 24] = [
    "VideoMotion",
    "VideoMotionInfo",
    "VideoLoss",
    "VideoBlind",
    "VideoAbnormalDetection",
    "AlarmLocal",
    "CrossLineDetection",
    "CrossRegionDetection",
    "SmartMotionHuman",
    "SmartMotionVehicle",
    "FaceDetection",
    "FaceRecognition",
    "LeftDetection",
    "TakenAwayDetection",
    "ParkingDetection",
    "WanderDetection",
    "AudioMutation",
    "StorageFailure",
    "StorageLowSpace",
    "StorageNotExist",
    "HumanDetect",
    "MotionDetect",
    "LossDetect",
    "KeepAlive",
];

/// The event code as `Event::code`: static for the common ones.
fn event_code(code: Cow<'_, str>) -> Cow<'static, str> {
    match COMMON_CODES.iter().find(|&&c| c == code) {
        Some(&c) => Cow::Borrowed(c),
        None => Cow::Owned(code.into_owned()),
    }
}

impl<'de> Object<'de> {
    /// Stores a scalar under its key; the first value of each identity field wins.
    fn set(&mut self, key: Key, value: Scalar<'de>) {
        match key {
            Key::Method => self.method = value.text(),
            Key::Code => self.code = value.text(),
            Key::XmEvent => self.xm_event = value.text(),
            Key::Action => self.action = value.text(),
            Key::Status => self.status = value.text(),
            Key::Index => self.index = value.int(),
            Key::Channel => self.channel = value.int(),
            Key::Period => {
                if self.period.is_none() {
                    self.period = value
                        .int()
                        .and_then(|p| u32::try_from(p).ok())
                        .filter(|p| *p > 0);
                }
            }
            Key::Time(_) | Key::Serial | Key::Mac | Key::Ip | Key::Domain | Key::Address => {
                self.found.set(key, value);
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
                .and_then(|raw| serde_json::from_str::<DataFound<'_>>(raw.get()).ok()?.0);
            merge(device, self.found.device);
            let mut time = self.found.time.map(|(_, t)| t.into_owned());
            if let Some(inner) = inner {
                merge(device, inner.device);
                time = time.or_else(|| inner.time.map(|(_, t)| t.into_owned()));
            }
            return Some(Event {
                code: event_code(code),
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
            code: event_code(code),
            action: self.status.as_deref().map_or(Action::Pulse, Action::parse),
            index: self.channel,
            device_time: self.found.time(),
            data: (!self.others.is_empty()).then(|| JsonText::new(&data)),
        })
    }
}

/// Fills the empty fields of `device` from `more`.
pub(crate) fn merge(device: &mut DeviceInfo, more: DeviceInfo) {
    device.serial = device.serial.take().or(more.serial);
    device.mac = device.mac.take().or(more.mac);
    device.ip = device.ip.take().or(more.ip);
    device.domain = device.domain.take().or(more.domain);
}

/// Reads what a JSON body (known to be UTF-8) says. `Err` when the text is not valid JSON.
pub(crate) fn json_facts(text: &str) -> Result<JsonFacts, serde_json::Error> {
    let top = serde_json::from_str::<MaybeObject<'_>>(text)?;
    Ok(facts_of(top))
}

/// Reads the bare JSON object at the start of `window` in one pass: its length and what it says.
/// `None` when `window` does not start with one whole JSON object in valid UTF-8 (incomplete, invalid, or
/// not UTF-8): the caller then frames it by brace matching and the session reads it as before.
pub(crate) fn bare_object(window: &[u8]) -> Option<(usize, JsonFacts)> {
    let mut stream = serde_json::Deserializer::from_slice(window).into_iter::<MaybeObject<'_>>();
    let top = stream.next()?.ok()?;
    let len = stream.byte_offset();
    std::str::from_utf8(window.get(..len)?).ok()?;
    Some((len, facts_of(top)))
}

/// What a parsed body says. `found` collects the identity of every level; `JsonFacts::device` has it.
fn facts_of(MaybeObject(top): MaybeObject<'_>) -> JsonFacts {
    let Some(mut top) = top else {
        return JsonFacts::default();
    };
    let mut found = std::mem::take(&mut top.found.device);
    let mut params = top.params.take();
    if let Some(params) = params.as_deref_mut() {
        merge(&mut found, std::mem::take(&mut params.found.device));
    }
    let keepalive_period = top.period.or(params.as_ref().and_then(|p| p.period));
    let method = top.method.take();
    let keepalive_method = method.as_deref().is_some_and(|m| {
        m.len() >= 9 && m.as_bytes()[m.len() - 9..].eq_ignore_ascii_case(b"keepalive")
    });
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
    JsonFacts {
        events,
        has_method: method.is_some(),
        keepalive_method,
        has_result,
        keepalive_period,
        xm_log,
        device: found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table lookup against a plain case-insensitive search.
    fn reference(name: &str) -> Key {
        KEYS.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map_or(Key::Other, |&(_, key)| key)
    }

    #[test]
    fn key_of_ignores_case_and_only_matches_whole_keys() {
        for (name, key) in KEYS {
            let name = std::str::from_utf8(name).unwrap();
            assert_eq!(key_of(name), key, "{name}");
            assert_eq!(key_of(&name.to_ascii_uppercase()), key, "{name}");
            assert_eq!(key_of(&format!("{name}x")), Key::Other, "{name}x");
            assert_eq!(key_of(&format!("{name}\0")), Key::Other, "{name}\\0");
            assert_eq!(key_of(&name[1..]), reference(&name[1..]), "{name}");
        }
        for name in [
            "",
            "x",
            "SerialNumberTooLongForTable",
            "Séri",
            "ID",
            "Code ",
            "\0",
        ] {
            assert_eq!(key_of(name), reference(name), "{name:?}");
        }
        assert_eq!(key_of("LocaleTime"), Key::Time(0));
        assert_eq!(key_of("nKeepAlive"), Key::Period);
    }

    #[test]
    fn the_decoder_reads_whole_bare_objects_once() {
        let event = br#"{"method":"client.notifyEventStream","params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":0}]}}"#;
        let stream = [&event[..], b"\n", &event[..60]].concat();
        let mut decoder = crate::Decoder::default();
        let frames: Vec<_> = decoder.feed(&stream).collect();
        assert_eq!(frames.len(), 1);
        let copy = frames[0].clone();
        let facts = frames[0]
            .parsed
            .take(&frames[0].bytes)
            .expect("read by the decoder");
        assert_eq!(facts.events.len(), 1);
        assert!(
            frames[0].parsed.take(&frames[0].bytes).is_none(),
            "taken once"
        );
        assert!(copy.parsed.take(&copy.bytes).is_none());
        // The rest of the second object arrives later: framed by brace matching, read by the session.
        let frames: Vec<_> = decoder.feed(&event[60..]).collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].parsed.take(&frames[0].bytes).is_none());
        assert_eq!(crate::Session::new().decode(&frames[0]).events.len(), 1);
    }
}
