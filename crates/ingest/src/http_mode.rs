//! HTTP-mode devices on the device port: what each request gets as an answer, and when.
//!
//! Every request is answered, in order: `200` once its frame and events are committed (so a device
//! retries what we did not keep), `400` for a malformed request, `413` past `server.max-frame`, `401`
//! with challenges when credentials are configured and not presented, `503` when the store could not
//! commit it. Malformed and oversized requests close the connection (where the next request starts is
//! unknown); the others follow the request's keep-alive.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use alarm_center_proto::http::{self, Header as HttpHeader};
use alarm_center_proto::{Decoded, Frame, FrameError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::http_auth::Authenticator;
use crate::registry::Registry;

/// Distinct unexpected paths logged at most.
const MAX_PATHS_LOGGED: usize = 256;

/// Server-wide state of HTTP mode.
#[derive(Debug)]
pub(crate) struct HttpMode {
    pub(crate) auth: Authenticator,
    /// Paths other than `/cgi-bin/NotifyEvent` already logged.
    paths_logged: Mutex<HashSet<String>>,
}

impl HttpMode {
    pub(crate) fn new() -> HttpMode {
        HttpMode {
            auth: Authenticator::new(),
            paths_logged: Mutex::new(HashSet::new()),
        }
    }

    /// Logs a request to an unexpected path, once per path (and for the first 256 paths).
    fn note_path(&self, path: &str, peer: SocketAddr, conn: i64) {
        if path == http::NOTIFY_PATH {
            return;
        }
        let mut logged = self.paths_logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() < MAX_PATHS_LOGGED && logged.insert(path.to_owned()) {
            tracing::info!(conn, peer = %peer, path = ?path, "HTTP request to a path other than /cgi-bin/NotifyEvent: decoded all the same (logged once per path)");
        }
    }
}

/// The answer owed to one request.
#[derive(Debug)]
pub(crate) struct Answer {
    /// Wait for this commit notification first; `200` becomes `503` when it never comes.
    pub(crate) committed: Option<oneshot::Receiver<()>>,
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    pub(crate) keep_alive: bool,
    /// A `HEAD` request: no body in the answer.
    pub(crate) head: bool,
}

impl Answer {
    fn new(status: u16, body: impl Into<String>, keep_alive: bool, head: bool) -> Answer {
        Answer {
            committed: None,
            status,
            headers: Vec::new(),
            body: body.into(),
            keep_alive,
            head,
        }
    }

    /// Waits for the commit if needed, then writes the answer. Returns whether the connection stays open.
    pub(crate) async fn send(mut self, stream: &mut TcpStream) -> std::io::Result<bool> {
        if let Some(committed) = self.committed.take() {
            if committed.await.is_err() {
                self.status = 503;
                self.body = "not stored: the store is failing; send it again\n".into();
                self.keep_alive = false;
            }
        }
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let bytes = http::response(
            self.status,
            &headers,
            &self.body,
            self.keep_alive,
            self.head,
        );
        stream.write_all(&bytes).await?;
        Ok(self.keep_alive)
    }
}

/// What to do with an HTTP request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Attribute it and keep its events; answer `200` after the commit.
    Accept(Answer),
    /// Keep the frame (no device, no events) and answer this.
    Refuse(Answer),
}

/// Judges one HTTP frame: framing errors, credentials, unexpected paths. `auth_logged` is the
/// connection's flag so that a failing device is logged once per connection.
pub(crate) fn judge(
    mode: &HttpMode,
    registry: &Registry,
    frame: &Frame,
    decoded: &mut Decoded,
    peer: SocketAddr,
    conn: i64,
    auth_logged: &mut bool,
) -> Verdict {
    let header = match &decoded.header {
        alarm_center_proto::session::Header::Http(h) => Some(h),
        _ => None,
    };
    let keep_alive = header.is_some_and(HttpHeader::keep_alive);
    let head = header.is_some_and(|h| h.method == "HEAD");
    match &frame.error {
        Some(FrameError::Oversized { .. } | FrameError::TooLong { .. }) => {
            let max = frame.len();
            return Verdict::Refuse(Answer::new(
                413,
                format!("request larger than server.max-frame ({max} bytes)\n"),
                false,
                head,
            ));
        }
        Some(error @ FrameError::Malformed(_)) => {
            return Verdict::Refuse(Answer::new(400, format!("{error}\n"), false, head));
        }
        Some(_) => return Verdict::Refuse(Answer::new(400, "incomplete request\n", false, head)),
        None => {}
    }
    let Some(header) = header else {
        let reason = decoded.error.as_deref().unwrap_or("invalid request head");
        return Verdict::Refuse(Answer::new(400, format!("{reason}\n"), false, head));
    };
    let now_s = u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0);
    // Identity is resolved here only when some credentials exist; `attribute` resolves it anyway.
    let denied = registry
        .requires_http_credentials()
        .then(|| registry.resolve(&decoded.device, peer.ip(), true))
        .and_then(|identity| {
            let expected = registry.http_credentials(&identity.id)?;
            let authorization = header.get("authorization");
            let denied = mode
                .auth
                .check(expected, authorization, &header.method, &header.path, now_s)
                .err()?;
            Some((identity.id, denied))
        });
    if let Some((device, denied)) = denied {
        if !*auth_logged {
            *auth_logged = true;
            tracing::warn!(conn, peer = %peer, device = %device, reason = ?denied.reason, "HTTP request refused: authentication failed (logged once per connection)");
        }
        decoded.error = Some(format!("HTTP 401: {}", denied.reason));
        decoded.events.clear();
        let mut answer = Answer::new(401, "authentication required\n", keep_alive, head);
        answer.headers = mode
            .auth
            .challenges(now_s, denied.stale)
            .into_iter()
            .map(|c| ("WWW-Authenticate", c))
            .collect();
        return Verdict::Refuse(answer);
    }
    mode.note_path(&header.path, peer, conn);
    let body = match &decoded.error {
        Some(problem) => format!("OK (kept: {problem})\n"),
        None => "OK\n".to_owned(),
    };
    Verdict::Accept(Answer::new(200, body, keep_alive, head))
}

/// The answer to a request from a device that is not configured while unknown devices are refused.
pub(crate) fn refused_unknown(head: bool) -> Answer {
    Answer::new(
        403,
        "device not configured (server.allow-unknown-devices = false)\n",
        false,
        head,
    )
}

/// The answer to a request that would have created a device past a new-device limit: try again in
/// a minute.
pub(crate) fn new_device_limited(head: bool) -> Answer {
    let mut answer = Answer::new(
        503,
        "new-device limit reached; try again later\n",
        false,
        head,
    );
    answer.headers.push(("Retry-After", "60".to_owned()));
    answer
}

/// The `100 Continue` interim answer.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// True when a request head asks for `100 Continue`.
pub(crate) fn expects_continue(head: &[u8]) -> bool {
    HttpHeader::parse(head).is_some_and(|h| h.expects_continue())
}

/// The answer to a request whose head or body did not arrive in time.
pub(crate) fn timeout_answer() -> Vec<u8> {
    http::response(408, &[], "request not received in time\n", false, false)
}
