//! The server's own families of `GET /metrics` (the API renders the rest): ingest counters, decode
//! errors, events by code, the receive-to-commit histogram.

use std::fmt::Write as _;

use alarm_center_api::metrics::{escape_label, family, labelled, single};

use crate::stats::Stats;

/// Writes the families of `s` in the Prometheus text format.
pub(crate) fn write(s: &Stats, out: &mut String) {
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
}
