//! Reading events, device identity and keep-alive periods out of JSON bodies, whatever the framing.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::event::{Action, DeviceInfo, Event};
use crate::xm;

/// What a JSON body says.
#[derive(Debug, Default)]
pub(crate) struct JsonFacts {
    pub(crate) events: Vec<Event>,
    pub(crate) method: Option<String>,
    pub(crate) has_result: bool,
    pub(crate) keepalive_period: Option<u32>,
}

/// Keys (compared case-insensitively) that carry identity, per [`DeviceInfo`] field.
const SERIAL_KEYS: [&str; 7] = [
    "SerialNo",
    "SerialNumber",
    "Serial",
    "SerialID",
    "DeviceSerial",
    "DeviceSN",
    "SN",
];
const MAC_KEYS: [&str; 3] = ["MAC", "MacAddress", "MacAddr"];
const IP_KEYS: [&str; 4] = ["IP", "IPAddress", "IPAddr", "Address"];
const DOMAIN_KEYS: [&str; 3] = ["Domain", "DomainName", "DDNS"];
/// Keys that announce a keep-alive period in seconds.
const PERIOD_KEYS: [&str; 5] = [
    "timeout",
    "KeepAlivePeriod",
    "KeepAliveInterval",
    "AliveInterval",
    "KeepAliveTime",
];
/// Keys that carry the device's own time for an event, in order of preference.
const TIME_KEYS: [&str; 4] = ["LocaleTime", "Time", "StartTime", "LocalTime"];

fn is_one_of(key: &str, names: &[&str]) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(key))
}

/// `object[key]`, matching the key exactly first, then ignoring ASCII case.
fn get_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Removes `object[key]` (exact, then ignoring ASCII case).
fn take_ci(object: &mut Map<String, Value>, key: &str) -> Option<Value> {
    if let Some(value) = object.remove(key) {
        return Some(value);
    }
    let found = object.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    object.remove(&found)
}

fn str_of<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    get_ci(object, key).and_then(Value::as_str)
}

fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The device time of an event object: its own time keys, else those of its `Data`.
fn device_time(event: &Map<String, Value>, data: Option<&Value>) -> Option<String> {
    let data = data.and_then(Value::as_object);
    [Some(event), data]
        .into_iter()
        .flatten()
        .find_map(|object| TIME_KEYS.iter().find_map(|key| str_of(object, key)))
        .map(str::to_owned)
}

/// A Dahua JSON event object: `{"Code":…,"Action":…,"Index":…,"Data":{…}}`.
fn dahua_event(mut event: Map<String, Value>) -> Option<Event> {
    let code = match take_ci(&mut event, "Code")? {
        Value::String(code) => code,
        other => {
            event.insert("Code".to_owned(), other);
            return None;
        }
    };
    let data = take_ci(&mut event, "Data").filter(|v| !v.is_null());
    Some(Event {
        code: Cow::Owned(code),
        action: str_of(&event, "Action").map_or(Action::Pulse, Action::parse),
        index: get_ci(&event, "Index").and_then(int_of),
        device_time: device_time(&event, data.as_ref()),
        data,
    })
}

/// An XM alarm-center object: `{"Event":…,"Status":…,"Channel":…,"StartTime":…,"Type":…,…}`;
/// the fields not mapped to the event (Type, Descrip, …) become its data.
fn xm_event(object: &Map<String, Value>) -> Option<Event> {
    let code = str_of(object, "Event")?;
    const TAKEN: [&str; 6] = ["Event", "Status", "Channel", "StartTime", "SerialID", "Address"];
    let rest: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !is_one_of(k, &TAKEN))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Event {
        code: Cow::Owned(code.to_owned()),
        action: str_of(object, "Status").map_or(Action::Pulse, Action::parse),
        index: get_ci(object, "Channel").and_then(int_of),
        device_time: str_of(object, "StartTime").map(str::to_owned),
        data: (!rest.is_empty()).then_some(Value::Object(rest)),
    })
}

/// Events of a JSON body: `params.eventList[]` (or a top-level `eventList`), a `Code` object at the top
/// or in `params`, or an XM `Event` object.
fn events(top: &mut Map<String, Value>) -> Vec<Event> {
    let params = top.get_mut("params").and_then(Value::as_object_mut);
    let list = match params {
        Some(params) => take_ci(params, "eventList"),
        None => None,
    }
    .or_else(|| take_ci(top, "eventList"));
    if let Some(Value::Array(list)) = list {
        return list
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(event) => dahua_event(event),
                _ => None,
            })
            .collect();
    }
    if get_ci(top, "Code").is_some() {
        return dahua_event(std::mem::take(top)).into_iter().collect();
    }
    if let Some(Value::Object(params)) = top.get_mut("params") {
        if get_ci(params, "Code").is_some() {
            return dahua_event(std::mem::take(params)).into_iter().collect();
        }
    }
    xm_event(top).into_iter().collect()
}

/// Fills `device` from identity keys of `object` (first value found wins).
fn identity(object: &Map<String, Value>, device: &mut DeviceInfo) {
    for (key, value) in object {
        let Some(text) = value.as_str().filter(|t| !t.is_empty()) else {
            continue;
        };
        let slot = if is_one_of(key, &SERIAL_KEYS) {
            &mut device.serial
        } else if is_one_of(key, &MAC_KEYS) {
            &mut device.mac
        } else if is_one_of(key, &IP_KEYS) {
            &mut device.ip
        } else if is_one_of(key, &DOMAIN_KEYS) {
            &mut device.domain
        } else {
            continue;
        };
        if slot.is_none() {
            // XM writes its IPv4 as the hex of a little-endian u32.
            let value = match xm::address_to_ipv4(text) {
                Some(ip) if key.eq_ignore_ascii_case("Address") => ip.to_string(),
                _ => text.to_owned(),
            };
            *slot = Some(value);
        }
    }
}

fn period(object: &Map<String, Value>) -> Option<u32> {
    object
        .iter()
        .filter(|(k, _)| is_one_of(k, &PERIOD_KEYS))
        .find_map(|(_, v)| int_of(v).and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0))
}

/// Reads what a JSON body says, consuming the parsed value (event `Data` is moved, not copied).
/// `device` gets the identity fields found at the top, in `params` and in the first event's `Data`.
pub(crate) fn json_facts(value: Value, device: &mut DeviceInfo) -> JsonFacts {
    let Value::Object(mut top) = value else {
        return JsonFacts::default();
    };
    identity(&top, device);
    let params = get_ci(&top, "params").and_then(Value::as_object);
    if let Some(params) = params {
        identity(params, device);
    }
    let keepalive_period = params.and_then(period).or_else(|| period(&top));
    let method = str_of(&top, "method").map(str::to_owned);
    let has_result = top.contains_key("result");
    let events = events(&mut top);
    if let Some(data) = events.first().and_then(|e| e.data.as_ref()).and_then(Value::as_object) {
        identity(data, device);
    }
    JsonFacts {
        events,
        method,
        has_result,
        keepalive_period,
    }
}
