//! The reference reading: serde visitors that build [`Object`]s from any JSON text serde accepts, and
//! whose results and errors the strict reader must match.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::keys::{key_of, Key};
use super::object::{Found, Object, Scalar};
use super::scan::scan_data;

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

/// An object, or nothing when the value is of another type.
pub(super) struct MaybeObject<'de>(pub(super) Option<Box<Object<'de>>>);

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
                Key::Data => o.data = Some(map.next_value::<&'de RawValue>()?.get()),
                Key::Other => o
                    .others
                    .push((name, map.next_value::<&'de RawValue>()?.get())),
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

/// The time and identity keys of an event's `Data` (its raw text, already accepted by the first reading),
/// exactly as a [`DataFound`] reading of it finds them: nothing when it is not an object or when that
/// reading fails. The common case is scanned by hand ([`scan_data`]); anything it is not sure of is read by
/// serde as before.
pub(super) fn data_found(raw: &str) -> Option<Found<'_>> {
    match scan_data(raw) {
        Some(found) => found,
        None => serde_json::from_str::<DataFound<'_>>(raw).ok()?.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DeviceInfo;

    /// What a reading of `Data` found, comparable.
    fn seen(found: Option<Found<'_>>) -> Option<(Option<(u8, String)>, DeviceInfo)> {
        found.map(|f| (f.time.map(|(r, t)| (r, t.into_owned())), f.device))
    }

    /// The scanner agrees with serde's reading whenever it does not hand over to it.
    fn check_scan(raw: &str) {
        if serde_json::from_str::<&RawValue>(raw).is_err() {
            return; // the first reading would have rejected the body
        }
        let serde = serde_json::from_str::<DataFound<'_>>(raw)
            .ok()
            .and_then(|d| d.0);
        if let Some(scanned) = scan_data(raw) {
            assert_eq!(seen(scanned), seen(serde), "{raw}");
        }
        assert_eq!(
            seen(data_found(raw)),
            seen(
                serde_json::from_str::<DataFound<'_>>(raw)
                    .ok()
                    .and_then(|d| d.0)
            ),
            "{raw}"
        );
    }

    #[test]
    fn data_scan_matches_serde_on_edge_cases() {
        let deep = format!(
            r#"{{"LocaleTime":"t",{}"x":1{}}}"#,
            r#""params":{"#.repeat(200),
            "}".repeat(200)
        );
        let shallow = format!(
            r#"{{"LocaleTime":"t",{}"x":1{}}}"#,
            r#""params":{"#.repeat(5),
            "}".repeat(5)
        );
        for raw in [
            r#"{"LocaleTime":"2024-05-01 10:00:00","Name":"IVS-1"}"#,
            r#"{ "Time" : "a" , "LocaleTime" : "b" , "StartTime":"c" }"#,
            r#"{"SerialNo":"S1","serial":"S2","MAC":"m","IP":"1.2.3.4","Domain":"d"}"#,
            r#"{"Address":"0x0A01A8C0"}"#,
            r#"{"Address":"host"}"#,
            r#"{"Time":""}"#,
            r#"{"Time":1,"SerialNo":true,"Mac":null,"IP":false}"#,
            r#"{"Time":"a\"b"}"#,
            r#"{"Time":"\ud800"}"#,
            r#"{"\ud800":1,"Time":"a"}"#,
            r#"{"\u0054ime":"a"}"#,
            r#"{"Index":1e999,"Time":"a"}"#,
            r#"{"Index":-1.5E3,"Time":"a"}"#,
            r#"{"Index":123456789012345678901234567890,"Time":"a"}"#,
            r#"{"Index":1234567890123456,"Time":"a"}"#,
            r#"{"Time":{"\ud800":1}}"#,
            r#"{"Time":{"a":1},"Serial":"s"}"#,
            r#"{"Time":[1,{"\ud800":1}],"Serial":"s"}"#,
            r#"{"Other":{"\ud800":[1,"}",{"x":"\\"}]},"Time":"a"}"#,
            r#"{"Data":{"Time":"inner"},"Result":[1e999],"Time":"a"}"#,
            r#"{"Other":"x\\","Time":"a"}"#,
            r#"{"EventList":[{"Code":"x"}],"Time":"a"}"#,
            r#"{"params":{"Index":1e999},"Time":"a"}"#,
            r#"{}"#,
            r#"{ }"#,
            r#"[{"Time":"a"}]"#,
            r#""\ud800""#,
            r#"1e999"#,
            r#"null"#,
            &deep,
            &shallow,
        ] {
            check_scan(raw);
        }
        // A `params` chain past serde's recursion limit: the reading fails, nothing is taken.
        assert!(data_found(&deep).is_none());
        assert!(data_found(&shallow).is_some());
        // The common case is read by the scanner.
        assert!(scan_data(r#"{"LocaleTime":"t","Object":{"Action":"x"},"PTS":1.5}"#).is_some());
    }

    proptest::proptest! {
        #[test]
        fn data_scan_matches_serde(
            entries in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "LocaleTime", "time", "StartTime", "localtime", "SerialNo", "sn", "mac", "IP",
                        "Address", "domain", "params", "eventList", "Data", "Result", "Other", "Code",
                        "Index", "Channel", "KeepAlive", r"\u0054ime", r"\ud800", r"a\\b",
                    ]),
                    proptest::sample::select(vec![
                        r#""a""#, r#""2024-01-01 10:00:00""#, r#""""#, r#""\ud800""#, r#""x\"y""#,
                        r#""0x0A01A8C0""#, "1", "-1.5", "0", "1e999", "1E5", "-0.0e-5",
                        "123456789012345678901234567890", "12345678901234567", "true", "null",
                        "false", "{}", "[]", r#"{"\ud800":1}"#, r#"[1,{"a":"\ud800"}]"#,
                        r#"{"params":{"params":{"Index":1e999}}}"#, r#"[{"Code":"c","Time":"x"}]"#,
                        r#"{"a":[{"b":"}]"}],"c":"\\"}"#,
                    ]),
                    proptest::sample::select(vec!["", " ", "\n\t ", "\r"]),
                ),
                0..8,
            )
        ) {
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                .collect();
            check_scan(&format!("{{{}}}", body.join(",")));
        }
    }
}
