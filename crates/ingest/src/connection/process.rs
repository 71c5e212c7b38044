//! What one frame means: decoded, judged (HTTP), attributed, counted, and handed to the writer as one
//! record.

use std::sync::Arc;

use alarm_center_proto::{encode, Decoded, Frame, Kind, Protocol, Session};
use alarm_center_store::NewFrame;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use tokio::sync::OwnedMutexGuard;

use super::Connection;
use crate::http_mode::{self, Answer, Verdict};
use crate::registry::SharedDevice;
use crate::stats::Stats;
use crate::writer::{FrameRecord as WriteFrame, Record};

impl Connection {
    /// Decodes, attributes and hands one frame to the writer. Returns the answer an HTTP request is owed.
    pub(super) async fn process(&mut self, frame: Frame, stream: &mut TcpStream) -> Option<Answer> {
        if let Some(arrival) = &self.arrival {
            // Earlier connections from this address first (each waits its window at most).
            arrival.wait_turn().await;
        }
        // One device's frames reach the store in the order their meaning was decided, whichever of
        // its connections they came on (decoding, online/offline and the queueing happen in turn).
        let mut order = None;
        hold_order(&mut order, self.device.as_ref()).await;
        let received = Instant::now();
        let received_ms = crate::time::now_ms();
        let mut decoded = self.decode(&frame);
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
        hold_order(&mut order, self.device.as_ref().filter(|_| attach)).await;
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
        self.count(&frame, &decoded);
        let new_frame = self.new_frame(&frame, &decoded, received_ms, attach);
        // A frame that leaves nothing to store (a keepAlive not archived) goes to no writer, and an
        // HTTP request for it is answered at once: there is no commit to wait for.
        let stores = new_frame.is_some() || !devices.is_empty() || !events.is_empty();
        let (answer, committed) = self.owed(verdict, stores);
        if stores {
            let record = WriteFrame {
                frame: new_frame,
                devices,
                events,
                received,
                committed,
            };
            self.queue(Record::Frame(Box::new(record))).await;
        }
        drop(order);
        // The first frame is handed over: later connections from this address may go.
        self.arrival = None;
        if self.shared.config.server.reply_to_requests {
            self.reply(&frame, &decoded, stream).await;
        }
        answer
    }

    /// Counts the frame and decodes it: with the device's protocol session when the frames name the
    /// device, else with this connection's own.
    fn decode(&mut self, frame: &Frame) -> Decoded {
        let stats = &self.shared.stats;
        Stats::inc(&stats.frames);
        self.live.counters.add_frame();
        if frame.protocol == Protocol::Junk {
            Stats::inc(&stats.frames_junk);
        }
        let decoded = match &self.device {
            Some(device) if self.strong => device.lock().decode(frame),
            Some(device) => {
                // Known by address only: this connection's own protocol state, started afresh when
                // the device went offline (its alarms were stopped then).
                let generation = device.lock().generation();
                if generation != self.generation {
                    self.generation = generation;
                    self.private = Session::new();
                }
                self.private.decode(frame)
            }
            None => self.private.decode(frame),
        };
        if decoded.error.is_some() {
            Stats::inc(&stats.frames_error);
            if frame.protocol != Protocol::Junk {
                tracing::warn!(conn = self.id, peer = %self.peer_text, offset = frame.offset, protocol = frame.protocol.as_str(), error = ?decoded.error.as_deref().unwrap_or(""), "undecodable frame kept");
            }
        }
        if frame.protocol == Protocol::Junk {
            tracing::warn!(conn = self.id, peer = %self.peer_text, offset = frame.offset, bytes = frame.len(), head = %hex_head(&frame.bytes), "unrecognized bytes kept");
        }
        decoded
    }

    /// Counts the frame's events, kind and error cause.
    fn count(&self, frame: &Frame, decoded: &Decoded) {
        let stats = &self.shared.stats;
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
            frame.protocol,
            decoded.kind,
            cause,
            decoded.events.iter().map(|e| e.code.as_ref()),
        );
    }

    /// The answer an HTTP request is owed (a refusal when its device was refused or limited), and for
    /// an accepted one that `stores` something the sender the writer uses to say it is committed.
    fn owed(
        &self,
        verdict: Option<Verdict>,
        stores: bool,
    ) -> (Option<Answer>, Option<tokio::sync::oneshot::Sender<()>>) {
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
        match verdict {
            Some(Verdict::Accept(answer)) if !stores => (Some(answer), None),
            Some(Verdict::Accept(mut answer)) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                answer.committed = Some(rx);
                (Some(answer), Some(tx))
            }
            Some(Verdict::Refuse(answer)) => (Some(answer), None),
            None => (None, None),
        }
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

    /// The raw frame's row (`None` for a keepAlive not archived: see `keepalive.rs`); without device
    /// when the frame attached none.
    fn new_frame(
        &mut self,
        frame: &Frame,
        decoded: &Decoded,
        received_ms: i64,
        attached: bool,
    ) -> Option<NewFrame> {
        let store = &self.shared.config.store;
        if decoded.kind == Kind::Keepalive
            && !(store.archive_keepalives
                && self.keepalives.archive(
                    frame,
                    decoded,
                    self.shared.registry.clock_ms(),
                    store.keepalive_sample_interval,
                ))
        {
            return None;
        }
        Some(NewFrame {
            received_at: received_ms,
            device: self
                .device
                .as_ref()
                .filter(|_| attached)
                .map(|d| d.id.clone()),
            connection: self.id,
            stream_offset: frame.offset,
            protocol: frame.protocol.as_str(),
            command: decoded.command,
            kind: decoded.kind.as_str(),
            body_format: decoded.body_format.as_str(),
            error: decoded.error.clone(),
            bytes: frame.bytes.clone(),
        })
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
}

/// The first bytes of a frame as hex, for log lines.
pub(super) fn hex_head(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(32)];
    let mut text = alarm_center_proto::record::hex(head);
    if bytes.len() > head.len() {
        text.push('…');
    }
    text
}

/// Holds the order lock of `device` in `order` (see `SharedDevice::order`), taking it unless it is
/// held already; `None` leaves `order` as it is.
async fn hold_order(
    order: &mut Option<(Arc<SharedDevice>, OwnedMutexGuard<()>)>,
    device: Option<&Arc<SharedDevice>>,
) {
    let Some(device) = device else {
        return;
    };
    if order
        .as_ref()
        .is_some_and(|(held, _)| Arc::ptr_eq(held, device))
    {
        return;
    }
    drop(order.take());
    // Uncontended (the usual case): no future to build and poll. A queued waiter holds the lock's
    // only permit as soon as it is released, so this never overtakes one.
    let guard = match device.order.clone().try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => device.order.clone().lock_owned().await,
    };
    *order = Some((device.clone(), guard));
}
