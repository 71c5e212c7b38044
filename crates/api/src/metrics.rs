//! `GET /metrics`: the OpenMetrics text exposition, encoded by `prometheus-client`, of the server's
//! families (registered by [`Live::register_metrics`]), the API's limits and each sink's cursor. Every
//! family is named `alarm_center_…`.
//!
//! Families are written at scrape time by collectors that read the live values (the counters are
//! kept once, where they are counted), through the helpers [`single`] and [`family`]. Counters are
//! named without `_total`: the encoder appends it to the sample (`frames` → `alarm_center_frames_total`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use alarm_center_store::SinkCursor;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{text, DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

use super::{query, Api, ApiError, ApiResult, Limits, Live};

/// The prefix of every family.
pub const PREFIX: &str = "alarm_center";

/// The content type of the OpenMetrics text format, as `prometheus-client` documents for its encoder.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Writes an unlabelled family of one sample: `name` (without the prefix; a counter without `_total`),
/// `help`, and its value (a `ConstCounter` or `ConstGauge`).
pub fn single<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: M,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, M::TYPE)?)
}

/// Writes a labelled family: one sample per label set. Without samples nothing is written, as the
/// crate's registry does for an empty `Family` (and as some OpenMetrics parsers need). Label values are
/// escaped by the encoder (`\`, `"`, line feed), so a value a device sent cannot end the value nor the
/// line.
pub fn family<L: EncodeLabelSet, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The registry of one API server: the server's families and the API's own ([`ApiCollector`]).
pub(crate) fn registry(live: &Arc<dyn Live>, limits: &Arc<Limits>) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    live.register_metrics(&mut registry);
    registry.register_collector(Box::new(ApiCollector {
        live: live.clone(),
        limits: limits.clone(),
    }));
    registry
}

/// Devices online (asked of the server) and the API's limits, read at scrape time.
struct ApiCollector {
    live: Arc<dyn Live>,
    limits: Arc<Limits>,
}

impl fmt::Debug for ApiCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCollector").finish_non_exhaustive()
    }
}

impl Collector for ApiCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        let limits = &self.limits;
        let in_use = |max: usize, semaphore: &tokio::sync::Semaphore| {
            ConstGauge::new(max.saturating_sub(semaphore.available_permits()) as u64)
        };
        let counter = |c: &AtomicU64| ConstCounter::new(c.load(Ordering::Relaxed));
        let online = ConstGauge::new(self.live.online_count() as u64);
        single(e, "devices_online", "Devices online.", online)?;
        single(
            e,
            "api_connections_open",
            "HTTP API connections open.",
            in_use(limits.max_connections, &limits.connections),
        )?;
        single(
            e,
            "api_connections_refused",
            "HTTP API connections closed at once: api.max-connections reached.",
            counter(&limits.connections_refused),
        )?;
        single(
            e,
            "api_stream_clients",
            "Live event streams open.",
            in_use(limits.max_streams, &limits.streams),
        )?;
        single(
            e,
            "api_stream_refused",
            "Live event streams refused: api.max-stream-clients reached.",
            counter(&limits.streams_refused),
        )?;
        single(
            e,
            "api_decode_busy",
            "Decode requests refused: the decoder was busy.",
            counter(&limits.decode_busy),
        )?;
        single(
            e,
            "api_decode_truncated",
            "Decode answers cut short at a size limit.",
            counter(&limits.decode_truncated),
        )
    }
}

/// Each sink's counters and lag, as read from the store for one scrape.
#[derive(Debug)]
struct SinkCursors {
    /// The id of the last event in the log.
    last: i64,
    cursors: Vec<SinkCursor>,
}

impl Collector for SinkCursors {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        let by_sink = |value: fn(&SinkCursor) -> u64| {
            self.cursors
                .iter()
                .map(move |c| ([("sink", c.sink.as_str())], ConstCounter::new(value(c))))
        };
        let delivered = by_sink(|c| c.delivered);
        family(
            e,
            "sink_delivered",
            "Events the destination accepted.",
            delivered,
        )?;
        let dead = by_sink(|c| c.dead_letters);
        family(e, "sink_dead_letters", "Events given up on.", dead)?;
        let failures = by_sink(|c| c.failures);
        family(e, "sink_failures", "Destination outages seen.", failures)?;
        let lag = self.cursors.iter().map(|c| {
            let lag = (self.last - c.position).max(0) as u64;
            ([("sink", c.sink.as_str())], ConstGauge::new(lag))
        });
        family(
            e,
            "sink_lag_events",
            "Events in the log after the sink's cursor.",
            lag,
        )
    }
}

/// The whole exposition: the API server's registry, then the sinks read for this scrape, then `# EOF`.
fn encode(registry: &Registry, sinks: SinkCursors) -> Result<String, fmt::Error> {
    let mut scrape = Registry::with_prefix(PREFIX);
    scrape.register_collector(Box::new(sinks));
    let mut out = String::new();
    text::encode_registry(&mut out, registry)?;
    text::encode_registry(&mut out, &scrape)?;
    text::encode_eof(&mut out)?;
    Ok(out)
}

/// Prometheus metrics
///
/// OpenMetrics 1.0 text (`# EOF` at the end), encoded by the `prometheus-client` crate. Server
/// counters, all prefixed `alarm_center_` (counter samples end in `_total`): `connections_open`
/// (gauge), `connections_open_by_thread{thread}` (gauges, per connection thread),
/// `connections_accepted_total`, `connections_handed_over_total` (accepted by one connection thread,
/// served by another that had fewer), `accept_helpers_called_total` (the connection thread that
/// accepts fell behind and called the others in), `connections_accepted_by_helpers_total` (accepted
/// by those others meanwhile), `connections_closed_total{reason}`,
/// `connections_refused_total{limit="total"|"per_ip"}`, `bytes_received_total`, `frames_total`,
/// `frames_junk_total`, `frames_error_total`, `events_received_total`, `events_committed_total`,
/// `store_errors_total`, `store_commits_total`, `identity_conflicts_total`, `new_devices_refused_total`,
/// `devices_expired_total`, `offline_transitions_total`, `devices_online` (gauge),
/// `frames_by_kind_total{protocol,kind}`, `decode_errors_total{cause}`, `events_by_code_total{code}`
/// (the first 500 codes, then `other`), `commit_latency_seconds` (histogram), `store_write_seconds`
/// (histogram of the store writer's write transactions: statements, commit and the per-device index
/// addition after it; not retention passes nor the writer's own checkpoints). The HTTP API:
/// `api_connections_open` (gauge), `api_connections_refused_total`, `api_stream_clients` (gauge),
/// `api_stream_refused_total`, `api_decode_busy_total`, `api_decode_truncated_total`. Per sink,
/// labelled `{sink="<name>"}`: `sink_delivered_total`, `sink_dead_letters_total`,
/// `sink_failures_total`, `sink_lag_events` (gauge; events in the log after the sink's cursor, never
/// below 0).
///
/// Label values are escaped by the encoder: an event code sent by a device cannot end a value or a
/// line.
///
/// The sink metrics read the store, so a store failure answers 503 instead of the text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Metrics.", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
         example = "# HELP alarm_center_connections_open Device connections open.\n\
                    # TYPE alarm_center_connections_open gauge\n\
                    alarm_center_connections_open 2\n\
                    # HELP alarm_center_sink_lag_events Events in the log after the sink's cursor.\n\
                    # TYPE alarm_center_sink_lag_events gauge\n\
                    alarm_center_sink_lag_events{sink=\"webhook\"} 0\n\
                    # EOF\n"),
        (status = 401, response = crate::openapi::responses::Unauthorized),
        (status = 500, response = crate::openapi::responses::InternalError),
        (status = 503, response = crate::openapi::responses::StoreUnavailable),
    )
)]
pub(crate) async fn metrics(State(api): State<Api>) -> ApiResult<Response> {
    let (last, cursors) = query(&api.state, |db| {
        Ok((db.last_event_id()?, db.sink_cursors()?))
    })
    .await?;
    let text = encode(&api.metrics, SinkCursors { last, cursors }).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
    })?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(sink: &str, position: i64, delivered: u64) -> SinkCursor {
        SinkCursor {
            sink: sink.into(),
            position,
            delivered,
            ..SinkCursor::default()
        }
    }

    #[test]
    fn sinks_are_labelled_and_their_lag_never_negative() {
        let sinks = SinkCursors {
            last: 10,
            cursors: vec![cursor("mqtt", 4, 4), cursor("web\"hook", 12, 7)],
        };
        let text = encode(&Registry::default(), sinks).unwrap();
        for line in [
            "# TYPE alarm_center_sink_delivered counter",
            "alarm_center_sink_delivered_total{sink=\"mqtt\"} 4",
            "alarm_center_sink_delivered_total{sink=\"web\\\"hook\"} 7",
            "alarm_center_sink_lag_events{sink=\"mqtt\"} 6",
            "alarm_center_sink_lag_events{sink=\"web\\\"hook\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(text.ends_with("\n# EOF\n"), "{text}");
    }

    #[test]
    fn families_without_samples_are_left_out() {
        let sinks = SinkCursors {
            last: 0,
            cursors: vec![],
        };
        assert_eq!(encode(&Registry::default(), sinks).unwrap(), "# EOF\n");
    }
}
