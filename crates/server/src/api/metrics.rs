//! `GET /metrics`: the Prometheus text exposition (format 0.0.4) of the server's counters, the API's
//! limits and each sink's cursor.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{query, Api, ApiResult};
use crate::stats::Stats;

/// A label value escaped as the text format requires: `\` → `\\`, `"` → `\"`, line feed → `\n`.
/// Anything a device sends (an event code) can then neither end the value nor the line.
pub(crate) fn escape_label(value: &str) -> String {
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
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP alarm_center_{name} {help}\n# TYPE alarm_center_{name} {kind}"
    );
}

/// A metric family whose samples have one label (`label`), or none when `label` is empty.
fn labelled<'a>(
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
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    labelled(out, (name, kind, help), "", [("", value)]);
}

/// Prometheus text exposition of the server's counters, the API's and each sink's cursor.
pub(crate) async fn metrics(State(api): State<Api>) -> ApiResult<Response> {
    let s = &api.state.stats;
    let mut out = String::new();
    let out = &mut out;
    single(
        out,
        "connections_open",
        "gauge",
        "Device connections open.",
        Stats::get(&s.connections_open),
    );
    single(
        out,
        "connections_accepted_total",
        "counter",
        "Device connections accepted.",
        Stats::get(&s.connections_accepted),
    );
    labelled(
        out,
        (
            "connections_closed_total",
            "counter",
            "Device connections closed by the server, by reason.",
        ),
        "reason",
        crate::close_reason::CloseReason::LABELS
            .iter()
            .enumerate()
            .map(|(n, label)| (*label, Stats::get(&s.closed_by_reason[n])))
            .chain([("replaced", Stats::get(&s.closed_replaced))]),
    );
    labelled(
        out,
        (
            "connections_refused_total",
            "counter",
            "Device connections refused, by limit.",
        ),
        "limit",
        [
            ("total", Stats::get(&s.refused_total_limit)),
            ("per_ip", Stats::get(&s.refused_per_ip_limit)),
        ],
    );
    single(
        out,
        "bytes_received_total",
        "counter",
        "Bytes received from devices.",
        Stats::get(&s.bytes_received),
    );
    single(
        out,
        "frames_total",
        "counter",
        "Frames decoded.",
        Stats::get(&s.frames),
    );
    single(
        out,
        "frames_junk_total",
        "counter",
        "Frames of unrecognised bytes (kept).",
        Stats::get(&s.frames_junk),
    );
    single(
        out,
        "frames_error_total",
        "counter",
        "Frames with a decode error (kept).",
        Stats::get(&s.frames_error),
    );
    single(
        out,
        "events_received_total",
        "counter",
        "Events extracted from frames.",
        Stats::get(&s.events_received),
    );
    single(
        out,
        "events_committed_total",
        "counter",
        "Events committed to the store.",
        Stats::get(&s.events_committed),
    );
    single(
        out,
        "store_errors_total",
        "counter",
        "Failed store writes (retried).",
        Stats::get(&s.store_errors),
    );
    single(
        out,
        "store_failing",
        "gauge",
        "1 while commits fail (the server is not ready), else 0.",
        u64::from(s.store_failure().is_some()),
    );
    single(
        out,
        "store_retention_runs_total",
        "counter",
        "Retention passes run (periodic, or early when space or size ran short).",
        Stats::get(&s.retention_runs),
    );
    single(
        out,
        "events_discarded_total",
        "counter",
        "Events given up because the store still failed at shutdown.",
        Stats::get(&s.events_discarded),
    );
    single(
        out,
        "identity_conflicts_total",
        "counter",
        "Connections from another address claiming a device that already had open connections.",
        Stats::get(&s.identity_conflicts),
    );
    single(
        out,
        "active_alarms_untracked_total",
        "counter",
        "Alarm starts stored but not tracked for synthetic stops: their device had 4096 alarms active already.",
        Stats::get(&s.active_alarms_untracked),
    );
    single(
        out,
        "new_devices_refused_total",
        "counter",
        "Connections closed because their frame would have created a device past a new-device limit (the frame is kept).",
        Stats::get(&s.new_devices_refused),
    );
    single(
        out,
        "devices_expired_total",
        "counter",
        "Never-configured devices forgotten after server.device-expiry of silence.",
        Stats::get(&s.devices_expired),
    );
    single(
        out,
        "offline_transitions_total",
        "counter",
        "Devices that went offline.",
        Stats::get(&s.offline_transitions),
    );
    single(
        out,
        "devices_online",
        "gauge",
        "Devices online.",
        api.state.shared.registry.online_count() as u64,
    );

    let labels = s.labelled();
    family(
        out,
        "frames_by_kind_total",
        "counter",
        "Frames by protocol and kind.",
    );
    for ((protocol, kind), n) in &labels.frames {
        let _ = writeln!(
            out,
            "alarm_center_frames_by_kind_total{{protocol=\"{}\",kind=\"{}\"}} {n}",
            escape_label(protocol),
            escape_label(kind)
        );
    }
    labelled(
        out,
        (
            "decode_errors_total",
            "counter",
            "Frames kept with a decode error, by cause.",
        ),
        "cause",
        labels.errors.iter().map(|(cause, n)| (*cause, *n)),
    );
    labelled(
        out,
        (
            "events_by_code_total",
            "counter",
            "Events extracted from frames, by code.",
        ),
        "code",
        labels.events.iter().map(|(code, n)| (code.as_str(), *n)),
    );
    let (buckets, count, sum) = s.latency_histogram();
    family(
        out,
        "commit_latency_seconds",
        "histogram",
        "Receive-to-commit latency of frames.",
    );
    for (bound, n) in buckets {
        let _ = writeln!(
            out,
            "alarm_center_commit_latency_seconds_bucket{{le=\"{}\"}} {n}",
            bound as f64 / 1000.0
        );
    }
    let _ = writeln!(out, "alarm_center_commit_latency_seconds_bucket{{le=\"+Inf\"}} {count}\nalarm_center_commit_latency_seconds_sum {sum}\nalarm_center_commit_latency_seconds_count {count}");

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
