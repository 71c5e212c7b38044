//! The committed document is the generated one, and the schemas of JSON written by other crates
//! name exactly the keys those crates write.

use std::collections::BTreeSet;

use serde_json::Value;

/// The command that rewrites docs/openapi.yaml.
const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test -p alarm-center-api openapi";

#[test]
fn docs_openapi_yaml_is_the_generated_document() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let generated = super::yaml().unwrap();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let first_difference = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    assert!(
        committed == generated,
        "docs/openapi.yaml is not the document the code generates (from line {}): run \
         `{REGENERATE}` and commit the file",
        first_difference + 1
    );
}

/// The generated document as JSON.
fn document() -> Value {
    serde_json::to_value(<super::ApiDoc as utoipa::OpenApi>::openapi()).unwrap()
}

/// The keys of a JSON object.
fn keys(object: &Value) -> BTreeSet<String> {
    object.as_object().unwrap().keys().cloned().collect()
}

/// `value` as JSON.
fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap()
}

/// A component schema's property names and required names.
fn fields(document: &Value, schema: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &document["components"]["schemas"][schema];
    let required = schema["required"]
        .as_array()
        .map_or_else(Vec::new, |names| {
            names
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect()
        });
    (keys(&schema["properties"]), required.into_iter().collect())
}

/// `schema` names exactly the keys of `full` (every optional key present), and requires exactly
/// the keys of `bare` (every optional key absent).
fn assert_describes(document: &Value, schema: &str, full: Value, bare: Value) {
    let (properties, required) = fields(document, schema);
    assert_eq!(properties, keys(&full), "the properties of {schema}");
    assert_eq!(required, keys(&bare), "the required properties of {schema}");
}

#[test]
fn the_schemas_of_store_rows_name_the_keys_the_store_writes() {
    use alarm_center_store::{ConnectionRow, DeviceRow, SinkCursor, StoredEvent, StoredFrame};
    let document = document();
    let event = |full: bool| StoredEvent {
        id: 1,
        frame_id: None,
        event: alarm_center_store::NewEvent {
            frame: alarm_center_store::FrameRef::None,
            device: "d".into(),
            code: "VideoMotion".into(),
            action: "start".into(),
            index: None,
            channel: None,
            channel_name: full.then(|| "door".into()),
            kind: "alarm".into(),
            device_time: None,
            received_at: 1_714_557_600_000,
            data: full.then(|| "{}".into()),
            synthetic: full.then(|| "offline".into()),
        },
    };
    assert_describes(&document, "Event", json(&event(true)), json(&event(false)));
    let device = DeviceRow {
        id: "d".into(),
        name: None,
        serial: None,
        mac: None,
        domain: None,
        ip: None,
        peer: None,
        protocol: None,
        state: alarm_center_store::DeviceState::Online,
        state_since: String::new(),
        first_seen: String::new(),
        last_seen: String::new(),
        last_seen_ms: 0,
        keepalive_period: None,
    };
    assert_describes(&document, "Device", json(&device), json(&device));
    let connection = ConnectionRow {
        id: 1,
        peer: String::new(),
        opened_at: String::new(),
        closed_at: None,
        close_reason: None,
        frames: None,
        bytes: None,
    };
    assert_describes(
        &document,
        "Connection",
        json(&connection),
        json(&connection),
    );
    let frame = StoredFrame {
        id: 1,
        received_at: String::new(),
        device: None,
        connection: None,
        stream_offset: 0,
        protocol: "junk".into(),
        command: None,
        kind: "unknown".into(),
        body_format: "none".into(),
        error: None,
        length: 0,
        bytes: vec![1],
    };
    assert_describes(&document, "Frame", json(&frame), json(&frame));
    // `/api/sinks` flattens the cursor and adds `lag`.
    let mut sink = json(&SinkCursor::default());
    sink["lag"] = 0.into();
    assert_describes(&document, "Sink", sink.clone(), sink);
}

/// `object`'s keys are properties of `schema`, and it has every required one.
fn fits(document: &Value, schema: &str, object: &Value) -> bool {
    let (properties, required) = fields(document, schema);
    let keys = keys(object);
    keys.is_subset(&properties) && required.is_subset(&keys)
}

/// The enum values of a component schema.
fn values(document: &Value, schema: &str) -> Vec<Value> {
    document["components"]["schemas"][schema]["enum"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn decode_records_of_every_protocol_fit_their_schemas() {
    use alarm_center_proto::encode;
    let document = document();
    let notify = r#"{"method":"client.notifyEventStream","params":{"eventList":[{"Code":"VideoMotion","Action":"Start","Index":3,"Data":{"Name":"door"}}]}}"#;
    let keepalive = r#"{"id":1,"method":"global.keepAlive","params":{"timeout":60,"SerialNo":"AB12","MAC":"00:11:22:33:44:55"}}"#;
    let mut split = encode::dvrip_json(5, 1, notify);
    split[16..20].copy_from_slice(&1000u32.to_le_bytes());
    let samples = [
        encode::dvrip_mask(2, 0, 0b101),
        encode::dvrip_text(2, 0, &[("Code", "VideoMotion"), ("Action", "Start")]),
        encode::dvrip_json(5, 1, keepalive),
        split,
        encode::dvrip_heartbeat(),
        encode::dhip(9, 5, notify),
        encode::xm_alarm(
            "AB12",
            [10, 0, 0, 2].into(),
            0,
            "VideoMotion",
            true,
            "2024-05-01 10:00:00",
        ),
        encode::bare_json(notify),
        encode::http_event("10.0.0.2", notify),
        b"not a frame at all".to_vec(),
    ];
    let mut seen = BTreeSet::new();
    for bytes in &samples {
        let mut budget = crate::decode::Budget::new();
        for raw in crate::decode::records(bytes, 1 << 20, &mut budget) {
            let record: Value = serde_json::from_str(raw.get()).unwrap();
            assert!(fits(&document, "DecodeRecord", &record), "{record}");
            let header = &record["header"];
            let headers = ["DvripHeader", "DhipHeader", "XmHeader", "HttpHeader"];
            assert!(
                keys(header).is_empty() || headers.iter().any(|h| fits(&document, h, header)),
                "{header}"
            );
            for event in record["events"].as_array().unwrap() {
                assert!(fits(&document, "DecodedEvent", event), "{event}");
            }
            for (key, schema) in [("device", "DeviceIdentity"), ("fragment", "Fragment")] {
                if let Some(object) = record.get(key) {
                    assert!(fits(&document, schema, object), "{object}");
                }
            }
            for (key, schema) in [
                ("protocol", "Protocol"),
                ("kind", "Kind"),
                ("body_format", "BodyFormat"),
            ] {
                assert!(values(&document, schema).contains(&record[key]), "{record}");
            }
            seen.extend(keys(&record));
        }
    }
    // Every documented key but the CLI's `stream` occurs in some sample: none is stale.
    let (mut documented, _) = fields(&document, "DecodeRecord");
    documented.remove("stream");
    assert_eq!(seen, documented);
}
