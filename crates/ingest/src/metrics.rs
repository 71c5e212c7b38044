//! The server's own families of `GET /metrics` (the API encodes the rest): ingest counters, decode
//! errors, events by code, the receive-to-commit and write-transaction histograms. [`StatsCollector`]
//! reads [`Stats`] at each scrape, so every counter is kept once, where it is counted. Counter names lack `_total`: the
//! encoder appends it (`frames` → `alarm_center_frames_total`).

use std::fmt;
use std::sync::Arc;

use alarm_center_api::metrics::{family, single};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::close_reason::CloseReason;
use crate::stats::Stats;

/// Encodes the families of [`Stats`] at scrape time.
#[derive(Debug)]
pub(crate) struct StatsCollector(pub(crate) Arc<Stats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let (e, s) = (&mut encoder, &*self.0);
        connections(e, s)?;
        pipeline(e, s)?;
        devices(e, s)?;
        labelled(e, s)?;
        histogram(
            e,
            "commit_latency_seconds",
            "Receive-to-commit latency of frames.",
            s.latency_histogram(),
        )?;
        histogram(
            e,
            "store_write_seconds",
            "Duration of the store writer's write transactions (statements, commit, per-device index addition).",
            s.write_histogram(),
        )
    }
}

/// A histogram family, named with its unit but without a `# UNIT` line, as before (the OpenMetrics
/// parser of the tests, `openmetrics-parser`, refuses one on a histogram).
fn histogram(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    histogram: &Histogram,
) -> fmt::Result {
    histogram.encode(e.encode_descriptor(name, help, None, histogram.metric_type())?)
}

/// A counter's value.
fn counter(value: &std::sync::atomic::AtomicU64) -> ConstCounter {
    ConstCounter::new(Stats::get(value))
}

/// Device connections: open, accepted, closed by reason, refused by limit.
fn connections(e: &mut DescriptorEncoder<'_>, s: &Stats) -> fmt::Result {
    let open = ConstGauge::new(Stats::get(&s.connections_open));
    single(e, "connections_open", "Device connections open.", open)?;
    let by_thread = s.connections_by_thread.get().into_iter().flatten();
    family(
        e,
        "connections_open_by_thread",
        "Device connections open on each connection thread (server.connection-threads).",
        by_thread.enumerate().map(|(thread, n)| {
            (
                [("thread", thread.to_string())],
                ConstGauge::new(Stats::get(n)),
            )
        }),
    )?;
    let accepted = counter(&s.connections_accepted);
    single(
        e,
        "connections_accepted",
        "Device connections accepted.",
        accepted,
    )?;
    let handed_over = counter(&s.connections_handed_over);
    single(
        e,
        "connections_handed_over",
        "Device connections accepted by one connection thread and served by another that had fewer.",
        handed_over,
    )?;
    let helpers_called = counter(&s.accept_helpers_called);
    single(
        e,
        "accept_helpers_called",
        "Times the connection thread that accepts fell behind (or an accept failed) and called the others in to accept too.",
        helpers_called,
    )?;
    let by_helpers = counter(&s.connections_accepted_by_helpers);
    single(
        e,
        "connections_accepted_by_helpers",
        "Device connections accepted by the other connection threads while the one that accepts had called them in.",
        by_helpers,
    )?;
    let closed = CloseReason::LABELS
        .iter()
        .zip(&s.closed_by_reason)
        .map(|(label, n)| (*label, n))
        .chain([("replaced", &s.closed_replaced)])
        .map(|(label, n)| ([("reason", label)], counter(n)));
    family(
        e,
        "connections_closed",
        "Device connections closed by the server, by reason.",
        closed,
    )?;
    let refused = [
        ("total", &s.refused_total_limit),
        ("per_ip", &s.refused_per_ip_limit),
    ]
    .map(|(limit, n)| ([("limit", limit)], counter(n)));
    family(
        e,
        "connections_refused",
        "Device connections refused, by limit.",
        refused,
    )
}

/// Bytes, frames, events and the store.
fn pipeline(e: &mut DescriptorEncoder<'_>, s: &Stats) -> fmt::Result {
    let counters = [
        (
            "bytes_received",
            "Bytes received from devices.",
            &s.bytes_received,
        ),
        ("frames", "Frames decoded.", &s.frames),
        (
            "frames_junk",
            "Frames of unrecognised bytes (kept).",
            &s.frames_junk,
        ),
        (
            "frames_error",
            "Frames with a decode error (kept).",
            &s.frames_error,
        ),
        (
            "events_received",
            "Events extracted from frames.",
            &s.events_received,
        ),
        (
            "events_committed",
            "Events committed to the store.",
            &s.events_committed,
        ),
        (
            "store_errors",
            "Failed store writes (retried).",
            &s.store_errors,
        ),
        (
            "store_commits",
            "Transactions committed by the store writer.",
            &s.store_commits,
        ),
    ];
    for (name, help, value) in counters {
        single(e, name, help, counter(value))?;
    }
    let failing = ConstGauge::new(u64::from(s.store_failure().is_some()));
    single(
        e,
        "store_failing",
        "1 while commits fail (the server is not ready), else 0.",
        failing,
    )?;
    single(
        e,
        "store_retention_runs",
        "Retention passes run (periodic, or early when space or size ran short).",
        counter(&s.retention_runs),
    )?;
    single(
        e,
        "events_discarded",
        "Events given up because the store still failed at shutdown.",
        counter(&s.events_discarded),
    )
}

/// What happened to devices: identity conflicts, untracked alarms, refusals, expiry, going offline.
fn devices(e: &mut DescriptorEncoder<'_>, s: &Stats) -> fmt::Result {
    let counters = [
        (
            "identity_conflicts",
            "Connections from another address claiming a device that already had open connections.",
            &s.identity_conflicts,
        ),
        (
            "active_alarms_untracked",
            "Alarm starts stored but not tracked for synthetic stops: their device had 4096 alarms active already.",
            &s.active_alarms_untracked,
        ),
        (
            "new_devices_refused",
            "Connections closed because their frame would have created a device past a new-device limit (the frame is kept).",
            &s.new_devices_refused,
        ),
        (
            "devices_expired",
            "Never-configured devices forgotten after server.device-expiry of silence.",
            &s.devices_expired,
        ),
        (
            "offline_transitions",
            "Devices that went offline.",
            &s.offline_transitions,
        ),
    ];
    for (name, help, value) in counters {
        single(e, name, help, counter(value))?;
    }
    Ok(())
}

/// Frames by protocol and kind, decode errors by cause, events by code.
fn labelled(e: &mut DescriptorEncoder<'_>, s: &Stats) -> fmt::Result {
    let labels = s.labelled();
    let frames = labels.frames.iter().map(|((protocol, kind), n)| {
        (
            [("protocol", *protocol), ("kind", *kind)],
            ConstCounter::new(*n),
        )
    });
    family(e, "frames_by_kind", "Frames by protocol and kind.", frames)?;
    let errors = labels
        .errors
        .iter()
        .map(|(cause, n)| ([("cause", *cause)], ConstCounter::new(*n)));
    family(
        e,
        "decode_errors",
        "Frames kept with a decode error, by cause.",
        errors,
    )?;
    let events = labels
        .events
        .iter()
        .map(|(code, n)| ([("code", code.as_str())], ConstCounter::new(*n)));
    family(
        e,
        "events_by_code",
        "Events extracted from frames, by code.",
        events,
    )
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text;
    use prometheus_client::registry::Registry;

    use super::*;
    use alarm_center_proto::{Kind, Protocol};

    fn scrape(stats: &Arc<Stats>) -> String {
        let mut registry = Registry::with_prefix(alarm_center_api::metrics::PREFIX);
        registry.register_collector(Box::new(StatsCollector(stats.clone())));
        let mut out = String::new();
        text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn families_keep_their_names_labels_and_values() {
        let stats = Arc::new(Stats::default());
        Stats::inc(&stats.frames);
        Stats::inc(&stats.closed_by_reason[2]);
        stats.count_frame(
            Protocol::Dvrip,
            Kind::Alarm,
            Some("oversized"),
            ["VideoMotion"],
        );
        stats.set_store_failure("disk full".into());
        let text = scrape(&stats);
        for line in [
            "# TYPE alarm_center_frames counter",
            "alarm_center_frames_total 1",
            "alarm_center_frames_junk_total 0",
            "alarm_center_connections_open 0",
            "alarm_center_connections_closed_total{reason=\"idle\"} 1",
            "alarm_center_connections_closed_total{reason=\"replaced\"} 0",
            "alarm_center_connections_refused_total{limit=\"per_ip\"} 0",
            "alarm_center_store_failing 1",
            "alarm_center_frames_by_kind_total{protocol=\"dvrip\",kind=\"alarm\"} 1",
            "alarm_center_decode_errors_total{cause=\"oversized\"} 1",
            "alarm_center_events_by_code_total{code=\"VideoMotion\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    #[test]
    fn the_latency_histogram_has_the_bounds_in_seconds() {
        let stats = Arc::new(Stats::default());
        stats.record_latencies([500, 1_500, 30_000, 2_000_000]);
        let text = scrape(&stats);
        for line in [
            "# TYPE alarm_center_commit_latency_seconds histogram",
            "alarm_center_commit_latency_seconds_bucket{le=\"0.001\"} 1",
            "alarm_center_commit_latency_seconds_bucket{le=\"0.002\"} 2",
            "alarm_center_commit_latency_seconds_bucket{le=\"0.025\"} 2",
            "alarm_center_commit_latency_seconds_bucket{le=\"0.05\"} 3",
            "alarm_center_commit_latency_seconds_bucket{le=\"1.0\"} 3",
            "alarm_center_commit_latency_seconds_bucket{le=\"+Inf\"} 4",
            "alarm_center_commit_latency_seconds_count 4",
            "alarm_center_commit_latency_seconds_sum 2.032",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        // The statistics line's figures are the interval's samples, not the histogram's.
        assert_eq!(stats.take_latency_ms(), Some((1.5, 30.0, 2000.0)));
        assert_eq!(stats.take_latency_ms(), None);
    }

    #[test]
    fn write_transactions_have_a_histogram_in_seconds_and_interval_figures() {
        let stats = Arc::new(Stats::default());
        for ms in [3, 4, 40] {
            stats.record_write(std::time::Duration::from_millis(ms));
        }
        let text = scrape(&stats);
        for line in [
            "# TYPE alarm_center_store_write_seconds histogram",
            "alarm_center_store_write_seconds_bucket{le=\"0.002\"} 0",
            "alarm_center_store_write_seconds_bucket{le=\"0.005\"} 2",
            "alarm_center_store_write_seconds_bucket{le=\"0.05\"} 3",
            "alarm_center_store_write_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert_eq!(stats.take_write_ms(), Some((4.0, 4.0, 40.0)));
        assert_eq!(stats.take_write_ms(), None);
    }

    #[test]
    fn a_hostile_event_code_is_escaped() {
        let stats = Arc::new(Stats::default());
        stats.count_frame(Protocol::Json, Kind::Request, None, ["a\\b\"c\nd"]);
        let text = scrape(&stats);
        assert!(
            text.contains("alarm_center_events_by_code_total{code=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
    }
}
