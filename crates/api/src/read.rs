//! The read endpoints: devices (paginated), connections, events, sinks (frames: [`crate::frames`]).
//! Answers are serialised from typed structs: stored JSON (`data`) goes out as stored, never
//! re-parsed.

use alarm_center_store::{ConnectionRow, DeviceRow, EventQuery, SinkCursor, StoredEvent};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::responses::{
    BadRequest, InternalError, NotFound, StoreUnavailable, Unauthorized,
};
use super::openapi::rows;
use super::params::Params;
use super::{bad, query, ApiError, ApiResult, ApiState};

/// Devices per page by default.
pub(crate) const DEVICES_DEFAULT: u32 = 500;
/// Most devices per page.
pub(crate) const DEVICES_MAX: u32 = 5000;

/// `limit`: `default` when absent, else a number from 1 to `max`.
pub(crate) fn parse_limit(limit: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
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
        false => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device {device:?}"),
        )),
    }
}

/// A page of devices.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"devices": [], "next": null, "online": 0}))]
pub(crate) struct DevicesPage {
    /// The devices of this page, in id order.
    #[schema(value_type = Vec<rows::Device>, max_items = 5000)]
    devices: Vec<DeviceRow>,
    /// The `after` of the next page; null when this page is the last.
    #[schema(required = true)]
    next: Option<String>,
    /// Devices online now, over all pages.
    online: usize,
}

/// `GET /api/devices` parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DevicesParams {
    /// Only devices whose id sorts after this one (the `next` of the previous page).
    after: Option<String>,
    /// Most devices in the page.
    #[param(minimum = 1, maximum = 5000, default = 500)]
    limit: Option<u32>,
}

/// Known devices, a page at a time
///
/// The devices in the store in id order (byte order of the UTF-8 ids), `limit` at a time, after the
/// device id `after`. `next` is the `after` of the following page, null on the last page. Any other
/// parameter is a 400.
#[utoipa::path(
    get,
    path = "/api/devices",
    tag = "devices",
    operation_id = "listDevices",
    params(DevicesParams),
    responses(
        (status = 200, description = "A page of devices.", body = DevicesPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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
    // The store's `last_seen` is written every `supervision.last-seen-flush`; the server's is now.
    for device in &mut devices {
        if let Some(at) = state.live.last_seen_ms(&device.id) {
            if at > device.last_seen_ms {
                device.last_seen_ms = at;
                device.last_seen = alarm_center_store::format_ms(at);
            }
        }
    }
    let online = state.live.online_count();
    Ok(Json(DevicesPage {
        devices,
        next,
        online,
    }))
}

/// A device's connections.
#[derive(Serialize, ToSchema)]
pub(crate) struct Connections {
    /// Newest first, at most 100.
    #[schema(value_type = Vec<rows::Connection>, max_items = 100)]
    connections: Vec<ConnectionRow>,
}

/// Connection history of a device
///
/// The device's TCP connections, newest first, at most 100. The `frames` and `bytes` of an open
/// connection are read live. A device the store does not know (no device row and no events) is a
/// 404. No query parameters.
#[utoipa::path(
    get,
    path = "/api/devices/{id}/connections",
    tag = "devices",
    operation_id = "listDeviceConnections",
    params(("id" = String, Path, description = "Device id (as in `Device.id`).")),
    responses(
        (status = 200, description = "The connections.", body = Connections),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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

/// A page of events.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventsPage {
    /// Newest first. Each event's `data` is the stored JSON text, written out as it is.
    #[schema(value_type = Vec<rows::Event>)]
    events: Vec<StoredEvent>,
    /// The id of the last event of this page when the page is full (pass it as `before`); null
    /// otherwise.
    #[schema(required = true)]
    next: Option<i64>,
}

/// `GET /api/events` parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsParams {
    /// Only this device id (exact).
    device: Option<String>,
    /// Only this event code (exact), e.g. `VideoMotion`.
    code: Option<String>,
    /// Only this action (exact), e.g. `start`, `stop`, `pulse`, `state`.
    action: Option<String>,
    /// Only this kind (exact), e.g. `alarm` or `device`.
    kind: Option<String>,
    /// Only events received at or after this time, either RFC 3339 with an offset
    /// (`2024-05-01T10:00:00Z`) or a duration ago (`10m`, `2h`, `7d`, `1h 30m`).
    since: Option<String>,
    /// Only events received at or before this time, RFC 3339 or a duration ago (as `since`).
    until: Option<String>,
    /// Only events with an id below this (the `next` of the previous page).
    before: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    limit: Option<u32>,
}

/// The event log, newest first
///
/// Events newest first, with cursor pagination: pass the answer's `next` as `before` to get the
/// following page. `next` is null when the page holds fewer than `limit` events.
///
/// Every filter is applied in the store query, so a sparse match is found however old it is. A
/// `device` the store does not know (no device row and no events) is a 404.
///
/// Any parameter not listed here is a 400.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    operation_id = "listEvents",
    params(EventsParams),
    responses(
        (status = 200, description = "A page of events.", body = EventsPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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

/// A sink's cursor and counters, and its lag (schema `Sink`).
#[derive(Serialize)]
pub(crate) struct SinkStatus {
    #[serde(flatten)]
    cursor: SinkCursor,
    /// Events in the log after the sink's cursor.
    lag: i64,
}

/// The sinks.
#[derive(Serialize, ToSchema)]
pub(crate) struct Sinks {
    /// Every sink that has saved a cursor, ordered by name.
    #[schema(value_type = Vec<rows::Sink>)]
    sinks: Vec<SinkStatus>,
}

/// Output sinks' cursors and counters
///
/// Every sink that has saved a cursor, ordered by name, with its lag behind the log.
#[utoipa::path(
    get,
    path = "/api/sinks",
    tag = "sinks",
    operation_id = "listSinks",
    responses(
        (status = 200, description = "The sinks.", body = Sinks),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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
