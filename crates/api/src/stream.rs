//! `GET /api/stream`: Server-Sent Events of committed events, at most `api.max-stream-clients` at once.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use serde::Deserialize;

use super::params::Params;
use super::{busy, Api, ApiResult};

/// `GET /api/stream` parameters: exact filters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamParams {
    device: Option<String>,
    code: Option<String>,
    kind: Option<String>,
    action: Option<String>,
}

/// `GET /api/stream?device=&code=&kind=&action=`: Server-Sent Events. Each committed event that passes
/// the filters is an `event` message (the event JSON, `id:` = its log id); device online/offline are
/// events of kind `device`. A client too slow to keep up gets a `gap` message with the number of batches
/// it missed (ingest never waits for it) and can fetch them from `/api/events?before=…`. Past
/// `api.max-stream-clients` streams, 503 with `Retry-After`; a stream's place is freed when it ends.
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
                    vec![Ok(Event::default()
                        .event("gap")
                        .data(json!({"missed_batches": missed}).to_string()))]
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
