//! What one JSON object says (the fields we read, its time and identity keys), and the event it
//! describes.

use std::borrow::Cow;

use super::keys::Key;
use super::merge;
use super::serde_read::data_found;
use super::strict::Strict;
use crate::event::{Action, DeviceInfo, Event, JsonText};
use crate::xm;

/// Any JSON value reduced to what we need from a scalar; objects and arrays are skipped.
pub(super) enum Scalar<'de> {
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

/// The fields of one JSON object that we read. Objects nest: `params`, `eventList[]`.
#[derive(Default)]
pub(super) struct Object<'de> {
    pub(super) method: Option<Cow<'de, str>>,
    pub(super) has_result: bool,
    pub(super) params: Option<Box<Object<'de>>>,
    #[expect(clippy::vec_box)]
    // boxed: an `Object` is large and moves through serde's layers by value
    pub(super) event_list: Option<Vec<Box<Object<'de>>>>,
    pub(super) code: Option<Cow<'de, str>>,
    pub(super) action: Option<Cow<'de, str>>,
    pub(super) index: Option<i64>,
    /// The raw text of `Data`.
    pub(super) data: Option<&'de str>,
    /// What [`data_found`] returns for `data`, when the strict reader found it already.
    pub(super) data_read: Option<Option<Found<'de>>>,
    pub(super) xm_event: Option<Cow<'de, str>>,
    pub(super) status: Option<Cow<'de, str>>,
    pub(super) channel: Option<i64>,
    /// Time and identity keys.
    pub(super) found: Found<'de>,
    pub(super) period: Option<u32>,
    /// Keys we do not read, with their raw values (the data of an XM event).
    pub(super) others: Vec<(Cow<'de, str>, &'de str)>,
    /// The object's raw text when `others` was not listed while reading it (the strict reader):
    /// [`Object::list_others`] lists them from it.
    pub(super) text: Option<&'de str>,
}

/// The time and identity keys of an object: read in every object we read, and in an event's `Data`.
#[derive(Default)]
pub(super) struct Found<'de> {
    /// The preferred device time key seen (lower rank wins) and its text.
    pub(super) time: Option<(u8, Cow<'de, str>)>,
    pub(super) device: DeviceInfo,
}

impl<'de> Found<'de> {
    /// Stores a time or identity value; the first value of each identity field wins.
    pub(super) fn set(&mut self, key: Key, value: Scalar<'de>) {
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
            // Only the first one counts: the text is not made for the others.
            Key::Address if self.device.ip.is_none() => {
                let text = value.text();
                let ip = text
                    .as_deref()
                    .and_then(xm::address_to_ipv4)
                    .map(|ip| Cow::Owned(crate::addr_text::ipv4_text(ip)));
                first(&mut self.device.ip, ip.or(text));
            }
            _ => {}
        }
    }

    fn time(self) -> Option<String> {
        self.time.map(|(_, t)| t.into_owned())
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
    pub(super) fn set(&mut self, key: Key, value: Scalar<'de>) {
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

    /// Fills `others` when the reading left them in the object's text.
    pub(super) fn list_others(&mut self) {
        if let Some(text) = self.text.take() {
            self.others = Strict::others_of(text).unwrap_or_default();
        }
    }

    /// The event this object describes: a Dahua `Code` object or an XM `Event` object.
    pub(super) fn into_event(mut self: Box<Self>, device: &mut DeviceInfo) -> Option<Event> {
        if let Some(code) = self.code {
            // The event's own time keys first, else those inside its Data.
            let inner = match self.data_read {
                Some(read) => read,
                None => self.data.and_then(data_found),
            };
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
                device_time: time.map(String::into_boxed_str),
                data: self.data.filter(|raw| *raw != "null").map(JsonText::new),
            });
        }
        let code = self.xm_event.take()?;
        self.list_others();
        Some(Event {
            code: event_code(code),
            action: self.status.as_deref().map_or(Action::Pulse, Action::parse),
            index: self.channel,
            device_time: self.found.time().map(String::into_boxed_str),
            data: (!self.others.is_empty()).then(|| xm_data(&self.others)),
        })
    }
}

/// The data of an XM event: an object of the keys we do not read, with their raw values, in order,
/// written once into a string of the right size.
fn xm_data(others: &[(Cow<'_, str>, &str)]) -> JsonText {
    // Quotes and colon for each key, the commas between them, the braces (`others` is not empty).
    let size = 1 + others
        .iter()
        .map(|(key, raw)| key.len() + raw.len() + 4)
        .sum::<usize>();
    let mut data = String::with_capacity(size);
    data.push('{');
    for (i, (key, raw)) in others.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        // A key the device wrote without escapes is written as it was; others are escaped again.
        if key.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            data.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
        } else {
            data.push('"');
            data.push_str(key);
            data.push('"');
        }
        data.push(':');
        data.push_str(raw);
    }
    data.push('}');
    JsonText::from_string(data)
}
