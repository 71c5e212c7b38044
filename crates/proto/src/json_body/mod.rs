//! Reading events, device identity and keep-alive periods out of JSON bodies, whatever the framing.
//!
//! The body is read in one pass that picks out the keys we know (ignoring ASCII case) and skips
//! everything else without building a tree; an event's `Data` is kept as its raw JSON text. A hand-written
//! strict reader ([`Strict`]) reads the common bodies; whatever it is not sure of is read by serde
//! visitors that build the same [`Object`]s, and whose reading (results and errors) is the reference.
//!
//! The files: [`keys`] classifies keys, [`object`] holds what an object says and builds its event,
//! [`serde_read`] is the reference reading (serde visitors), [`strict`] the hand-written reader, and
//! [`scan`] the byte-level scanners (strings, digits, whitespace, skipped values, an event's `Data`).
//!
//! [`Object`]: object::Object

mod keys;
mod object;
mod scan;
mod serde_read;
mod strict;
#[cfg(test)]
mod tests;

use crate::event::{DeviceInfo, Event};

pub(crate) use keys::{key_of, Key};
use serde_read::MaybeObject;
use strict::Strict;

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

/// Fills the empty fields of `device` from `more`.
pub(crate) fn merge(device: &mut DeviceInfo, more: DeviceInfo) {
    device.serial = device.serial.take().or(more.serial);
    device.mac = device.mac.take().or(more.mac);
    device.ip = device.ip.take().or(more.ip);
    device.domain = device.domain.take().or(more.domain);
}

/// Reads what a JSON body (known to be UTF-8) says. `Err` when the text is not valid JSON.
pub(crate) fn json_facts(text: &str) -> Result<JsonFacts, serde_json::Error> {
    if let Some(top) = Strict::body(text) {
        return Ok(facts_of(MaybeObject(Some(top))));
    }
    let top = serde_json::from_str::<MaybeObject<'_>>(text)?;
    Ok(facts_of(top))
}

/// Reads the bare JSON object at the start of `window` in one pass: its length and what it says.
/// `None` when `window` does not start with one whole JSON object in valid UTF-8 (incomplete, invalid, or
/// not UTF-8): the caller then frames it by brace matching and the session reads it as before.
pub(crate) fn bare_object(window: &[u8]) -> Option<(usize, JsonFacts)> {
    match Strict::object_at_start(window) {
        Ok((len, top)) => return Some((len, facts_of(MaybeObject(Some(top))))),
        // Cut by the end of the window: serde would not find its end either.
        Err(true) => return None,
        Err(false) => {}
    }
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
    if top.xm_event.is_some() {
        top.list_others();
    }
    let xm_log = top.xm_event.is_some()
        && top.others.iter().any(|(key, raw)| {
            key.eq_ignore_ascii_case("type") && raw.eq_ignore_ascii_case("\"log\"")
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
