//! `GET /metrics`: the Prometheus text exposition (format 0.0.4) of the server's counters (written by
//! [`Live::write_metrics`](crate::Live::write_metrics) with the helpers here), the API's limits and each
//! sink's cursor.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{query, Api, ApiResult};

/// A label value escaped as the text format requires: `\` → `\\`, `"` → `\"`, line feed → `\n`.
/// Anything a device sends (an event code) can then neither end the value nor the line.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP alarm_center_{name} {help}\n# TYPE alarm_center_{name} {kind}"
    );
}

/// A metric family whose samples have one label (`label`), or none when `label` is empty.
pub fn labelled<'a>(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) {
    family(out, name, kind, help);
    for (value, n) in samples {
        if label.is_empty() {
            let _ = writeln!(out, "alarm_center_{name} {n}");
        } else {
            let _ = writeln!(
                out,
                "alarm_center_{name}{{{label}=\"{}\"}} {n}",
                escape_label(value)
            );
        }
    }
}

/// One unlabelled sample.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    labelled(out, (name, kind, help), "", [("", value)]);
}

/// Prometheus metrics
///
/// Prometheus text exposition (format 0.0.4). Server counters, all prefixed `alarm_center_`:
/// `connections_open` (gauge), `connections_accepted_total`, `connections_closed_total{reason=
/// "idle"|"slow_sender"|"replaced"|"unknown_device"}`, `connections_refused_total{limit="total"|"per_ip"}`,
/// `bytes_received_total`, `frames_total`, `frames_junk_total`, `frames_error_total`,
/// `events_received_total`, `events_committed_total`, `store_errors_total`,
/// `identity_conflicts_total`, `new_devices_refused_total`, `devices_expired_total`,
/// `offline_transitions_total`, `devices_online` (gauge), `frames_by_kind_total{protocol,kind}`,
/// `decode_errors_total{cause}`, `events_by_code_total{code}` (the first 500 codes, then `other`),
/// `commit_latency_seconds` (histogram). The HTTP API: `api_connections_open` (gauge),
/// `api_connections_refused_total`, `api_stream_clients` (gauge), `api_stream_refused_total`,
/// `api_decode_busy_total`, `api_decode_truncated_total`. Per sink, labelled `{sink="<name>"}`:
/// `sink_delivered_total`, `sink_dead_letters_total`, `sink_failures_total`, `sink_lag_events`
/// (gauge; events in the log after the sink's cursor, never below 0).
///
/// Label values are escaped as the text format requires (`\\`, `\"`, `\n`): an event code sent by a
/// device cannot end a value or a line.
///
/// The sink metrics read the store, so a store failure answers 503 instead of the text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Metrics.", body = String, content_type = "text/plain; version=0.0.4",
         example = "# HELP alarm_center_connections_open Device connections open.\n\
                    # TYPE alarm_center_connections_open gauge\n\
                    alarm_center_connections_open 2\n\
                    # HELP alarm_center_sink_lag_events Events in the log after the sink's cursor.\n\
                    # TYPE alarm_center_sink_lag_events gauge\n\
                    alarm_center_sink_lag_events{sink=\"webhook\"} 0\n"),
        (status = 401, response = crate::openapi::responses::Unauthorized),
        (status = 500, response = crate::openapi::responses::InternalError),
        (status = 503, response = crate::openapi::responses::StoreUnavailable),
    )
)]
pub(crate) async fn metrics(State(api): State<Api>) -> ApiResult<Response> {
    let mut out = String::new();
    let out = &mut out;
    api.state.live.write_metrics(out);
    single(
        out,
        "devices_online",
        "gauge",
        "Devices online.",
        api.state.live.online_count() as u64,
    );

    let limits = &api.limits;
    let in_use = |max: usize, semaphore: &tokio::sync::Semaphore| {
        max.saturating_sub(semaphore.available_permits()) as u64
    };
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    single(
        out,
        "api_connections_open",
        "gauge",
        "HTTP API connections open.",
        in_use(limits.max_connections, &limits.connections),
    );
    single(
        out,
        "api_connections_refused_total",
        "counter",
        "HTTP API connections closed at once: api.max-connections reached.",
        counter(&limits.connections_refused),
    );
    single(
        out,
        "api_stream_clients",
        "gauge",
        "Live event streams open.",
        in_use(limits.max_streams, &limits.streams),
    );
    single(
        out,
        "api_stream_refused_total",
        "counter",
        "Live event streams refused: api.max-stream-clients reached.",
        counter(&limits.streams_refused),
    );
    single(
        out,
        "api_decode_busy_total",
        "counter",
        "Decode requests refused: the decoder was busy.",
        counter(&limits.decode_busy),
    );
    single(
        out,
        "api_decode_truncated_total",
        "counter",
        "Decode answers cut short at a size limit.",
        counter(&limits.decode_truncated),
    );

    let (last, cursors) = query(&api.state, |db| {
        Ok((db.last_event_id()?, db.sink_cursors()?))
    })
    .await?;
    let sink_metric =
        |out: &mut String,
         meta: (&str, &str, &str),
         value: &dyn Fn(&alarm_center_store::SinkCursor) -> u64| {
            labelled(
                out,
                (&format!("sink_{}", meta.0), meta.1, meta.2),
                "sink",
                cursors.iter().map(|c| (c.sink.as_str(), value(c))),
            );
        };
    sink_metric(
        out,
        (
            "delivered_total",
            "counter",
            "Events the destination accepted.",
        ),
        &|c| c.delivered,
    );
    sink_metric(
        out,
        ("dead_letters_total", "counter", "Events given up on."),
        &|c| c.dead_letters,
    );
    sink_metric(
        out,
        ("failures_total", "counter", "Destination outages seen."),
        &|c| c.failures,
    );
    sink_metric(
        out,
        (
            "lag_events",
            "gauge",
            "Events in the log after the sink's cursor.",
        ),
        &|c| (last - c.position).max(0) as u64,
    );
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        std::mem::take(out),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::escape_label;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("VideoMotion"), "VideoMotion");
        assert_eq!(escape_label("tab\there\r"), "tab\there\r");
    }
}
