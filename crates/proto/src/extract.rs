//! Reading events, device identity and keep-alive periods out of JSON bodies, whatever the framing.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::event::{Action, DeviceInfo, Event};
use crate::xm;

/// What a JSON body says, beyond its raw value.
#[derive(Debug, Default)]
pub(crate) struct JsonFacts {
    pub(crate) events: Vec<Event>,
    pub(crate) method: Option<String>,
    pub(crate) has_result: bool,
    pub(crate) keepalive_period: Option<u32>,
}

/// Keys (compared case-insensitively) that carry identity, per [`DeviceInfo`] field.
const SERIAL_KEYS: [&str; 7] = [
    "serialno",
    "serialnumber",
    "serial",
    "serialid",
    "deviceserial",
    "devicesn",
    "sn",
];
const MAC_KEYS: [&str; 3] = ["mac", "macaddress", "macaddr"];
const IP_KEYS: [&str; 4] = ["ip", "ipaddress", "ipaddr", "address"];
const DOMAIN_KEYS: [&str; 3] = ["domain", "domainname", "ddns"];
/// Keys that announce a keep-alive period in seconds.
const PERIOD_KEYS: [&str; 5] = [
    "timeout",
    "keepaliveperiod",
    "keepaliveinterval",
    "aliveinterval",
    "keepalivetime",
];
/// Keys that carry the device's own time for an event, in order of preference.
const TIME_KEYS: [&str; 4] = ["LocaleTime", "Time", "StartTime", "LocalTime"];

fn get_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
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
fn device_time(event: &Map<String, Value>) -> Option<String> {
    let data = get_ci(event, "Data").and_then(Value::as_object);
    [Some(event), data]
        .into_iter()
        .flatten()
        .find_map(|object| TIME_KEYS.iter().find_map(|key| str_of(object, key)))
        .map(str::to_owned)
}

/// A Dahua JSON event object: `{"Code":…,"Action":…,"Index":…,"Data":{…}}`.
fn dahua_event(event: &Map<String, Value>) -> Option<Event> {
    let code = str_of(event, "Code")?;
    let data = get_ci(event, "Data").filter(|v| !v.is_null()).cloned();
    Some(Event {
        code: Cow::Owned(code.to_owned()),
        action: str_of(event, "Action").map_or(Action::Pulse, Action::parse),
        index: get_ci(event, "Index").and_then(int_of),
        device_time: device_time(event),
        data,
    })
}

/// An XM alarm-center object: `{"Event":…,"Status":…,"Channel":…,"StartTime":…,"Type":…,…}`.
fn xm_event(object: &Map<String, Value>) -> Option<Event> {
    let code = str_of(object, "Event")?;
    const TAKEN: [&str; 6] = ["Event", "Status", "Channel", "StartTime", "SerialID", "Address"];
    let rest: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !TAKEN.iter().any(|t| t.eq_ignore_ascii_case(k)))
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

/// Events of a JSON body: `params.eventList[]`, a `Code` object at the top or in `params`, or an XM
/// `Event` object.
fn events(top: &Map<String, Value>, params: Option<&Map<String, Value>>) -> Vec<Event> {
    let list = params
        .and_then(|p| get_ci(p, "eventList"))
        .or_else(|| get_ci(top, "eventList"))
        .and_then(Value::as_array);
    if let Some(list) = list {
        return list
            .iter()
            .filter_map(Value::as_object)
            .filter_map(dahua_event)
            .collect();
    }
    [Some(top), params]
        .into_iter()
        .flatten()
        .find_map(|object| dahua_event(object).or_else(|| xm_event(object)))
        .into_iter()
        .collect()
}

/// Fills `device` from identity keys of `object` (first value found wins).
fn identity(object: &Map<String, Value>, device: &mut DeviceInfo) {
    for (key, value) in object {
        let Some(text) = value.as_str().filter(|t| !t.is_empty()) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let slot = if SERIAL_KEYS.contains(&key.as_str()) {
            &mut device.serial
        } else if MAC_KEYS.contains(&key.as_str()) {
            &mut device.mac
        } else if IP_KEYS.contains(&key.as_str()) {
            &mut device.ip
        } else if DOMAIN_KEYS.contains(&key.as_str()) {
            &mut device.domain
        } else {
            continue;
        };
        if slot.is_none() {
            // XM writes its IPv4 as the hex of a little-endian u32.
            let value = match xm::address_to_ipv4(text) {
                Some(ip) if key == "address" => ip.to_string(),
                _ => text.to_owned(),
            };
            *slot = Some(value);
        }
    }
}

fn period(object: &Map<String, Value>) -> Option<u32> {
    object.iter().find_map(|(k, v)| {
        let k = k.to_ascii_lowercase();
        PERIOD_KEYS
            .contains(&k.as_str())
            .then(|| int_of(v))
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
    })
}

/// Reads what a JSON body says; `device` gets the identity fields found at the top, in `params` and in
/// the first event's `Data`.
pub(crate) fn json_facts(value: &Value, device: &mut DeviceInfo) -> JsonFacts {
    let Some(top) = value.as_object() else {
        return JsonFacts::default();
    };
    let params = get_ci(top, "params").and_then(Value::as_object);
    let events = events(top, params);
    identity(top, device);
    if let Some(params) = params {
        identity(params, device);
    }
    if let Some(data) = events.first().and_then(|e| e.data.as_ref()).and_then(Value::as_object) {
        identity(data, device);
    }
    JsonFacts {
        method: str_of(top, "method").map(str::to_owned),
        has_result: top.contains_key("result"),
        keepalive_period: params.and_then(period).or_else(|| period(top)),
        events,
    }
}
