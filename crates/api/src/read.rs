//! The read endpoints: devices (paginated), connections, events, frames, sinks. Answers are serialised
//! from typed structs: stored JSON (`data`) goes out as stored, never re-parsed.

use alarm_center_store::{
    ConnectionRow, DeviceRow, EventQuery, FrameQuery, SinkCursor, StoredEvent, StoredFrame,
};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::params::{Params, PathId};
use super::{bad, decode, query, ApiError, ApiResult, ApiState};

/// Devices per page by default.
pub(crate) const DEVICES_DEFAULT: u32 = 500;
/// Most devices per page.
pub(crate) const DEVICES_MAX: u32 = 5000;

/// `limit`: `default` when absent, else a number from 1 to `max`.
fn parse_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(bad(format!("limit {n}: give a number from 1 to {max}"))),
    }
}

/// `since`/`until`: a duration ago (`10m`) or an RFC 3339 time.
fn parse_time(name: &str, text: Option<&str>, now_ms: i64) -> ApiResult<Option<i64>> {
    text.map(|t| crate::instant::parse_instant(t, now_ms).map_err(|e| bad(format!("{name} {e}"))))
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

#[derive(Serialize)]
pub(crate) struct DevicesPage {
    devices: Vec<DeviceRow>,
    /// The `after` of the next page; `None` on the last page.
    next: Option<String>,
    /// Devices online now, over all pages.
    online: usize,
}

/// `GET /api/devices` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DevicesParams {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/devices?after=&limit=`: devices in id order, `limit` (default 500, at most 5000) after the
/// device id `after`; `next` is the `after` of the following page, null on the last one.
pub(crate) async fn devices(
    State(state): State<ApiState>,
    Params(p): Params<DevicesParams>,
) -> ApiResult<Json<DevicesPage>> {
    let limit = parse_limit(p.limit, DEVICES_DEFAULT, DEVICES_MAX)?;
    let after = p.after;
    let take = limit + 1;
    // Only the page (and one more device, to know whether another page follows) leaves the store's
    // thread.
    let mut devices = query(&state, move |db| db.devices_page(after.as_deref(), take)).await?;
    let next = (devices.len() > limit as usize)
        .then(|| {
            devices.truncate(limit as usize);
            devices.last().map(|d| d.id.clone())
        })
        .flatten();
    let online = state.live.online_count();
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
        if let Some((frames, bytes)) = state.live.connection_counters(row.id) {
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

/// `GET /api/events` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsParams {
    device: Option<String>,
    code: Option<String>,
    action: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/events?device=&code=&action=&kind=&since=&until=&before=&limit=`: newest first; `next`
/// is the `before` of the following page.
pub(crate) async fn events(
    State(state): State<ApiState>,
    Params(p): Params<EventsParams>,
) -> ApiResult<Json<EventsPage>> {
    let limit = parse_limit(p.limit, 100, 10_000)?;
    let now = crate::now_ms();
    if let Some(device) = &p.device {
        known_device(&state, device).await?;
    }
    let q = EventQuery {
        since: parse_time("since", p.since.as_deref(), now)?,
        until: parse_time("until", p.until.as_deref(), now)?,
        device: p.device,
        code: p.code,
        action: p.action,
        kind: p.kind,
        before_id: p.before,
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

/// `GET /api/frames` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FramesParams {
    device: Option<String>,
    #[serde(default)]
    unknown: bool,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/frames?device=&unknown=&before=&limit=`: newest first.
pub(crate) async fn frames(
    State(state): State<ApiState>,
    Params(p): Params<FramesParams>,
) -> ApiResult<Json<FramesPage>> {
    let limit = parse_limit(p.limit, 100, 10_000)?;
    let q = FrameQuery {
        device: p.device,
        unknown: p.unknown,
        before_id: p.before,
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
    PathId(id): PathId,
) -> ApiResult<Json<FrameAnswer>> {
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
    PathId(id): PathId,
) -> ApiResult<Response> {
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
