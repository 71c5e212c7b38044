//! The connection to the broker, driven by one task: MQTT 3.1.1 packets (rumqttc's codec) over TCP or
//! TLS. Two things rumqttc's event loop could not do, and that cost the sink most of its CPU and its
//! latency under load (docs/benchmarks.md §13):
//! - the requests queued meanwhile are written together, one system call and a few TCP segments for
//!   a burst of messages (rumqttc wrote and flushed each message on its own);
//! - on Linux, each read is acknowledged at once (`TCP_QUICKACK`): a broker with Nagle's algorithm
//!   on (Mosquitto's default) holds its next PUBACKs until our side acknowledges its last segment,
//!   which the kernel otherwise delays up to 40 ms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::tokio_rustls::{client::TlsStream, TlsConnector};
use rumqttc::{
    ConnectReturnCode, Error as CodecError, LastWill, Login, Packet, PubAck, Publish, QoS,
    Subscribe, Unsubscribe,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::either::Either;

use super::session::{Message, Note};

/// Largest packet read from the broker, in bytes (the only publishes it sends us are Home Assistant's
/// status). A larger one is skipped, not kept: see [`Link::skip_outsized`].
const MAX_INCOMING: usize = 1024 * 1024;
/// Room for a publish's topic (at most 65,535 bytes and its length) and packet id, in bytes.
const TOPIC_ROOM: usize = 64 * 1024 + 4;
/// Longest wait for the TCP and TLS handshakes and for the CONNACK, and for one write to complete.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the sink asks of the connection.
pub(super) enum Request {
    /// A QoS 1 message; its acknowledgement reports `tag` (`None`: nothing to report).
    Publish(Message, Option<i64>),
    /// A QoS 1 subscription.
    Subscribe(String),
    /// An UNSUBSCRIBE of a topic nobody uses: a packet that carries our side's acknowledgements.
    Nudge(String),
}

/// How to reach and greet the broker.
pub(super) struct Options {
    pub(super) host: String,
    pub(super) port: u16,
    /// The TLS connector and the name the certificate must carry; `None`: plain TCP.
    pub(super) tls: Option<TlsConnector>,
    pub(super) client_id: String,
    pub(super) keep_alive: Duration,
    pub(super) max_inflight: u16,
    /// Largest payload sent, in bytes (`max-message`).
    pub(super) max_message: usize,
    pub(super) will: LastWill,
    pub(super) login: Option<Login>,
}

type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// An open MQTT connection (CONNACK received).
pub(super) struct Link {
    stream: Stream,
    read: BytesMut,
    write: BytesMut,
    keep_alive: Duration,
    max_inflight: usize,
    /// Largest packet sent, in bytes.
    max_packet: usize,
    /// Bytes of an outsized packet from the broker still to be discarded as they arrive.
    skip: usize,
}

/// Connects, sends CONNECT and waits for a successful CONNACK.
pub(super) async fn connect(options: &Options) -> Result<Link, String> {
    let timed = |what: &'static str| move |_| format!("{what} took longer than {IO_TIMEOUT:?}");
    let tcp = tokio::time::timeout(
        IO_TIMEOUT,
        TcpStream::connect((options.host.as_str(), options.port)),
    )
    .await
    .map_err(timed("connecting"))?
    .map_err(|e| format!("I/O: {e}"))?;
    // Small QoS 1 messages and their acknowledgements must not wait for Nagle's algorithm.
    tcp.set_nodelay(true).map_err(|e| format!("I/O: {e}"))?;
    let stream = match &options.tls {
        None => Either::Left(tcp),
        Some(connector) => {
            let name = ServerName::try_from(options.host.clone())
                .map_err(|e| format!("TLS: {:?} is not a server name: {e}", options.host))?;
            let tls = tokio::time::timeout(IO_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(timed("the TLS handshake"))?
                .map_err(|e| format!("TLS: {e}"))?;
            Either::Right(tls)
        }
    };
    let mut link = Link {
        stream,
        read: BytesMut::with_capacity(16 * 1024),
        write: BytesMut::with_capacity(16 * 1024),
        keep_alive: options.keep_alive,
        max_inflight: usize::from(options.max_inflight.max(1)),
        max_packet: options.max_message + TOPIC_ROOM,
        skip: 0,
    };
    let connect = rumqttc::Connect {
        protocol: rumqttc::Protocol::V4,
        keep_alive: u16::try_from(options.keep_alive.as_secs()).unwrap_or(u16::MAX),
        client_id: options.client_id.clone(),
        clean_session: true,
        last_will: Some(options.will.clone()),
        login: options.login.clone(),
    };
    link.queue(&Packet::Connect(connect))?;
    tokio::time::timeout(IO_TIMEOUT, link.handshake())
        .await
        .map_err(timed("waiting for CONNACK"))?
        .map(|()| link)
}

impl Link {
    /// Adds `packet` to what the next write sends.
    fn queue(&mut self, packet: &Packet) -> Result<(), String> {
        packet
            .write(&mut self.write, self.max_packet)
            .map(drop)
            .map_err(|e| format!("MQTT: {e}"))
    }

    /// Writes what is queued, in one call as far as the socket takes it.
    async fn flush(&mut self) -> Result<(), String> {
        if self.write.is_empty() {
            return Ok(());
        }
        let stream = &mut self.stream;
        let bytes = &self.write;
        tokio::time::timeout(IO_TIMEOUT, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .map_err(|_| format!("MQTT: a write took longer than {IO_TIMEOUT:?}"))?
        .map_err(|e| format!("I/O: {e}"))?;
        self.write.clear();
        Ok(())
    }

    /// Reads more of the stream; an error when it ended. Acknowledges what was read at once.
    async fn fill(&mut self) -> Result<(), String> {
        match self.stream.read_buf(&mut self.read).await {
            Ok(0) => Err("connection closed by the broker".into()),
            Ok(_) => {
                quick_ack(&self.stream);
                Ok(())
            }
            Err(e) => Err(format!("I/O: {e}")),
        }
    }

    /// The next whole packet already read, if any. A packet past `MAX_INCOMING` is skipped.
    fn next_packet(&mut self) -> Result<Option<Packet>, String> {
        loop {
            if self.skip > 0 {
                let discarded = self.skip.min(self.read.len());
                self.read.advance(discarded);
                self.skip -= discarded;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            match Packet::read(&mut self.read, MAX_INCOMING) {
                Ok(packet) => return Ok(Some(packet)),
                Err(CodecError::InsufficientBytes(_)) => return Ok(None),
                Err(CodecError::PayloadSizeLimitExceeded(_)) => {
                    if !self.skip_outsized()? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(format!("MQTT: {e}")),
            }
        }
    }

    /// Starts skipping the outsized packet at the front of what was read, once its header (and, for
    /// a publish, its topic and packet id) has arrived; `false` until then. Anyone allowed to
    /// publish on a topic we subscribe to could otherwise fail our connection on every reconnect,
    /// with a retained message past the limit: MQTT delivery would stop for good. A QoS 1 publish
    /// is acknowledged, so that the broker does not hold it against its in-flight window.
    fn skip_outsized(&mut self) -> Result<bool, String> {
        let Some(outsized) = outsized_header(&self.read)? else {
            return Ok(false);
        };
        if let Some(pkid) = outsized.pkid {
            self.queue(&Packet::PubAck(PubAck::new(pkid)))?;
        }
        tracing::warn!(
            bytes = outsized.length,
            topic = %outsized.topic.escape_debug(),
            limit = MAX_INCOMING,
            "MQTT: the broker sent a packet larger than the limit; skipped",
        );
        self.skip = outsized.length;
        Ok(true)
    }

    /// Sends the queued CONNECT and reads until the CONNACK.
    async fn handshake(&mut self) -> Result<(), String> {
        self.flush().await?;
        loop {
            if let Some(packet) = self.next_packet()? {
                let Packet::ConnAck(ack) = packet else {
                    return Err(format!("MQTT: expected CONNACK, got {packet:?}"));
                };
                return match ack.code {
                    ConnectReturnCode::Success => Ok(()),
                    code => Err(format!("MQTT: connection refused: {code:?}")),
                };
            }
            self.fill().await?;
        }
    }

    /// Drives the connection until it fails or `requests` closes: sends what is asked (at most
    /// `max_inflight` publishes unacknowledged), reports each acknowledged tag to `notes`, answers
    /// the broker's publishes and hands them to `on_publish`, and pings every keep-alive period.
    pub(super) async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        notes: mpsc::UnboundedSender<Note>,
        mut on_publish: impl FnMut(&Publish),
    ) {
        let mut state = State::default();
        let period = self.keep_alive;
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + period,
            period.max(Duration::from_secs(1)),
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let failure = loop {
            let step = tokio::select! {
                read = self.fill() => match read {
                    Ok(()) => self.take_packets(&mut state, &notes, &mut on_publish),
                    Err(e) => Err(e),
                },
                request = requests.recv(), if state.inflight.len() < self.max_inflight => {
                    let Some(request) = request else { return };
                    self.take_requests(request, &mut requests, &mut state)
                }
                _ = ping.tick(), if !period.is_zero() => {
                    if state.ping_unanswered {
                        Err(format!("MQTT: no PINGRESP within {period:?}"))
                    } else {
                        state.ping_unanswered = true;
                        self.queue(&Packet::PingReq)
                    }
                }
            };
            if let Err(e) = step {
                break e;
            }
            if let Err(e) = self.flush().await {
                break e;
            }
        };
        let _ = notes.send(Note::Down(failure));
    }

    /// Handles every whole packet read.
    fn take_packets(
        &mut self,
        state: &mut State,
        notes: &mpsc::UnboundedSender<Note>,
        on_publish: &mut impl FnMut(&Publish),
    ) -> Result<(), String> {
        while let Some(packet) = self.next_packet()? {
            match packet {
                Packet::PubAck(ack) => {
                    if let Some(Some(tag)) = state.inflight.remove(&ack.pkid) {
                        let _ = notes.send(Note::Acked(tag));
                    }
                }
                Packet::Publish(publish) => {
                    if publish.qos != QoS::AtMostOnce {
                        self.queue(&Packet::PubAck(PubAck::new(publish.pkid)))?;
                    }
                    on_publish(&publish);
                }
                Packet::PingResp => state.ping_unanswered = false,
                Packet::Disconnect => return Err("the broker disconnected".into()),
                // SUBACK, UNSUBACK: nothing waits for them.
                _ => {}
            }
        }
        Ok(())
    }

    /// Queues `first` and whatever else is waiting, while the window has room.
    fn take_requests(
        &mut self,
        first: Request,
        requests: &mut mpsc::Receiver<Request>,
        state: &mut State,
    ) -> Result<(), String> {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            let pkid = state.next_pkid();
            let packet = match request {
                Request::Publish(message, tag) => {
                    state.inflight.insert(pkid, tag);
                    let mut publish =
                        Publish::new(message.topic, QoS::AtLeastOnce, message.payload);
                    publish.retain = message.retain;
                    publish.pkid = pkid;
                    Packet::Publish(publish)
                }
                Request::Subscribe(topic) => {
                    let mut subscribe = Subscribe::new(topic, QoS::AtLeastOnce);
                    subscribe.pkid = pkid;
                    Packet::Subscribe(subscribe)
                }
                Request::Nudge(topic) => {
                    let mut unsubscribe = Unsubscribe::new(topic);
                    unsubscribe.pkid = pkid;
                    Packet::Unsubscribe(unsubscribe)
                }
            };
            self.queue(&packet)?;
            if state.inflight.len() < self.max_inflight {
                next = requests.try_recv().ok();
            }
        }
        Ok(())
    }
}

/// The driver's bookkeeping.
#[derive(Default)]
struct State {
    /// Packet id → tag of each publish awaiting its PUBACK.
    inflight: HashMap<u16, Option<i64>>,
    last_pkid: u16,
    ping_unanswered: bool,
}

impl State {
    /// The next packet id (1 ..= 65535) not held by a publish awaiting its PUBACK.
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1);
            if self.last_pkid != 0 && !self.inflight.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }
}

/// What is known of an outsized packet from its first bytes.
#[derive(Debug, PartialEq)]
pub(super) struct Outsized {
    /// Length of the whole packet, fixed header included, in bytes.
    pub(super) length: usize,
    /// The packet id of a QoS 1 or 2 publish.
    pub(super) pkid: Option<u16>,
    /// A publish's topic (at most its first 100 characters; lossy UTF-8), else empty.
    pub(super) topic: String,
}

/// Reads the header of the packet at the front of `read`: its type byte, its remaining length (1 to
/// 4 bytes, 7 bits each, least significant first) and, for a publish, its topic (a big-endian u16
/// length and the text) and, at QoS 1 or 2, its packet id (big-endian u16). `None` until all of
/// that has arrived.
pub(super) fn outsized_header(read: &[u8]) -> Result<Option<Outsized>, String> {
    let Some(&first) = read.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    let mut at = 1;
    loop {
        let Some(&byte) = read.get(at) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * (at - 1));
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at > 4 {
            return Err("MQTT: malformed remaining length".into());
        }
    }
    let length = at + remaining;
    let mut outsized = Outsized {
        length,
        pkid: None,
        topic: String::new(),
    };
    if first >> 4 != 3 {
        return Ok(Some(outsized));
    }
    let (Some(&high), Some(&low)) = (read.get(at), read.get(at + 1)) else {
        return Ok(None);
    };
    let topic_end = at + 2 + usize::from(u16::from_be_bytes([high, low]));
    let qos = (first >> 1) & 0b11;
    let header_end = if qos == 0 { topic_end } else { topic_end + 2 };
    if header_end > length {
        return Err("MQTT: a publish shorter than its topic".into());
    }
    let Some(header) = read.get(..header_end) else {
        return Ok(None);
    };
    let topic = String::from_utf8_lossy(&header[at + 2..topic_end]);
    outsized.topic = topic.chars().take(100).collect();
    if qos != 0 {
        outsized.pkid = Some(u16::from_be_bytes([
            header[topic_end],
            header[topic_end + 1],
        ]));
    }
    Ok(Some(outsized))
}

/// Sends the acknowledgement of what was just read now, and keeps acknowledging at once (Linux; the
/// kernel may fall back to delayed acknowledgements later, hence after every read).
fn quick_ack(stream: &Stream) {
    #[cfg(target_os = "linux")]
    {
        let tcp = match stream {
            Either::Left(tcp) => tcp,
            Either::Right(tls) => tls.get_ref().0,
        };
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

/// A TLS connector trusting `roots`.
pub(super) fn tls_connector(roots: rustls::RootCertStore) -> TlsConnector {
    TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
