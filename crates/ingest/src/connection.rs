//! One task per device connection: bytes in, frames through the protocol crate, records to the writer.
//! This file is the transport (socket ↔ frames, timeouts, HTTP answers, close); what a frame means is
//! decided in `process.rs` (decode, HTTP verdict, records) and `attribution.rs` (which device, and the
//! device core's effects).

mod attribution;
mod keepalive;
mod process;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use alarm_center_proto::{Decoder, DecoderConfig, Frame, Session};
use alarm_center_store::{ConnectionClose, ConnectionOpen};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::arrival::Ticket;
use crate::close_reason::CloseReason;
use crate::http_mode::{self, Answer};
use crate::registry::SharedDevice;
use crate::writer::Record;
use crate::Shared;

thread_local! {
    /// Read buffer shared by the connections running on a connection thread: an idle connection holds none.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// What one read produced.
enum Read {
    /// The frames completed by the bytes read, and how many bytes were read.
    Frames(Vec<Frame>, usize),
    Eof,
    NotReady,
    Failed(std::io::Error),
}

/// A live connection.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    id: i64,
    peer: SocketAddr,
    /// `peer` as text, for the connection's row, its device's row and its log lines: written once
    /// (`peer_text` is cheaper than `Display` for IPv4, and cheaper still not done again).
    peer_text: String,
    cancel: CancellationToken,
    opened: Instant,
    decoder: Decoder,
    /// Decoding state before the connection is attached to a device.
    private: Session,
    device: Option<Arc<SharedDevice>>,
    /// True when the attached identity came from what the frames carry (not only the address).
    strong: bool,
    /// Frames and bytes received, readable by the API while the connection is open.
    live: crate::live::Entry,
    /// Set when the connection identified a device that is not configured while unknown devices are refused.
    refused: bool,
    /// Why the connection closes: a frame would have created a device past a new-device limit.
    limited: Option<CloseReason>,
    /// An HTTP authentication failure was logged for this connection.
    auth_logged: bool,
    /// Stream offset of the HTTP request last sent `100 Continue`.
    continued: Option<u64>,
    /// The attached device's offline count when this connection's own session was last valid.
    generation: u64,
    /// This connection's place among the connections from its address until its first frame is
    /// handed to the writer: one device's frames keep their arrival order across connections.
    arrival: Option<Ticket>,
    /// Which of its keepAlives are archived.
    keepalives: keepalive::KeepaliveSampler,
}

impl Connection {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: i64,
        peer: SocketAddr,
        arrival: Option<Ticket>,
    ) -> Connection {
        let decoder = Decoder::new(DecoderConfig {
            max_frame: shared.config.server.max_frame,
        });
        let cancel = shared.shutdown.child_token();
        let live = shared.live.open(id);
        Connection {
            shared,
            id,
            peer,
            peer_text: alarm_center_proto::addr_text::peer_text(peer),
            cancel,
            opened: Instant::now(),
            decoder,
            private: Session::new(),
            device: None,
            strong: false,
            live,
            refused: false,
            limited: None,
            auth_logged: false,
            continued: None,
            generation: 0,
            arrival,
            keepalives: keepalive::KeepaliveSampler::default(),
        }
    }

    /// Serves the connection until it closes; returns why it closed.
    pub(crate) async fn run(mut self, mut stream: TcpStream) {
        let _ = self
            .shared
            .tx
            .send(Record::Opened(ConnectionOpen {
                id: self.id,
                peer: self.peer_text.clone(),
                opened_at: crate::time::now_ms(),
            }))
            .await;
        tracing::info!(conn = self.id, peer = %self.peer_text, "connection opened");
        let reason = self.serve(&mut stream).await;
        for frame in self.decoder.finish() {
            // The stream ended inside these: nobody is left to answer.
            let _ = self.process(frame, &mut stream).await;
        }
        self.close(&reason).await;
    }

    async fn serve(&mut self, stream: &mut TcpStream) -> CloseReason {
        let config = &self.shared.config.server;
        let (idle, frame_timeout) = (config.idle_timeout, config.frame_timeout);
        let mut last_byte = Instant::now();
        let mut partial_since: Option<Instant> = None;
        // One timer for the connection's life, moved only when a deadline comes nearer (and, when it
        // fires early, to the deadline that has moved away since): a frame costs no timer operation.
        let timer = tokio::time::sleep_until(last_byte + idle);
        tokio::pin!(timer);
        // Registered once: a fresh `cancelled()` per read would register and deregister each time.
        let shutdown = self.cancel.clone().cancelled_owned();
        tokio::pin!(shutdown);
        loop {
            let idle_deadline = last_byte + idle;
            let mut deadline =
                partial_since.map_or(idle_deadline, |p| idle_deadline.min(p + frame_timeout));
            if !self.shared.registry.allow_unknown() && self.device.is_none() {
                // Only configured devices: identify within the frame timeout, whatever is sent.
                deadline = deadline.min(self.opened + frame_timeout);
            }
            if deadline < timer.deadline() {
                timer.as_mut().reset(deadline);
            }
            let ready = tokio::select! {
                biased;
                () = &mut shutdown => {
                    if let Some(reason) = self.drain(stream).await {
                        return reason;
                    }
                    return CloseReason::Shutdown;
                }
                ready = stream.readable() => Ok(ready),
                () = &mut timer => {
                    if Instant::now() < deadline {
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                    Err(())
                }
            };
            match ready {
                Err(()) if self.unknown_refused() => {
                    return CloseReason::UnknownDevice { silent: true };
                }
                Err(()) if partial_since.is_some_and(|p| p + frame_timeout <= Instant::now()) => {
                    if self.decoder.in_http_request() {
                        let _ = stream.write_all(&http_mode::timeout_answer()).await;
                    }
                    return CloseReason::SlowSender {
                        timeout: frame_timeout,
                        buffered: self.decoder.buffered(),
                    };
                }
                Err(()) => return CloseReason::Idle(idle),
                Ok(Err(e)) => return CloseReason::Socket(e.to_string()),
                Ok(Ok(())) => {}
            }
            match self.read_now(stream) {
                Read::Eof => return CloseReason::ByDevice,
                Read::NotReady => continue,
                Read::Failed(e) => return CloseReason::Socket(e.to_string()),
                Read::Frames(frames, _) => {
                    last_byte = Instant::now();
                    let completed = !frames.is_empty();
                    let mut answers = Vec::new();
                    for frame in frames {
                        answers.extend(self.process(frame, stream).await);
                    }
                    let closing = self.answer(answers, stream).await;
                    if let Some(reason) = self.limited.clone().or(closing) {
                        return reason;
                    }
                    if let Err(e) = self.continue_if_expected(stream).await {
                        return CloseReason::Socket(e.to_string());
                    }
                    if self.decoder.buffered() == 0 {
                        partial_since = None;
                        self.decoder.release_idle_buffer();
                    } else if completed || partial_since.is_none() {
                        partial_since = Some(Instant::now());
                    }
                }
            }
            if self.unknown_refused() {
                return CloseReason::UnknownDevice { silent: false };
            }
        }
    }

    /// Hands a record to the store writer, waiting for room when its queue is full. Such a wait is a
    /// stall: while it lasts nobody reads the sockets, and supervision must not take the silence for
    /// devices going quiet. A closed queue means the server is stopping after a fatal store error.
    async fn queue(&self, record: Record) {
        match self.shared.tx.try_send(record) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(record)) => {
                self.shared.registry.note_stall();
                let _ = self.shared.tx.send(record).await;
                self.shared.registry.note_stall();
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Sends the answers owed to HTTP requests, in order, each after its commit. Returns why the
    /// connection must close, if it must.
    async fn answer(
        &mut self,
        answers: Vec<Answer>,
        stream: &mut TcpStream,
    ) -> Option<CloseReason> {
        let mut open = true;
        for answer in answers {
            let status = answer.status;
            match answer.send(stream).await {
                Ok(true) => {}
                Ok(false) => {
                    open = false;
                    tracing::debug!(conn = self.id, status, "HTTP answer closes the connection");
                }
                Err(e) => return Some(CloseReason::Socket(format!("while answering HTTP: {e}"))),
            }
            if !open {
                break;
            }
        }
        (!open).then_some(CloseReason::HttpAnswered)
    }

    /// Answers `Expect: 100-continue` once the head of a request is in and its body is not.
    async fn continue_if_expected(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        let Some((offset, head)) = self.decoder.pending_http_head() else {
            return Ok(());
        };
        if self.continued == Some(offset) || !http_mode::expects_continue(head) {
            return Ok(());
        }
        self.continued = Some(offset);
        stream.write_all(http_mode::CONTINUE).await
    }

    /// Reads what the socket holds now (without waiting) and decodes it.
    ///
    /// Through tokio's `poll_read`, not `try_read`: `poll_read` takes a read shorter than the buffer as
    /// the socket emptied and clears its readiness (unless an event came in meanwhile). With
    /// `try_read` the readiness stayed, and the loop paid one more `recvfrom` only to get `EAGAIN`: two
    /// system calls for every keepAlive, and about one read in two of a busy stream
    /// (docs/benchmarks.md §15). Never waits: with a no-op waker, "not ready" comes back as `Pending`,
    /// and the loop waits in `readable()`.
    fn read_now(&mut self, stream: &mut TcpStream) -> Read {
        let decoder = &mut self.decoder;
        let read = READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let mut filled = ReadBuf::new(&mut buf);
            let mut cx = Context::from_waker(Waker::noop());
            match Pin::new(stream).poll_read(&mut cx, &mut filled) {
                Poll::Ready(Ok(())) if filled.filled().is_empty() => Read::Eof,
                Poll::Ready(Ok(())) => {
                    let bytes = filled.filled();
                    Read::Frames(decoder.feed(bytes).collect(), bytes.len())
                }
                Poll::Ready(Err(e)) => Read::Failed(e),
                Poll::Pending => Read::NotReady,
            }
        });
        if let Read::Frames(_, n) = &read {
            self.live.counters.add_bytes(*n as u64);
            self.shared
                .stats
                .bytes_received
                .fetch_add(*n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        read
    }

    /// At shutdown: decodes what the device already sent, so that nothing received is lost. A read that
    /// finds nothing is not the end: tokio refuses reads to a task that has used its scheduling budget
    /// until it yields (the drain then yields and reads on), the runtime learns of bytes that arrived
    /// during a read only when it next polls its epoll, and the device's next bytes may be on their
    /// way (its send buffer, the network). So the drain ends once the socket has stayed empty for
    /// `DRAIN_QUIET`, the waits for more adding up to `MAX_DRAIN_WAIT` at most; and whatever the
    /// device does, after `MAX_DRAIN_BYTES` or `MAX_DRAIN_TIME` (storing what was read may wait for a
    /// failing store meanwhile), so that shutdown always ends.
    async fn drain(&mut self, stream: &mut TcpStream) -> Option<CloseReason> {
        use std::time::Duration;
        /// Silence that ends the drain.
        const DRAIN_QUIET: Duration = Duration::from_millis(100);
        /// Bounds the drain of one connection (a device that keeps sending).
        const MAX_DRAIN_WAIT: Duration = Duration::from_secs(2);
        const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;
        const MAX_DRAIN_TIME: Duration = Duration::from_secs(20);
        let give_up = Instant::now() + MAX_DRAIN_TIME;
        let mut waited = Duration::ZERO;
        let mut drained = 0;
        while drained < MAX_DRAIN_BYTES && Instant::now() < give_up {
            let (frames, n) = match self.read_now(stream) {
                Read::Frames(frames, n) => (frames, n),
                Read::NotReady if !tokio::task::coop::has_budget_remaining() => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Read::NotReady if waited < MAX_DRAIN_WAIT => {
                    let started = Instant::now();
                    let quiet = DRAIN_QUIET.min(MAX_DRAIN_WAIT - waited);
                    // Budget-aware (`readable()` is not): it yields rather than spin on a refusal.
                    let ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx));
                    let more = tokio::time::timeout(quiet, ready).await;
                    waited += started.elapsed();
                    match more {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
                Read::NotReady | Read::Eof | Read::Failed(_) => break,
            };
            drained += n as u64;
            let mut answers = Vec::new();
            for frame in frames {
                answers.extend(self.process(frame, stream).await);
            }
            if let Some(reason) = self.answer(answers, stream).await {
                return Some(reason);
            }
            // The same verdicts as while serving: a refused device is not drained further.
            if let Some(reason) = self.limited.clone() {
                return Some(reason);
            }
            if self.unknown_refused() {
                return Some(CloseReason::UnknownDevice { silent: false });
            }
        }
        None
    }

    /// With unknown devices refused: the connection must identify as a configured device within the
    /// frame timeout.
    fn unknown_refused(&self) -> bool {
        self.refused
            || (!self.shared.registry.allow_unknown()
                && self.device.is_none()
                && self.opened.elapsed() >= self.shared.config.server.frame_timeout)
    }

    /// Logs, counts and records why the connection closed (the one place that does).
    async fn close(self, reason: &CloseReason) {
        let device = self.device.as_ref().map(|d| d.id.clone());
        if let Some(d) = &self.device {
            d.lock().detach(self.id);
        }
        reason.count(&self.shared.stats);
        let (frames, bytes) = self.live.counters.get();
        tracing::info!(conn = self.id, peer = %self.peer_text, device = device.as_deref().unwrap_or("-"), frames, bytes, reason = %reason, kind = reason.label(), "connection closed");
        let _ = self
            .shared
            .tx
            .send(Record::Closed(ConnectionClose {
                id: self.id,
                device,
                closed_at: crate::time::now_ms(),
                reason: reason.to_string(),
                frames,
                bytes,
            }))
            .await;
    }
}
