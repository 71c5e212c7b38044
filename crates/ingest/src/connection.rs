//! One task per device connection: bytes in, frames through the protocol crate, records to the writer.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use alarm_center_proto::{encode, Decoded, Decoder, DecoderConfig, Frame, Kind, Protocol, Session};
use alarm_center_store::{
    ConnectionClose, ConnectionIdentified, ConnectionOpen, DeviceUpdate, NewEvent, NewFrame,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::arrival::Ticket;
use crate::close_reason::CloseReason;
use crate::http_mode::{self, Answer, Verdict};
use crate::registry::SharedDevice;
use crate::stats::Stats;
use crate::writer::{FrameRecord as WriteFrame, Record};
use crate::Shared;
use alarm_center_devices::{Heard, Now, Refusal};

thread_local! {
    /// Read buffer shared by the connections running on a worker thread: an idle connection holds none.
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
        }
    }

    /// Serves the connection until it closes; returns why it closed.
    pub(crate) async fn run(mut self, mut stream: TcpStream) {
        let _ = self
            .shared
            .tx
            .send(Record::Opened(ConnectionOpen {
                id: self.id,
                peer: self.peer.to_string(),
                opened_at: crate::time::now_ms(),
            }))
            .await;
        tracing::info!(conn = self.id, peer = %self.peer, "connection opened");
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
        loop {
            let idle_deadline = last_byte + idle;
            let mut deadline =
                partial_since.map_or(idle_deadline, |p| idle_deadline.min(p + frame_timeout));
            if !self.shared.registry.allow_unknown() && self.device.is_none() {
                // Only configured devices: identify within the frame timeout, whatever is sent.
                deadline = deadline.min(self.opened + frame_timeout);
            }
            let ready = tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    if let Some(reason) = self.drain(stream).await {
                        return reason;
                    }
                    return CloseReason::Shutdown;
                }
                ready = tokio::time::timeout_at(deadline, stream.readable()) => ready,
            };
            match ready {
                Err(_) if self.unknown_refused() => {
                    return CloseReason::UnknownDevice { silent: true };
                }
                Err(_) if partial_since.is_some_and(|p| p + frame_timeout <= Instant::now()) => {
                    if self.decoder.in_http_request() {
                        let _ = stream.write_all(&http_mode::timeout_answer()).await;
                    }
                    return CloseReason::SlowSender {
                        timeout: frame_timeout,
                        buffered: self.decoder.buffered(),
                    };
                }
                Err(_) => return CloseReason::Idle(idle),
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
    fn read_now(&mut self, stream: &TcpStream) -> Read {
        let decoder = &mut self.decoder;
        let read = READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match stream.try_read(&mut buf) {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Frames(decoder.feed(&buf[..n]).collect(), n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Read::NotReady,
                Err(e) => Read::Failed(e),
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

    /// At shutdown: decodes what the device already sent (bytes waiting in the socket), without waiting
    /// for more, so that nothing received is lost.
    async fn drain(&mut self, stream: &mut TcpStream) -> Option<CloseReason> {
        /// Bounds the drain of one connection so that shutdown always ends.
        const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;
        let mut drained = 0;
        while drained < MAX_DRAIN_BYTES {
            let Read::Frames(frames, n) = self.read_now(stream) else {
                break;
            };
            drained += n as u64;
            let mut answers = Vec::new();
            for frame in frames {
                answers.extend(self.process(frame, stream).await);
            }
            if let Some(reason) = self.answer(answers, stream).await {
                return Some(reason);
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

    /// Decodes, attributes and hands one frame to the writer. Returns the answer an HTTP request is owed.
    async fn process(&mut self, frame: Frame, stream: &mut TcpStream) -> Option<Answer> {
        if let Some(arrival) = &self.arrival {
            // Earlier connections from this address first (each waits its window at most).
            arrival.wait_turn().await;
        }
        // One device's frames reach the store in the order their meaning was decided, whichever of
        // its connections they came on (decoding, online/offline and the queueing happen in turn).
        let mut order = match &self.device {
            Some(device) => Some((device.clone(), device.order.clone().lock_owned().await)),
            None => None,
        };
        let stats = self.shared.stats.clone();
        Stats::inc(&stats.frames);
        self.live.counters.add_frame();
        if frame.protocol == Protocol::Junk {
            Stats::inc(&stats.frames_junk);
        }
        let received = Instant::now();
        let received_ms = crate::time::now_ms();
        let mut decoded = match &self.device {
            Some(device) if self.strong => device.lock().decode(&frame),
            Some(device) => {
                // Known by address only: this connection's own protocol state, started afresh when
                // the device went offline (its alarms were stopped then).
                let generation = device.lock().generation();
                if generation != self.generation {
                    self.generation = generation;
                    self.private = Session::new();
                }
                self.private.decode(&frame)
            }
            None => self.private.decode(&frame),
        };
        if decoded.error.is_some() {
            Stats::inc(&stats.frames_error);
            if frame.protocol != Protocol::Junk {
                tracing::warn!(conn = self.id, peer = %self.peer, offset = frame.offset, protocol = frame.protocol.as_str(), error = ?decoded.error.as_deref().unwrap_or(""), "undecodable frame kept");
            }
        }
        if frame.protocol == Protocol::Junk {
            tracing::warn!(conn = self.id, peer = %self.peer, offset = frame.offset, bytes = frame.len(), head = %hex_head(&frame.bytes), "unrecognized bytes kept");
        }
        let mut devices = Vec::new();
        let mut events = Vec::new();
        let verdict = (frame.protocol == Protocol::Http).then(|| {
            http_mode::judge(
                &self.shared.http,
                &self.shared.registry,
                &frame,
                &mut decoded,
                self.peer,
                self.id,
                &mut self.auth_logged,
            )
        });
        // A frame that attaches no device is kept without device or events.
        let attach = self.attaches(verdict.as_ref(), &decoded);
        let identified = attach
            .then(|| self.attribute(&frame, &mut decoded, received_ms, &mut devices, &mut events))
            .flatten();
        // Refused by a new-device limit just now: the frame is kept without device or events.
        let attach = attach && self.limited.is_none();
        if let Some(device) = self.device.clone().filter(|_| attach) {
            if !order
                .as_ref()
                .is_some_and(|(held, _)| Arc::ptr_eq(held, &device))
            {
                drop(order.take());
                order = Some((device.clone(), device.order.clone().lock_owned().await));
            }
        }
        if let Some(identified) = identified {
            // Records the connection's device in its history row (waits for room like every record).
            self.queue(Record::Identified(identified)).await;
        }
        if let Some(device) = self.device.clone().filter(|_| attach) {
            self.on_device_frame(
                &device,
                frame.protocol,
                &decoded,
                received_ms,
                &mut devices,
                &mut events,
            );
        }
        stats.events_received.fetch_add(
            decoded.events.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let cause = frame
            .error
            .as_ref()
            .map(|e| e.cause())
            .or(decoded.error.as_ref().map(|_| "invalid_body"));
        stats.count_frame(
            frame.protocol.as_str(),
            decoded.kind.as_str(),
            cause,
            decoded.events.iter().map(|e| e.code.as_ref()),
        );
        let archive =
            decoded.kind != Kind::Keepalive || self.shared.config.store.archive_keepalives;
        let mut new_frame = archive.then(|| self.new_frame(&frame, &decoded, received_ms));
        if let (Some(new_frame), false) = (&mut new_frame, attach) {
            new_frame.device = None;
        }
        let verdict = match verdict {
            // Unknown devices refused (server.allow-unknown-devices = false): nothing was kept.
            Some(Verdict::Accept(answer)) if self.refused => {
                Some(Verdict::Refuse(http_mode::refused_unknown(answer.head)))
            }
            Some(Verdict::Accept(answer)) if self.limited.is_some() => {
                Some(Verdict::Refuse(http_mode::new_device_limited(answer.head)))
            }
            verdict => verdict,
        };
        let (answer, committed) = match verdict {
            Some(Verdict::Accept(mut answer)) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                answer.committed = Some(rx);
                (Some(answer), Some(tx))
            }
            Some(Verdict::Refuse(answer)) => (Some(answer), None),
            None => (None, None),
        };
        let record = WriteFrame {
            frame: new_frame,
            devices,
            events,
            received,
            committed,
        };
        self.queue(Record::Frame(Box::new(record))).await;
        drop(order);
        // The first frame is handed over: later connections from this address may go.
        self.arrival = None;
        if self.shared.config.server.reply_to_requests {
            self.reply(&frame, &decoded, stream).await;
        }
        answer
    }

    /// Whether a frame may attach the connection to a device: not a refused HTTP request, nor an HTTP
    /// request that carries neither events nor identity (a scanner's `GET /`), nor anything after a
    /// frame refused by a new-device limit (the connection is closing).
    fn attaches(&self, verdict: Option<&Verdict>, decoded: &Decoded) -> bool {
        if self.limited.is_some() {
            return false;
        }
        match verdict {
            Some(Verdict::Refuse(_)) => false,
            Some(Verdict::Accept(_)) => {
                self.device.is_some()
                    || !decoded.events.is_empty()
                    || decoded.kind == Kind::Keepalive
                    || !decoded.device.is_empty()
            }
            None => true,
        }
    }

    /// Attaches the connection to the device the frame identifies (first frame, or a stronger identity).
    /// Returns the connection-history update to write when the device changed.
    fn attribute(
        &mut self,
        frame: &Frame,
        decoded: &mut Decoded,
        received_ms: i64,
        devices: &mut Vec<DeviceUpdate>,
        events: &mut Vec<NewEvent>,
    ) -> Option<ConnectionIdentified> {
        let registry = &self.shared.registry;
        let identity = registry.resolve(
            &decoded.device,
            self.peer.ip(),
            frame.protocol == Protocol::Http,
        );
        let switch = match &self.device {
            // Garbage is no evidence of a device (port scanners, HTTP probes): it attaches nothing.
            None => frame.protocol != Protocol::Junk,
            Some(current) => identity.strong && !self.strong && identity.id != current.id,
        };
        if !switch {
            return None;
        }
        if !identity.configured && !registry.allow_unknown() {
            // A frame naming a device that is not configured: refuse at once. Frames without identity
            // get until the frame timeout to be followed by one that identifies a configured device.
            if identity.strong && self.device.is_none() {
                tracing::warn!(conn = self.id, peer = %self.peer, device = %identity.id, "unknown device refused");
                self.refused = true;
            }
            return None;
        }
        let (device, created) = match registry.admit(&identity.id, self.peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                self.limit_new_device(&identity.id, refusal);
                return None;
            }
        };
        let now = Now {
            mono_ms: registry.clock_ms(),
            wall_ms: received_ms,
        };
        let mut core = device.lock();
        if identity.strong {
            // A device named by what it sends keeps one protocol state (0x69 masks) across its
            // connections. Connections known only by their address keep their own: several devices
            // behind one NAT address must not mix their masks.
            if created {
                core.adopt_session(std::mem::take(&mut self.private));
            } else if self.device.is_none() {
                // Reconnection: decode again with the device's own state so that alarms still
                // active are not reported as new.
                *decoded = core.decode(frame);
            }
        }
        self.generation = core.generation();
        let attached = core.attach(self.id, self.peer.ip(), now);
        if identity.strong && attached.conflicting > 0 {
            Stats::inc(&self.shared.stats.identity_conflicts);
            tracing::warn!(device = %device.id, conn = self.id, peer = %self.peer, other_connections = attached.conflicting, "identity conflict: connections from other addresses claim the same device; all are kept");
        }
        if let Some(row) = attached.first_contact {
            tracing::info!(
                device = %device.id, conn = self.id, peer = %self.peer, protocol = frame.protocol.as_str(),
                kind = decoded.kind.as_str(), serial = ?decoded.device.serial.as_deref().unwrap_or("-"),
                mac = ?decoded.device.mac.as_deref().unwrap_or("-"), domain = ?decoded.device.domain.as_deref().unwrap_or("-"),
                first_bytes = %hex_head(&frame.bytes),
                "first contact of a new device"
            );
            devices.push(row);
        }
        if let Some(previous) = self.device.replace(device.clone()) {
            tracing::info!(conn = self.id, device = %device.id, was = %previous.id, "connection identified its device");
            let (alarms, effects) = previous.lock().identified_as(self.id, &device.id, now);
            if let Some(alarms) = alarms.filter(|_| created) {
                // The provisional (address) identity was this device all along: its alarms move with it.
                core.inherit(alarms);
            }
            events.extend(effects.events);
            devices.extend(effects.devices);
        }
        self.strong = identity.strong;
        drop(core);
        let (frames, bytes) = self.live.counters.get();
        Some(ConnectionIdentified {
            id: self.id,
            device: device.id.clone(),
            frames,
            bytes,
        })
    }

    /// A frame would have created device `id` past a new-device limit: nothing is created, the
    /// connection closes (the device retries later), the refusal is counted and, once a minute per
    /// address, logged.
    fn limit_new_device(&mut self, id: &str, refusal: Refusal) {
        Stats::inc(&self.shared.stats.new_devices_refused);
        if refusal.log {
            tracing::warn!(conn = self.id, peer = %self.peer, device = %id, limit = %refusal.limit, "new device refused: connection closed, frame kept without device (logged once a minute per address)");
        }
        self.limited = Some(CloseReason::NewDeviceLimit(refusal.limit.to_string()));
    }

    /// Online transition, alarm tracking, events and the device row for a frame of `device`
    /// (decided by the device core; logged and counted here).
    fn on_device_frame(
        &mut self,
        device: &SharedDevice,
        protocol: Protocol,
        decoded: &Decoded,
        received_ms: i64,
        devices: &mut Vec<DeviceUpdate>,
        events: &mut Vec<NewEvent>,
    ) {
        let now = Now {
            mono_ms: self.shared.registry.clock_ms(),
            wall_ms: received_ms,
        };
        let heard = Heard {
            connection: self.id,
            peer: self.peer,
            protocol,
            decoded,
        };
        // A row of this device is written with the frame anyway (first contact): bring it up to date.
        let row_due = devices.iter().any(|d| d.id == device.id);
        let effects = device.lock().on_frame(now, heard, row_due);
        if effects.supervised {
            tracing::debug!(device = %device.id, "keepAlives seen: supervised");
        }
        if effects.untracked_starts > 0 {
            let before = self
                .shared
                .stats
                .active_alarms_untracked
                .fetch_add(effects.untracked_starts as u64, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(device = %device.id, limit = alarm_center_devices::MAX_ACTIVE, "too many active alarms on one device: further starts are stored but not tracked for synthetic stops (logged once; counted in active_alarms_untracked_total)");
            }
        }
        events.extend(effects.events);
        devices.extend(effects.devices);
    }

    fn new_frame(&self, frame: &Frame, decoded: &Decoded, received_ms: i64) -> NewFrame {
        NewFrame {
            received_at: received_ms,
            device: self.device.as_ref().map(|d| d.id.clone()),
            connection: self.id,
            stream_offset: frame.offset,
            protocol: frame.protocol.as_str(),
            command: decoded.command,
            kind: decoded.kind.as_str(),
            body_format: decoded.body_format.as_str(),
            error: decoded.error.clone(),
            bytes: frame.bytes.clone(),
        }
    }

    /// Answers a JSON-RPC request that carries an `id`, in the framing it came in.
    async fn reply(&self, frame: &Frame, decoded: &Decoded, stream: &mut TcpStream) {
        if !matches!(decoded.kind, Kind::Keepalive | Kind::Request) {
            return;
        }
        let Some(body) = decoded.body.json_value() else {
            return;
        };
        let Some(id) = body.get("id").filter(|id| id.is_number()) else {
            return;
        };
        let mut reply = serde_json::json!({"id": id, "result": true, "params": null});
        if let Some(session) = body.get("session") {
            reply["session"] = session.clone();
        }
        let text = reply.to_string();
        let bytes = match (frame.protocol, &decoded.header) {
            (Protocol::Dhip, alarm_center_proto::session::Header::Dhip(h)) => {
                encode::dhip(h.session_id, h.request_id, &text)
            }
            (Protocol::Dvrip, alarm_center_proto::session::Header::Dvrip(h)) => {
                let mut reply =
                    encode::dvrip_json(h.request_id.unwrap_or(0), h.session_id.unwrap_or(0), &text);
                reply[3] = 0x78; // device-reply marker seen in captures
                reply[12] = 1;
                reply
            }
            (Protocol::Json, _) => encode::bare_json(&text),
            _ => return,
        };
        if let Err(e) = stream.write_all(&bytes).await {
            tracing::debug!(conn = self.id, error = %e, "reply not written");
        }
    }

    /// Logs, counts and records why the connection closed (the one place that does).
    async fn close(self, reason: &CloseReason) {
        let device = self.device.as_ref().map(|d| d.id.clone());
        if let Some(d) = &self.device {
            d.lock().detach(self.id);
        }
        reason.count(&self.shared.stats);
        let (frames, bytes) = self.live.counters.get();
        tracing::info!(conn = self.id, peer = %self.peer, device = device.as_deref().unwrap_or("-"), frames, bytes, reason = %reason, kind = reason.label(), "connection closed");
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

/// The first bytes of a frame as hex, for log lines.
fn hex_head(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(32)];
    let mut text = alarm_center_proto::record::hex(head);
    if bytes.len() > head.len() {
        text.push('…');
    }
    text
}
