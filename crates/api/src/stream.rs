//! `GET /api/stream`: Server-Sent Events of committed events, at most `api.max-stream-clients` at once.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::params::Params;
use super::{busy, Api, ApiResult};

/// `GET /api/stream` parameters: exact filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamParams {
    /// Only this device id.
    device: Option<String>,
    /// Only this event code.
    code: Option<String>,
    /// Only this kind (e.g. `alarm`, `device`).
    kind: Option<String>,
    /// Only this action.
    action: Option<String>,
}

/// `data` of an SSE `gap` message: the client fell behind.
#[derive(Serialize, ToSchema)]
pub(crate) struct GapNotice {
    /// Committed batches (each of one or more events) the client missed.
    #[schema(minimum = 1)]
    missed_batches: u64,
}

/// Live events (Server-Sent Events)
///
/// A Server-Sent Events stream of every event committed after the client connects that passes the
/// filters (exact matches; any parameter not listed here is a 400). Messages:
///
/// * `event: event` — one committed event. `id:` is its log id, `data:` the `Event` JSON (the same
///   object as in `/api/events`). Device online/offline changes are events of kind `device`
///   (codes `DeviceOnline`, `DeviceOffline`).
/// * `event: gap` — the client fell behind and the server dropped messages rather than slow ingest.
///   `data:` is a `GapNotice`, `{"missed_batches": N}` (N committed batches, each of one or more
///   events, were skipped); no `id:`. Fetch what was missed from `/api/events` (e.g.
///   `?before=<first id seen after the gap>`).
///
/// Comment lines (`:`) are sent as keep-alives. There is no replay: `Last-Event-ID` is ignored, and
/// earlier events come from `/api/events`. The stream ends when the server shuts down.
///
/// At most `api.max-stream-clients` (64) streams are open at once; one more gets 503 with
/// `Retry-After: 1` (counted in `alarm_center_api_stream_refused_total`). A stream's place is freed
/// when its client goes away.
#[utoipa::path(
    get,
    path = "/api/stream",
    tag = "events",
    operation_id = "streamEvents",
    params(StreamParams),
    responses(
        (status = 200, description = "The event stream: SSE messages `event` (data = `Event` JSON, \
         id = event id) and `gap` (data = `GapNotice` JSON).", body = String,
         content_type = "text/event-stream",
         example = "event: event\nid: 1235\ndata: {\"id\":1235,\"device\":\"front-nvr\",\"code\":\"VideoMotion\",\"action\":\"start\",\"index\":0,\"channel\":1,\"kind\":\"alarm\",\"device_time\":null,\"received_at\":\"2024-05-01T10:00:00.123Z\",\"frame_id\":5678}\n\nevent: gap\ndata: {\"missed_batches\":3}\n\n"),
        (status = 400, response = crate::openapi::responses::BadRequest),
        (status = 401, response = crate::openapi::responses::Unauthorized),
        (status = 503, response = crate::openapi::responses::Busy),
    )
)]
pub(crate) async fn stream(
    State(api): State<Api>,
    Params(p): Params<StreamParams>,
) -> ApiResult<Response> {
    let limits = &api.limits;
    let Ok(place) = limits.streams.clone().try_acquire_owned() else {
        limits.streams_refused.fetch_add(1, Ordering::Relaxed);
        return Ok(busy(format!(
            "{} live streams are open (api.max-stream-clients): retry later",
            limits.max_streams
        )));
    };
    let wanted = move |e: &alarm_center_store::StoredEvent| {
        p.device.as_ref().is_none_or(|d| *d == e.event.device)
            && p.code.as_ref().is_none_or(|c| *c == e.event.code)
            && p.kind.as_ref().is_none_or(|k| e.event.kind == k.as_str())
            && p.action
                .as_ref()
                .is_none_or(|a| e.event.action == a.as_str())
    };
    let rx = api.state.committed.subscribe();
    let stop = api.state.shutdown.clone();
    // Each step yields the messages of one committed batch (or one gap notice); the stream ends at
    // shutdown so that the HTTP server can finish. The stream owns its place: dropping it (the client
    // went away, or shutdown) frees it.
    let messages = futures_util::stream::unfold(
        (rx, wanted, stop, place),
        |(mut rx, wanted, stop, place)| async move {
            let received = tokio::select! {
                () = stop.cancelled() => return None,
                received = rx.recv() => received,
            };
            let batch: Vec<Result<Event, std::convert::Infallible>> = match received {
                Ok(events) => events
                    .iter()
                    .filter(|e| wanted(e))
                    .map(|e| {
                        Ok(Event::default()
                            .event("event")
                            .id(e.id.to_string())
                            .data(serde_json::to_string(e).unwrap_or_default()))
                    })
                    .collect(),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    vec![Ok(Event::default().event("gap").data(gap_notice(missed)))]
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((futures_util::stream::iter(batch), (rx, wanted, stop, place)))
        },
    );
    let flat = futures_util::StreamExt::flatten(messages);
    Ok(Sse::new(flat)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The `data` of a `gap` message.
fn gap_notice(missed: u64) -> String {
    serde_json::to_string(&GapNotice {
        missed_batches: missed,
    })
    .unwrap_or_default()
}
