//! The read endpoints: devices (paginated), connections, events, frames, sinks. Answers are serialised
//! from typed structs: stored JSON (`data`) goes out as stored, never re-parsed.

use std::collections::HashMap;

use alarm_center_store::{
    ConnectionRow, DeviceRow, EventQuery, FrameQuery, SinkCursor, StoredEvent, StoredFrame,
};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{bad, decode, query, ApiError, ApiResult, ApiState};

/// Devices per page by default.
pub(crate) const DEVICES_DEFAULT: u32 = 500;
/// Most devices per page.
pub(crate) const DEVICES_MAX: u32 = 5000;

/// Refuses parameters other than `known`.
fn only(p: &HashMap<String, String>, known: &[&str]) -> ApiResult<()> {
    match p.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!(
            "unknown parameter {k:?}; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `limit`: `default` when absent, else a number from 1 to `max`.
fn parse_limit(limit: Option<&str>, default: u32, max: u32) -> ApiResult<u32> {
    match limit {
        None => Ok(default),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(format!(
                "limit {text:?}: give a number from 1 to {max}"
            ))),
        },
    }
}

fn parse_id(name: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    text.map(|t| {
        t.parse::<i64>()
            .map_err(|_| bad(format!("{name} {t:?} is not an event id")))
    })
    .transpose()
}

/// `since`/`until`: a duration ago (`10m`) or an RFC 3339 time.
fn parse_time(name: &str, text: Option<&str>, now_ms: i64) -> ApiResult<Option<i64>> {
    text.map(|t| crate::time::parse_instant(t, now_ms).map_err(|e| bad(format!("{name} {e}"))))
        .transpose()
}

/// 404 unless the store knows `device` (a device row, or events of a device since forgotten).
async fn known_device(state: &ApiState, device: &str) -> ApiResult<()> {
    let id = device.to_owned();
    match query(state, move |db| db.device_known(&id)).await? {
        true => Ok(()),
        false => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no device {device:?}"),
        )),
    }
}

fn parse_path_id(text: &str) -> ApiResult<i64> {
    text.parse()
        .map_err(|_| bad(format!("{text:?} is not a frame id")))
}

#[derive(Serialize)]
pub(crate) struct DevicesPage {
    devices: Vec<DeviceRow>,
    /// The `after` of the next page; `None` on the last page.
    next: Option<String>,
    /// Devices online now, over all pages.
    online: usize,
}

/// `GET /api/devices?after=&limit=`: devices in id order, `limit` (default 500, at most 5000) after the
/// device id `after`; `next` is the `after` of the following page, null on the last one.
pub(crate) async fn devices(
    State(state): State<ApiState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<DevicesPage>> {
    only(&p, &["after", "limit"])?;
    let limit = parse_limit(
        p.get("limit").map(String::as_str),
        DEVICES_DEFAULT,
        DEVICES_MAX,
    )?;
    let after = p.get("after").cloned();
    let take = limit as usize + 1;
    // Only the page (and one more device, to know whether another page follows) leaves the store's
    // thread.
    let mut devices = query(&state, move |db| {
        Ok(db
            .devices()?
            .into_iter()
            .filter(|d| after.as_deref().is_none_or(|a| d.id.as_str() > a))
            .take(take)
            .collect::<Vec<_>>())
    })
    .await?;
    let next = (devices.len() > limit as usize)
        .then(|| {
            devices.truncate(limit as usize);
            devices.last().map(|d| d.id.clone())
        })
        .flatten();
    let online = state.shared.registry.online_count();
    Ok(Json(DevicesPage {
        devices,
        next,
        online,
    }))
}

#[derive(Serialize)]
pub(crate) struct Connections {
    connections: Vec<ConnectionRow>,
}

/// `GET /api/devices/{id}/connections`: the device's connection history, newest first (at most 100).
pub(crate) async fn connections(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Connections>> {
    known_device(&state, &id).await?;
    let mut connections = query(&state, move |db| db.connections(&id, 100)).await?;
    // Open connections write their counters when they close: until then they are read live.
    for row in connections.iter_mut().filter(|c| c.closed_at.is_none()) {
        if let Some((frames, bytes)) = state.shared.live_counters(row.id) {
            row.frames = Some(frames as i64);
            row.bytes = Some(bytes as i64);
        }
    }
    Ok(Json(Connections { connections }))
}

#[derive(Serialize)]
pub(crate) struct EventsPage {
    /// Each event's `data` is the stored JSON text, written out as it is.
    events: Vec<StoredEvent>,
    next: Option<i64>,
}

/// `GET /api/events?device=&code=&action=&kind=&since=&until=&before=&limit=`: newest first; `next`
/// is the `before` of the following page.
pub(crate) async fn events(
    State(state): State<ApiState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<EventsPage>> {
    only(
        &p,
        &[
            "device", "code", "action", "kind", "since", "until", "before", "limit",
        ],
    )?;
    let limit = parse_limit(p.get("limit").map(String::as_str), 100, 10_000)?;
    let now = crate::time::now_ms();
    if let Some(device) = p.get("device") {
        known_device(&state, device).await?;
    }
    let q = EventQuery {
        device: p.get("device").cloned(),
        code: p.get("code").cloned(),
        action: p.get("action").cloned(),
        kind: p.get("kind").cloned(),
        since: parse_time("since", p.get("since").map(String::as_str), now)?,
        until: parse_time("until", p.get("until").map(String::as_str), now)?,
        before_id: parse_id("before", p.get("before").map(String::as_str))?,
        limit: Some(limit),
        ..EventQuery::default()
    };
    let events = query(&state, move |db| db.events(&q)).await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(EventsPage { events, next }))
}

#[derive(Serialize)]
pub(crate) struct FramesPage {
    frames: Vec<StoredFrame>,
    next: Option<i64>,
}

/// `GET /api/frames?device=&unknown=&before=&limit=`: newest first.
pub(crate) async fn frames(
    State(state): State<ApiState>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<FramesPage>> {
    only(&p, &["device", "unknown", "before", "limit"])?;
    let unknown = match p.get("unknown").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(bad(format!("unknown {other:?}: true or false"))),
    };
    let limit = parse_limit(p.get("limit").map(String::as_str), 100, 10_000)?;
    let q = FrameQuery {
        device: p.get("device").cloned(),
        unknown,
        before_id: parse_id("before", p.get("before").map(String::as_str))?,
        limit: Some(limit),
    };
    let frames = query(&state, move |db| db.frames(&q)).await?;
    let next = (frames.len() == limit as usize)
        .then(|| frames.last().map(|f| f.id))
        .flatten();
    Ok(Json(FramesPage { frames, next }))
}

#[derive(Serialize)]
pub(crate) struct FrameAnswer {
    frame: StoredFrame,
    hex: String,
    decoded: Vec<Box<RawValue>>,
}

/// `GET /api/frames/{id}`: the stored classification, the bytes as hex and the field-by-field decode
/// (recomputed from the bytes on the store's thread, without the stream's earlier 0x69 state).
pub(crate) async fn frame(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<FrameAnswer>> {
    let id = parse_path_id(&id)?;
    let max_frame = state.max_frame;
    let answer = query(&state, move |db| {
        Ok(db.frame(id)?.map(|frame| {
            let (hex, decoded) = decode::stored_frame(&frame.bytes, max_frame);
            FrameAnswer {
                frame,
                hex,
                decoded,
            }
        }))
    })
    .await?
    .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no frame {id}")))?;
    Ok(Json(answer))
}

/// `GET /api/frames/{id}/raw`: the bytes.
pub(crate) async fn frame_raw(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_path_id(&id)?;
    let stored = query(&state, move |db| db.frame(id))
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no frame {id}")))?;
    let disposition = format!("attachment; filename=\"frame-{id}.bin\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        stored.bytes,
    )
        .into_response())
}

#[derive(Serialize)]
pub(crate) struct SinkStatus {
    #[serde(flatten)]
    cursor: SinkCursor,
    /// Events in the log after the sink's cursor.
    lag: i64,
}

#[derive(Serialize)]
pub(crate) struct Sinks {
    sinks: Vec<SinkStatus>,
}

/// `GET /api/sinks`: each sink's cursor, counters and lag.
pub(crate) async fn sinks(State(state): State<ApiState>) -> ApiResult<Json<Sinks>> {
    let (last, cursors) = query(&state, |db| Ok((db.last_event_id()?, db.sink_cursors()?))).await?;
    let sinks = cursors
        .into_iter()
        .map(|cursor| SinkStatus {
            lag: last - cursor.position,
            cursor,
        })
        .collect();
    Ok(Json(Sinks { sinks }))
}
