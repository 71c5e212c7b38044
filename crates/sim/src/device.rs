//! One simulated device: connect, identify, send keepAlives and alarms (over HTTP, each awaiting its
//! answer), reconnect.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Parsed};
use crate::frames::{self, AlarmEvent, Conn, Identity};
use crate::{SentFrame, Shared, SimConfig, Variant};

/// A connect attempt that takes longer fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First reconnect delay (jittered down to half); doubled while connections keep failing fast.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(5);
/// Shortest time between two alarm wake-ups: higher rates are sent in bursts.
const MIN_TICK: Duration = Duration::from_millis(10);
/// Most alarm frames sent in one wake-up.
const MAX_BURST: usize = 1024;
/// A schedule further behind than this forgets its backlog.
const MAX_LAG: Duration = Duration::from_secs(1);
/// After the run stops, a write that is waiting for the socket gets this long to finish its frame, and
/// an HTTP request this long (within [`ANSWER_TIMEOUT`]) for its answer.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// An HTTP request not answered within this long counts as failed and ends its connection (a late
/// answer could no longer be matched to its request).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How a connection ended.
enum End {
    /// The run stopped.
    Stopped,
    /// The server closed or reset it, a write failed, or (HTTP) an answer was missing or closed it.
    Lost,
}

/// Counts gathered during a burst, added to the shared counters once.
#[derive(Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    alarms: u64,
    keepalives: u64,
    /// HTTP answers with a 2xx status.
    http_ok: u64,
    /// HTTP requests answered otherwise or not at all.
    http_failed: u64,
    /// HTTP requests not answered at all.
    http_unanswered: u64,
    /// HTTP answers by status.
    http_statuses: Vec<(u16, u64)>,
}

impl Tally {
    fn is_empty(&self) -> bool {
        self.frames == 0 && self.http_failed == 0 && self.http_statuses.is_empty()
    }

    fn answered(&mut self, status: u16) {
        if (200..300).contains(&status) {
            self.http_ok += 1;
        } else {
            self.http_failed += 1;
        }
        match self.http_statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.http_statuses.push((status, 1)),
        }
    }

    fn unanswered(&mut self) {
        self.http_failed += 1;
        self.http_unanswered += 1;
    }
}

/// What came back for one HTTP request.
enum Answered {
    /// An answer with this status; `close`: the server closes the connection after it.
    Status { status: u16, close: bool },
    /// No readable answer; the connection ends this way.
    Missing(End),
}

/// Lowest local port given to a connection from a source address.
const FIRST_PORT: usize = 10_000;
/// Ports tried per connect attempt before it counts as failed.
const PORT_TRIES: usize = 16;

/// Connects to `target`, from `source` when given. The port is chosen here, not by the kernel: with
/// tens of thousands of ports of an address in use or in TIME_WAIT (the previous run's, for a
/// minute), the kernel's search for a free port in `bind` takes long enough to stall the runtime's
/// threads (seen at 19,500 devices). `SO_REUSEADDR` lets a port in TIME_WAIT be bound again; a port
/// that is taken after all is skipped for the next one.
async fn connect(
    source: Option<IpAddr>,
    target: SocketAddr,
    next_port: &AtomicUsize,
) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target).await;
    };
    let mut last = None;
    for _ in 0..PORT_TRIES {
        let port = FIRST_PORT + next_port.fetch_add(1, Ordering::Relaxed) % (65_536 - FIRST_PORT);
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if let Err(e) = socket.bind(SocketAddr::new(source, port as u16)) {
            last = Some(e);
            continue;
        }
        match socket.connect(target).await {
            Ok(stream) => return Ok(stream),
            // The same address pair is still in use (or in TIME_WAIT and not reusable): next port.
            Err(e)
                if e.kind() == ErrorKind::AddrNotAvailable || e.kind() == ErrorKind::AddrInUse =>
            {
                last = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no local port")))
}

/// A simulated device and its alarm state.
pub(crate) struct Device {
    index: usize,
    variant: Variant,
    serial: String,
    serial_json: String,
    ip: Ipv4Addr,
    /// The target as `HOST:PORT` (the HTTP `Host` field).
    host: String,
    /// The local address to connect from (`None`: the kernel's choice).
    source: Option<IpAddr>,
    rng: SmallRng,
    /// Active channels per code slot.
    active: Vec<u32>,
    /// When the next alarm event falls due (`None`: no alarms).
    next_alarm: Option<Instant>,
}

impl Device {
    pub(crate) fn new(index: usize, config: &SimConfig, rng: SmallRng) -> Device {
        let variant = config.variant.for_device(index);
        let serial = config.serial(index);
        // 198.18.0.0/15 (RFC 2544, benchmarking): one address per device.
        let n = (index % (1 << 17)) as u32;
        let ip = Ipv4Addr::new(198, 18 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        Device {
            index,
            variant,
            serial_json: serde_json::to_string(&serial).unwrap_or_default(),
            serial,
            ip,
            host: config.target.to_string(),
            source: config.source(index),
            rng,
            active: vec![0; frames::code_count(variant)],
            next_alarm: None,
        }
    }

    /// The device's life: connect, talk until the connection ends, back off, reconnect; until stopped.
    pub(crate) async fn run(mut self, shared: Arc<Shared>) {
        let stop = &shared.stop;
        let counters = &shared.stats.0;
        // A random phase within one mean gap spreads the devices' alarms evenly.
        if let Some(gap) = shared.alarm_gap {
            let phase = gap.mul_f64(self.rng.random::<f64>());
            self.next_alarm = Some(Instant::now() + phase.min(Duration::from_secs(86_400 * 365)));
        }
        let mut backoff = BACKOFF_MIN;
        let mut connected_before = false;
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout(CONNECT_TIMEOUT, connect(self.source, shared.target, &shared.next_port)) => r,
            };
            match attempt {
                Ok(Ok(mut stream)) => {
                    let _ = stream.set_nodelay(true);
                    if connected_before {
                        counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected_before = true;
                    counters.connected.fetch_add(1, Ordering::Relaxed);
                    let since = Instant::now();
                    let end = self.connection(&stream, &shared).await;
                    counters.connected.fetch_sub(1, Ordering::Relaxed);
                    match end {
                        End::Stopped => {
                            // Best effort FIN; the socket closes when dropped anyway.
                            let _ =
                                tokio::time::timeout(Duration::from_millis(100), stream.shutdown())
                                    .await;
                            return;
                        }
                        End::Lost => {
                            counters.disconnects.fetch_add(1, Ordering::Relaxed);
                            if since.elapsed() >= STABLE {
                                backoff = BACKOFF_MIN;
                            }
                        }
                    }
                }
                Ok(Err(_)) | Err(_) => {
                    counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            let delay = backoff.mul_f64(self.rng.random_range(0.5..=1.0));
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Talks over one connection until it ends or the run stops.
    async fn connection(&mut self, stream: &TcpStream, shared: &Shared) -> End {
        let mut tally = Tally::default();
        let end = self.talk(stream, shared, &mut tally).await;
        self.flush(shared, &mut tally);
        end
    }

    /// [`Device::connection`], counting in `tally`.
    async fn talk(&mut self, stream: &TcpStream, shared: &Shared, tally: &mut Tally) -> End {
        let mut conn = Conn {
            session: self.rng.random_range(1..=0x7FFF_FFFF),
            next_id: 1,
        };
        // The server's per-connection state starts empty: so does the snapshot state, so that every
        // snapshot differs from the previous one in exactly the bit that changed.
        if matches!(self.variant, Variant::DvripMask | Variant::DvripText) {
            self.active.fill(0);
        }
        // HTTP: bytes read while waiting for an answer that are not part of it yet.
        let mut answers = Vec::new();
        let me = self.identity();
        if let Some(frame) = frames::report(self.variant, &me) {
            if let Err(end) = write_frame(stream, &frame, &shared.stop).await {
                return end;
            }
            tally.frames += 1;
            tally.bytes += frame.len() as u64;
            self.notify(shared, "report", "", "", 0, frame.len());
        }
        let period_secs = shared.keepalive.as_secs_f64().ceil() as u64;
        let mut keepalive = (!shared.keepalive.is_zero()).then(|| {
            let mut interval = tokio::time::interval(shared.keepalive);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        let alarm_sleep = tokio::time::sleep_until(self.alarm_deadline(Instant::now()));
        tokio::pin!(alarm_sleep);
        let mut buf = [0u8; 256];
        loop {
            self.flush(shared, tally);
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => return End::Stopped,
                ready = stream.readable() => {
                    // The server may answer (HTTP answers are read right after their request, so
                    // nothing is owed here); discard it. End of stream or an error ends the connection.
                    match ready.and_then(|()| stream.try_read(&mut buf)) {
                        Ok(0) => return End::Lost,
                        Ok(_) => {}
                        Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                        Err(_) => return End::Lost,
                    }
                }
                () = next_tick(&mut keepalive) => {
                    let me = self.identity();
                    let frame = frames::keepalive(self.variant, &me, &mut conn, period_secs);
                    if let Err(end) = write_frame(stream, &frame, &shared.stop).await {
                        return end;
                    }
                    tally.frames += 1;
                    tally.keepalives += 1;
                    tally.bytes += frame.len() as u64;
                    self.notify(shared, "keepalive", "", "", 0, frame.len());
                    if let Err(end) = self.await_answer(stream, &mut answers, shared, tally).await {
                        return end;
                    }
                }
                () = &mut alarm_sleep, if self.next_alarm.is_some() => {
                    let result = self
                        .alarm_burst(stream, shared, &mut conn, &mut answers, tally)
                        .await;
                    self.flush(shared, tally);
                    if let Err(end) = result {
                        return end;
                    }
                    alarm_sleep.as_mut().reset(self.alarm_deadline(Instant::now()));
                }
            }
        }
    }

    /// Sends every alarm event that has fallen due (up to [`MAX_BURST`]), one frame each (over HTTP,
    /// each after the answer to the previous one).
    async fn alarm_burst(
        &mut self,
        stream: &TcpStream,
        shared: &Shared,
        conn: &mut Conn,
        answers: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> Result<(), End> {
        let (Some(gap), Some(mut due)) = (shared.alarm_gap, self.next_alarm) else {
            return Ok(());
        };
        let now = Instant::now();
        if now.saturating_duration_since(due) > MAX_LAG {
            due = now;
        }
        let mut sent = 0;
        while due <= now && sent < MAX_BURST && !shared.stop.is_cancelled() {
            let event = self.pick_event();
            let mask = self.active[event.slot];
            let frame = frames::alarm(self.variant, &self.identity(), conn, &event, mask);
            due += gap.mul_f64(self.rng.random_range(0.5..1.5));
            self.next_alarm = Some(due);
            if let Err(end) = write_frame(stream, &frame, &shared.stop).await {
                // The frame did not go out: undo its state change (a new connection resets it anyway).
                self.active[event.slot] ^= 1 << event.index;
                return Err(end);
            }
            tally.frames += 1;
            tally.alarms += 1;
            tally.bytes += frame.len() as u64;
            sent += 1;
            let code = frames::code_name(self.variant, event.slot);
            let action = if event.start { "start" } else { "stop" };
            self.notify(shared, "alarm", code, action, event.index, frame.len());
            // The event went out: a missing or failed answer is counted, its state stays changed.
            self.await_answer(stream, answers, shared, tally).await?;
        }
        self.next_alarm = Some(due);
        Ok(())
    }

    /// HTTP: reads and counts the answer to the request just sent. A missing answer, or one that
    /// closes the connection, ends the connection. Other variants: nothing to wait for.
    async fn await_answer(
        &self,
        stream: &TcpStream,
        buf: &mut Vec<u8>,
        shared: &Shared,
        tally: &mut Tally,
    ) -> Result<(), End> {
        if self.variant != Variant::Http {
            return Ok(());
        }
        match read_answer(stream, buf, &shared.stop).await {
            Answered::Status { status, close } => {
                tally.answered(status);
                if close {
                    return Err(End::Lost);
                }
                Ok(())
            }
            Answered::Missing(end) => {
                tally.unanswered();
                Err(end)
            }
        }
    }

    /// Picks a (code, channel) and toggles it: a start when it was idle, a stop when it was active.
    fn pick_event(&mut self) -> AlarmEvent {
        let slot = self.rng.random_range(0..self.active.len());
        let index = self.rng.random_range(0..frames::CHANNELS);
        self.active[slot] ^= 1 << index;
        AlarmEvent {
            slot,
            index,
            start: self.active[slot] & (1 << index) != 0,
        }
    }

    /// When to wake for alarms next: when the next one falls due, but not sooner than [`MIN_TICK`]
    /// after `now`.
    fn alarm_deadline(&self, now: Instant) -> Instant {
        let far = now + Duration::from_secs(86_400);
        self.next_alarm.map_or(far, |due| due.max(now + MIN_TICK))
    }

    fn identity(&self) -> Identity<'_> {
        Identity {
            serial: &self.serial,
            serial_json: &self.serial_json,
            ip: self.ip,
            host: &self.host,
        }
    }

    /// Adds the tally to the shared counters and clears it.
    fn flush(&self, shared: &Shared, tally: &mut Tally) {
        if tally.is_empty() {
            return;
        }
        let c = &shared.stats.0;
        let tally = std::mem::take(tally);
        c.frames.fetch_add(tally.frames, Ordering::Relaxed);
        c.bytes.fetch_add(tally.bytes, Ordering::Relaxed);
        if tally.alarms > 0 {
            c.alarm_events.fetch_add(tally.alarms, Ordering::Relaxed);
        }
        if tally.keepalives > 0 {
            c.keepalives.fetch_add(tally.keepalives, Ordering::Relaxed);
        }
        if tally.http_ok > 0 {
            c.http_ok.fetch_add(tally.http_ok, Ordering::Relaxed);
        }
        if tally.http_failed > 0 {
            c.http_failed
                .fetch_add(tally.http_failed, Ordering::Relaxed);
            c.http_unanswered
                .fetch_add(tally.http_unanswered, Ordering::Relaxed);
        }
        if !tally.http_statuses.is_empty() {
            let mut statuses = c.http_statuses.lock().unwrap_or_else(|p| p.into_inner());
            for (status, n) in tally.http_statuses {
                *statuses.entry(status).or_default() += n;
            }
        }
    }

    /// Calls the `on_sent` callback, if any.
    fn notify(
        &self,
        shared: &Shared,
        kind: &'static str,
        code: &str,
        action: &'static str,
        index: u32,
        bytes: usize,
    ) {
        if let Some(on_sent) = &shared.on_sent {
            on_sent(&SentFrame {
                device: self.index,
                serial: self.serial.clone(),
                variant: self.variant,
                kind,
                code: code.to_owned(),
                action,
                index,
                bytes,
            });
        }
    }
}

/// The next tick of an optional interval; never, without one.
async fn next_tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Writes one whole frame: normally a single `write` call. Waits while the socket buffer is full; once
/// the run stops, waits at most [`STOP_GRACE`] more.
async fn write_frame(
    stream: &TcpStream,
    frame: &[u8],
    stop: &CancellationToken,
) -> Result<(), End> {
    let mut written = 0;
    while written < frame.len() {
        match stream.try_write(&frame[written..]) {
            Ok(0) => return Err(End::Lost),
            Ok(n) => written += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                let grace = async {
                    stop.cancelled().await;
                    tokio::time::sleep(STOP_GRACE).await;
                };
                tokio::select! {
                    biased;
                    ready = stream.writable() => {
                        if ready.is_err() {
                            return Err(End::Lost);
                        }
                    }
                    () = grace => return Err(End::Stopped),
                }
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(End::Lost),
        }
    }
    Ok(())
}

/// Reads the answer to the HTTP request just sent into `buf` (bytes after it stay there for the next),
/// skipping interim (1xx) answers. Gives up after [`ANSWER_TIMEOUT`], or [`STOP_GRACE`] after the run
/// stops.
async fn read_answer(stream: &TcpStream, buf: &mut Vec<u8>, stop: &CancellationToken) -> Answered {
    let timeout = tokio::time::sleep(ANSWER_TIMEOUT);
    let grace = async {
        stop.cancelled().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::pin!(timeout, grace);
    let mut chunk = [0u8; 4096];
    loop {
        match answer::parse(buf) {
            Parsed::Answer { status, len, close } => {
                buf.drain(..len);
                if (100..200).contains(&status) && !close {
                    continue;
                }
                return Answered::Status { status, close };
            }
            Parsed::Invalid(_) => return Answered::Missing(End::Lost),
            Parsed::Partial => {}
        }
        tokio::select! {
            biased;
            ready = stream.readable() => {
                match ready.and_then(|()| stream.try_read(&mut chunk)) {
                    Ok(0) => return Answered::Missing(End::Lost),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => return Answered::Missing(End::Lost),
                }
            }
            () = &mut timeout => return Answered::Missing(End::Lost),
            () = &mut grace => return Answered::Missing(End::Stopped),
        }
    }
}
