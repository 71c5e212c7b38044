//! The HTTP API: devices, events, raw frames, a decode endpoint, sink status, `/metrics`, `/healthz`,
//! `/readyz`. JSON everywhere; bad requests get `{"error": "…"}` with the right status.
//! Bound to 127.0.0.1:8080 by default; any other address needs `api.token` (Bearer authentication).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use alarm_center_proto::record::{hex, StreamInfo};
use alarm_center_proto::{Decoder, FrameRecord, Session};
use alarm_center_store::{Db, EventQuery, FrameQuery};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::stats::Stats;

/// `[api]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiConfig {
    /// On or off.
    pub enabled: bool,
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Bearer token required on `/api/*` and `/metrics`; mandatory when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
        }
    }
}

impl ApiConfig {
    /// Problems with this configuration.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enabled
            && !self.listen.ip().is_loopback()
            && self.token.as_deref().is_none_or(str::is_empty)
        {
            problems.push(format!(
                "api.token is required to listen on {} (not a loopback address)",
                self.listen
            ));
        }
        problems
    }
}

/// What the handlers need.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) data_dir: PathBuf,
    pub(crate) stats: Arc<Stats>,
    pub(crate) shared: Arc<crate::Shared>,
    pub(crate) token: Option<String>,
    pub(crate) max_frame: usize,
    /// Committed events, for the live stream.
    pub(crate) committed: tokio::sync::broadcast::Sender<crate::Committed>,
}

/// An API error: a status and a message, as `{"error": "…"}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// Runs a store query on a read-only connection off the async threads.
async fn query<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&Db) -> alarm_center_store::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let dir = state.data_dir.clone();
    tokio::task::spawn_blocking(move || Db::open_read_only(&dir).and_then(|db| f(&db)))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")))
}

/// The router.
pub(crate) fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/devices", get(devices))
        .route("/api/devices/{id}/connections", get(connections))
        .route("/api/events", get(events))
        .route("/api/frames", get(frames))
        .route("/api/frames/{id}", get(frame))
        .route("/api/frames/{id}/raw", get(frame_raw))
        .route(
            "/api/decode",
            post(decode).layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024 + 1)),
        )
        .route("/api/sinks", get(sinks))
        .route("/api/stream", get(stream))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route(
            "/",
            get(|| async { ui("text/html; charset=utf-8", include_str!("../ui/index.html")) }),
        )
        .route(
            "/app.js",
            get(|| async {
                ui(
                    "text/javascript; charset=utf-8",
                    include_str!("../ui/app.js"),
                )
            }),
        )
        .route(
            "/style.css",
            get(|| async { ui("text/css; charset=utf-8", include_str!("../ui/style.css")) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// A file of the web UI, embedded in the binary (no CDN, nothing fetched from elsewhere).
fn ui(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/devices/{id}/connections`: the device's connection history, newest first (at most 100).
async fn connections(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let list = query(&state, move |db| db.connections(&id, 100)).await?;
    Ok(Json(json!({ "connections": list })))
}

async fn auth(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn readyz(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let events = query(&state, |db| db.last_event_id()).await?;
    Ok(Json(json!({"ready": true, "last_event_id": events})))
}

fn parse_limit(limit: Option<&str>) -> ApiResult<u32> {
    match limit {
        None => Ok(100),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(bad(format!(
                "limit {text:?}: give a number from 1 to 10000"
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

fn parse_time(name: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    text.map(|t| {
        t.parse::<jiff::Timestamp>()
            .map(|ts| ts.as_millisecond())
            .map_err(|_| {
                bad(format!(
                    "{name} {t:?} is not an RFC 3339 time such as 2024-05-01T10:00:00Z"
                ))
            })
    })
    .transpose()
}

async fn devices(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let devices = query(&state, |db| db.devices()).await?;
    Ok(Json(json!({ "devices": devices })))
}

/// `GET /api/events?device=&code=&action=&kind=&since=&until=&before=&limit=`: newest first; `next`
/// is the `before` of the following page.
async fn events(
    State(state): State<ApiState>,
    Query(p): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    const KNOWN: [&str; 8] = [
        "device", "code", "action", "kind", "since", "until", "before", "limit",
    ];
    if let Some(k) = p.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown parameter {k:?}; known: {}",
            KNOWN.join(", ")
        )));
    }
    let limit = parse_limit(p.get("limit").map(String::as_str))?;
    let until = parse_time("until", p.get("until").map(String::as_str))?;
    let (action, kind) = (p.get("action").cloned(), p.get("kind").cloned());
    let q = EventQuery {
        device: p.get("device").cloned(),
        code: p.get("code").cloned(),
        since: parse_time("since", p.get("since").map(String::as_str))?,
        before_id: parse_id("before", p.get("before").map(String::as_str))?,
        // Action, kind and until are applied after the query: read a little more.
        limit: Some(if action.is_some() || kind.is_some() || until.is_some() {
            10_000
        } else {
            limit
        }),
        ..EventQuery::default()
    };
    let mut list = query(&state, move |db| db.events(&q)).await?;
    list.retain(|e| {
        action.as_deref().is_none_or(|a| e.action == a)
            && kind.as_deref().is_none_or(|k| e.kind == k)
            && until.is_none_or(|u| e.received_ms <= u)
    });
    list.truncate(limit as usize);
    let next = (list.len() == limit as usize)
        .then(|| list.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({ "events": list, "next": next })))
}

async fn frames(
    State(state): State<ApiState>,
    Query(p): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    const KNOWN: [&str; 4] = ["device", "unknown", "before", "limit"];
    if let Some(k) = p.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown parameter {k:?}; known: {}",
            KNOWN.join(", ")
        )));
    }
    let unknown = match p.get("unknown").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(bad(format!("unknown {other:?}: true or false"))),
    };
    let limit = parse_limit(p.get("limit").map(String::as_str))?;
    let q = FrameQuery {
        device: p.get("device").cloned(),
        unknown,
        before_id: parse_id("before", p.get("before").map(String::as_str))?,
        limit: Some(limit),
    };
    let list = query(&state, move |db| db.frames(&q)).await?;
    let next = (list.len() == limit as usize)
        .then(|| list.last().map(|f| f.id))
        .flatten();
    Ok(Json(json!({ "frames": list, "next": next })))
}

fn parse_path_id(text: &str) -> ApiResult<i64> {
    text.parse()
        .map_err(|_| bad(format!("{text:?} is not a frame id")))
}

/// `GET /api/frames/{id}`: the stored classification, the bytes as hex and the field-by-field decode
/// (recomputed from the bytes, without the stream's earlier 0x69 state).
async fn frame(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_path_id(&id)?;
    let stored = query(&state, move |db| db.frame(id))
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no frame {id}")))?;
    let decoded = decode_bytes(&stored.bytes, state.max_frame);
    Ok(Json(
        json!({ "frame": stored, "hex": hex(&stored.bytes), "decoded": decoded }),
    ))
}

async fn frame_raw(State(state): State<ApiState>, Path(id): Path<String>) -> ApiResult<Response> {
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

/// Decodes one stream of bytes into decode records (the `alarm-center decode` schema).
fn decode_bytes(bytes: &[u8], max_frame: usize) -> Vec<Value> {
    let mut decoder = Decoder::new(alarm_center_proto::DecoderConfig { max_frame });
    let mut session = Session::new();
    let mut frames: Vec<_> = decoder.feed(bytes).collect();
    frames.extend(decoder.finish());
    frames
        .iter()
        .map(|frame| {
            let decoded = session.decode(frame);
            let record = FrameRecord {
                frame,
                decoded: &decoded,
                stream: None::<&StreamInfo>,
                include_raw: true,
            };
            serde_json::to_value(record).unwrap_or(Value::Null)
        })
        .collect()
}

/// `POST /api/decode`: a hex dump (any style `alarm-center decode` reads) as text, or raw bytes as
/// `application/octet-stream`; the answer lists the frames of each stream.
async fn decode(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    const MAX_BODY: usize = 4 * 1024 * 1024;
    if body.len() > MAX_BODY {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_BODY} bytes"),
        ));
    }
    if body.is_empty() {
        return Err(bad(
            "empty body: send a hex dump as text or bytes as application/octet-stream",
        ));
    }
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    let streams: Vec<Vec<u8>> = if binary {
        vec![body.to_vec()]
    } else {
        let text = std::str::from_utf8(&body).map_err(|_| {
            bad("the body is not UTF-8 text; send bytes as application/octet-stream")
        })?;
        alarm_center_capture::parse_hex(text)
            .map_err(|e| bad(format!("hex dump: {e}")))?
            .into_iter()
            .map(|s| s.bytes)
            .collect()
    };
    let decoded: Vec<Value> = streams
        .iter()
        .map(|s| json!({"frames": decode_bytes(s, state.max_frame)}))
        .collect();
    Ok(Json(json!({ "streams": decoded })))
}

/// `GET /api/stream?device=&code=&kind=&action=`: Server-Sent Events. Each committed event that passes
/// the filters is an `event` message (the event JSON, `id:` = its log id); device online/offline are
/// events of kind `device`. A client too slow to keep up gets a `gap` message with the number of batches
/// it missed (ingest never waits for it) and can fetch them from `/api/events?before=…`.
async fn stream(
    State(state): State<ApiState>,
    Query(p): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    const KNOWN: [&str; 4] = ["device", "code", "kind", "action"];
    if let Some(k) = p.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown parameter {k:?}; known: {}",
            KNOWN.join(", ")
        )));
    }
    let wanted = move |e: &alarm_center_store::StoredEvent| {
        p.get("device").is_none_or(|d| *d == e.device)
            && p.get("code").is_none_or(|c| *c == e.code)
            && p.get("kind").is_none_or(|k| *k == e.kind)
            && p.get("action").is_none_or(|a| *a == e.action)
    };
    let rx = state.committed.subscribe();
    let stop = state.shared.shutdown.clone();
    // Each step yields the messages of one committed batch (or one gap notice); the stream ends at
    // shutdown so that the HTTP server can finish.
    let messages =
        futures_util::stream::unfold((rx, wanted, stop), |(mut rx, wanted, stop)| async move {
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
            Some((futures_util::stream::iter(batch), (rx, wanted, stop)))
        });
    let flat = futures_util::StreamExt::flatten(messages);
    Ok(Sse::new(flat)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn sinks(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let (last, cursors) = query(&state, |db| Ok((db.last_event_id()?, db.sink_cursors()?))).await?;
    let list: Vec<Value> = cursors
        .into_iter()
        .map(|c| {
            let mut v = serde_json::to_value(&c).unwrap_or(Value::Null);
            v["lag"] = json!(last - c.position);
            v
        })
        .collect();
    Ok(Json(json!({ "sinks": list })))
}

/// Prometheus text exposition of the server's counters and each sink's cursor.
async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    use std::fmt::Write as _;
    let s = &state.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(
            out,
            "# HELP alarm_center_{name} {help}\n# TYPE alarm_center_{name} {kind}"
        );
        for (labels, value) in samples {
            let _ = writeln!(out, "alarm_center_{name}{labels} {value}");
        }
    };
    metric(
        "connections_open",
        "gauge",
        "Device connections open.",
        &[("", Stats::get(&s.connections_open))],
    );
    metric(
        "connections_accepted_total",
        "counter",
        "Device connections accepted.",
        &[("", Stats::get(&s.connections_accepted))],
    );
    metric(
        "connections_closed_total",
        "counter",
        "Device connections closed by the server, by reason.",
        &[
            ("{reason=\"idle\"}", Stats::get(&s.closed_idle)),
            ("{reason=\"slow_sender\"}", Stats::get(&s.closed_slow)),
            ("{reason=\"replaced\"}", Stats::get(&s.closed_replaced)),
            (
                "{reason=\"unknown_device\"}",
                Stats::get(&s.closed_unknown_device),
            ),
        ],
    );
    metric(
        "connections_refused_total",
        "counter",
        "Device connections refused, by limit.",
        &[
            ("{limit=\"total\"}", Stats::get(&s.refused_total_limit)),
            ("{limit=\"per_ip\"}", Stats::get(&s.refused_per_ip_limit)),
        ],
    );
    metric(
        "bytes_received_total",
        "counter",
        "Bytes received from devices.",
        &[("", Stats::get(&s.bytes_received))],
    );
    metric(
        "frames_total",
        "counter",
        "Frames decoded.",
        &[("", Stats::get(&s.frames))],
    );
    metric(
        "frames_junk_total",
        "counter",
        "Frames of unrecognised bytes (kept).",
        &[("", Stats::get(&s.frames_junk))],
    );
    metric(
        "frames_error_total",
        "counter",
        "Frames with a decode error (kept).",
        &[("", Stats::get(&s.frames_error))],
    );
    metric(
        "events_received_total",
        "counter",
        "Events extracted from frames.",
        &[("", Stats::get(&s.events_received))],
    );
    metric(
        "events_committed_total",
        "counter",
        "Events committed to the store.",
        &[("", Stats::get(&s.events_committed))],
    );
    metric(
        "store_errors_total",
        "counter",
        "Failed store writes (retried).",
        &[("", Stats::get(&s.store_errors))],
    );
    metric(
        "offline_transitions_total",
        "counter",
        "Devices that went offline.",
        &[("", Stats::get(&s.offline_transitions))],
    );
    metric(
        "devices_online",
        "gauge",
        "Devices online.",
        &[("", state.shared.registry.online_count() as u64)],
    );
    let labelled = s.labelled();
    let label = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(out, "# HELP alarm_center_frames_by_kind_total Frames by protocol and kind.\n# TYPE alarm_center_frames_by_kind_total counter");
    for ((protocol, kind), n) in &labelled.frames {
        let _ = writeln!(
            out,
            "alarm_center_frames_by_kind_total{{protocol=\"{protocol}\",kind=\"{kind}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP alarm_center_decode_errors_total Frames kept with a decode error, by cause.\n# TYPE alarm_center_decode_errors_total counter");
    for (cause, n) in &labelled.errors {
        let _ = writeln!(
            out,
            "alarm_center_decode_errors_total{{cause=\"{cause}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP alarm_center_events_by_code_total Events extracted from frames, by code.\n# TYPE alarm_center_events_by_code_total counter");
    for (code, n) in &labelled.events {
        let _ = writeln!(
            out,
            "alarm_center_events_by_code_total{{code=\"{}\"}} {n}",
            label(code)
        );
    }
    let (buckets, count, sum) = s.latency_histogram();
    let _ = writeln!(out, "# HELP alarm_center_commit_latency_seconds Receive-to-commit latency of frames.\n# TYPE alarm_center_commit_latency_seconds histogram");
    for (bound, n) in buckets {
        let _ = writeln!(
            out,
            "alarm_center_commit_latency_seconds_bucket{{le=\"{}\"}} {n}",
            bound as f64 / 1000.0
        );
    }
    let _ = writeln!(out, "alarm_center_commit_latency_seconds_bucket{{le=\"+Inf\"}} {count}\nalarm_center_commit_latency_seconds_sum {sum}\nalarm_center_commit_latency_seconds_count {count}");
    let (last, cursors) = query(&state, |db| Ok((db.last_event_id()?, db.sink_cursors()?))).await?;
    let mut sink_metric =
        |name: &str,
         kind: &str,
         help: &str,
         value: &dyn Fn(&alarm_center_store::SinkCursor) -> u64| {
            let _ = writeln!(
                out,
                "# HELP alarm_center_sink_{name} {help}\n# TYPE alarm_center_sink_{name} {kind}"
            );
            for c in &cursors {
                let _ = writeln!(
                    out,
                    "alarm_center_sink_{name}{{sink=\"{}\"}} {}",
                    c.sink.replace('"', "'"),
                    value(c)
                );
            }
        };
    sink_metric(
        "delivered_total",
        "counter",
        "Events the destination accepted.",
        &|c| c.delivered,
    );
    sink_metric(
        "dead_letters_total",
        "counter",
        "Events given up on.",
        &|c| c.dead_letters,
    );
    sink_metric(
        "failures_total",
        "counter",
        "Destination outages seen.",
        &|c| c.failures,
    );
    sink_metric(
        "lag_events",
        "gauge",
        "Events in the log after the sink's cursor.",
        &|c| (last - c.position).max(0) as u64,
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
