//! The HTTP API: devices, events, raw frames, a decode endpoint, sink status, `/metrics`, `/healthz`,
//! `/readyz`, the live stream and the web UI. JSON everywhere; bad requests get `{"error": "…"}` with
//! the right status. Bound to 127.0.0.1:8080 by default; any other address needs `api.token` (Bearer
//! authentication).
//!
//! Hostile clients are bounded ([`serve`]): a limit on open connections, a timeout on request heads
//! and on whole requests, a limit on live streams and on concurrent decodes, answers of bounded size.
//! Hostile web pages are refused ([`security`]): a `Host` check against DNS rebinding when no token is
//! set, an `Origin` check and non-simple content types against cross-site requests, and security
//! headers on every answer.

mod decode;
mod frames;
mod instant;
pub mod metrics;
pub mod openapi;
mod params;
mod probes;
mod read;
mod security;
mod serve;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::Db;
use axum::extract::FromRef;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use tokio_util::sync::CancellationToken;

pub use alarm_center_sinks::Committed;
pub use instant::parse_instant;
pub use serve::serve;

/// The live parts of the server the API reads; everything else it reads from the store. Narrow on
/// purpose: the API knows nothing of connections, devices or the writer beyond this.
pub trait Live: Send + Sync + 'static {
    /// Devices online now.
    fn online_count(&self) -> usize;
    /// Frames and bytes received so far on open connection `id`.
    fn connection_counters(&self, id: i64) -> Option<(u64, u64)>;
    /// When `device` last sent a frame (unix ms), as the server knows it now: the store's copy is
    /// written every `supervision.last-seen-flush` (D72). `None` when the server has not heard it.
    fn last_seen_ms(&self, device: &str) -> Option<i64>;
    /// Why committing to the store fails, while it does (`/readyz` answers 503).
    fn store_failure(&self) -> Option<String>;
    /// Registers the server's own metric families in `registry` (prefixed `alarm_center_`), once per
    /// API server; they are encoded at every scrape of `/metrics`, so what is registered must read the
    /// live values then (a [`Collector`](prometheus_client::collector::Collector), see [`metrics`]).
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry);
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

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
    /// Without a token, the `Host` header must name this server: the listen address, `localhost`,
    /// `127.0.0.1`, `[::1]` (any port) or one of these names (`name` for any port, `name:port` for
    /// that port only). Other names are refused with 421 (a web page reaching the API through DNS
    /// rebinding sends its own name).
    pub allowed_hosts: Vec<String>,
    /// Most API connections open at once; further connections are closed at once (and counted in
    /// `alarm_center_api_connections_refused_total`).
    pub max_connections: usize,
    /// Most live event streams (`/api/stream`) at once; further clients get 503.
    pub max_stream_clients: usize,
    /// A request head must arrive whole within this long after a connection opens or after the
    /// previous answer (so also how long an idle keep-alive connection stays open).
    #[serde(deserialize_with = "alarm_center_sinks::config::duration")]
    pub header_timeout: Duration,
    /// A request must be read and answered within this long, else 408 (the live stream's answer starts
    /// at once and then lasts).
    #[serde(deserialize_with = "alarm_center_sinks::config::duration")]
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            allowed_hosts: Vec::new(),
            max_connections: 256,
            max_stream_clients: 64,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
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
        if self.max_connections == 0 {
            problems.push("api.max-connections must be at least 1".into());
        }
        if self.max_stream_clients == 0 {
            problems.push("api.max-stream-clients must be at least 1".into());
        }
        for (key, value) in [
            ("header-timeout", self.header_timeout),
            ("request-timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                problems.push(format!("api.{key} must be longer than 0"));
            }
        }
        for host in &self.allowed_hosts {
            if security::split_authority(host).is_none() || host.contains(['/', '@']) {
                problems.push(format!(
                    "api.allowed-hosts: {host:?} is not a host name with an optional :port (no scheme, no path)"
                ));
            }
        }
        problems
    }
}

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// The data directory (the store the API reads).
    pub data_dir: PathBuf,
    /// `[api]`.
    pub config: Arc<ApiConfig>,
    /// The live parts of the server.
    pub live: Arc<dyn Live>,
    /// `server.max-frame`: the decode endpoint's largest frame, bytes.
    pub max_frame: usize,
    /// Committed events, for the live stream.
    pub committed: tokio::sync::broadcast::Sender<Committed>,
    /// Cancelled when the server stops: live streams end.
    pub shutdown: CancellationToken,
}

/// Most decodes running at once (each on a blocking thread); more get 503.
const DECODE_WORKERS: usize = 2;
/// Most decode requests reading their body or decoding at once; more get 503.
const DECODE_REQUESTS: usize = 8;

/// Limits and counters of one API server, shared by its accept loop and its handlers.
pub(crate) struct Limits {
    /// One permit per open connection.
    connections: Arc<Semaphore>,
    max_connections: usize,
    /// One permit per live stream.
    streams: Arc<Semaphore>,
    max_streams: usize,
    /// One permit per decode request (body and decoding).
    decode_requests: Arc<Semaphore>,
    /// One permit per running decode.
    decode_workers: Arc<Semaphore>,
    /// Connections closed at once: over `api.max-connections`.
    connections_refused: AtomicU64,
    /// Live streams refused: over `api.max-stream-clients`.
    streams_refused: AtomicU64,
    /// Decode requests refused because the decoder was busy.
    decode_busy: AtomicU64,
    /// Decode answers cut short at a limit.
    decode_truncated: AtomicU64,
}

impl Limits {
    fn new(config: &ApiConfig) -> Limits {
        let max_connections = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        let max_streams = config.max_stream_clients.clamp(1, Semaphore::MAX_PERMITS);
        Limits {
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            decode_requests: Arc::new(Semaphore::new(DECODE_REQUESTS)),
            decode_workers: Arc::new(Semaphore::new(DECODE_WORKERS)),
            connections_refused: AtomicU64::new(0),
            streams_refused: AtomicU64::new(0),
            decode_busy: AtomicU64::new(0),
            decode_truncated: AtomicU64::new(0),
        }
    }
}

/// The router's state: the handlers' state and the server's limits.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) state: ApiState,
    pub(crate) limits: Arc<Limits>,
    /// The families `/metrics` encodes (the sinks' are added at each scrape).
    pub(crate) metrics: Arc<prometheus_client::registry::Registry>,
}

impl FromRef<Api> for ApiState {
    fn from_ref(api: &Api) -> ApiState {
        api.state.clone()
    }
}

/// An error answer, `{"error": "…"}` with a status that says which kind. Every error the server
/// itself makes (a bad parameter, a missing token, a refused origin or host, no such frame or device,
/// a limit reached, a store that does not answer) has this body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    /// What is wrong, in words.
    error: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A 503 for a limit reached: `{"error": "…"}` and `Retry-After: 1`.
pub(crate) fn busy(message: impl Into<String>) -> Response {
    let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message);
    ([(header::RETRY_AFTER, "1")], error).into_response()
}

/// Runs a store query on a read-only connection off the async threads.
pub(crate) async fn query<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&Db) -> alarm_center_store::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let dir = state.data_dir.clone();
    tokio::task::spawn_blocking(move || Db::open_read_only(&dir).and_then(|db| f(&db)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")))
}

/// The routes, the security checks and headers, and the request timeout.
fn app(api: Api) -> Router {
    let config = &api.state.config;
    let protected = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/api/devices", get(read::devices))
        .route("/api/devices/{id}/connections", get(read::connections))
        .route("/api/events", get(read::events))
        .route("/api/frames", get(frames::frames))
        .route("/api/frames/{id}", get(frames::frame))
        .route("/api/frames/{id}/raw", get(frames::frame_raw))
        .route("/api/decode", post(decode::decode))
        .route("/api/sinks", get(read::sinks))
        .route("/api/stream", get(stream::stream))
        .route_layer(middleware::from_fn_with_state(api.clone(), security::auth));
    let routes = Router::new()
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
        .route("/api/openapi.yaml", get(openapi::yaml_document))
        .route("/api/openapi.json", get(openapi::json_document))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn(security::check_origin))
        .layer(middleware::from_fn_with_state(
            api.clone(),
            security::check_host,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ));
    security::with_headers(routes).with_state(api)
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
