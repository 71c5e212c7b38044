//! Outputs. Each sink reads the event log from its own durable cursor and advances it only once the
//! destination accepted an event, so a sink that is down or slow never blocks ingest or other sinks and
//! catches up, in log order, when it recovers.

#![forbid(unsafe_code)]

pub mod config;
pub mod mqtt;
pub mod rules;
pub mod stdout;
pub mod webhook;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alarm_center_store::{Db, EventQuery, SinkCounts, StoredEvent};
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use rules::{Rules, Skip};

pub use config::{SinksConfig, StdoutSinkConfig};

pub use alarm_center_store::Committed;

/// A sink that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Its store connection or cursor could not be opened.
    #[error(transparent)]
    Store(#[from] alarm_center_store::StoreError),
    /// Its configuration cannot work (the message names the key).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A resource it needs could not be created.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Where the sinks run: the configuration they need beyond their own sections.
#[derive(Debug, Clone)]
pub struct Context {
    /// The data directory (the store the sinks read).
    pub data_dir: std::path::PathBuf,
    /// `server.stats-interval`: how often each sink logs its statistics line.
    pub stats_interval: Duration,
    /// `[auto-clear]`: codes cleared by the server (MQTT discovery gives them an `off_delay`).
    pub auto_clear: std::collections::BTreeMap<String, Duration>,
}

/// Events read from the log at once, and handed to a destination at once unless it asks for fewer: a
/// batch boundary costs the MQTT sink a round trip of acknowledgements (decision D49).
const BATCH: u32 = 4096;
/// How often a sink's cursor is saved while it delivers.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What became of one event at a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The destination accepted it.
    Delivered,
    /// Given up after the last retry; recorded as a dead letter.
    DeadLetter {
        attempts: u32,
        error: String,
        request: Option<String>,
    },
}

/// A destination of events.
pub(crate) trait Destination: Send {
    /// Most events handed over at once. A destination that sends one request per event uses a small
    /// batch, so that its cursor, counters and latencies move as each event completes.
    fn batch_size(&self) -> usize {
        BATCH as usize
    }

    /// Delivers `events` in order. Returns the outcomes of the leading events handled. Fewer outcomes
    /// than events with a reason: the destination went away, the rest is offered again. Fewer without
    /// a reason (at least one, unless `events` is empty): the rest is still in flight, and the next
    /// call offers it again first, followed by newer events (a destination that pipelines keeps track
    /// of what it already sent).
    fn deliver(
        &mut self,
        events: &[StoredEvent],
    ) -> impl Future<Output = (Vec<Outcome>, Option<String>)> + Send;

    /// Gives the destination the sink's store connection, before the first delivery (a destination
    /// that announces what the log holds reads it there, never through a connection of its own).
    fn attach(&mut self, _store: SinkStore) {}
}

/// A sink's one store connection, shared by its runner (the log, the cursor, dead letters) and its
/// destination: each call runs on a blocking thread, one at a time.
#[derive(Clone)]
pub(crate) struct SinkStore(Arc<std::sync::Mutex<Db>>);

impl SinkStore {
    /// Runs `f` on the connection off the async threads.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> alarm_center_store::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || f(&db.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// The shared machinery of a sink: reading the log, rules, cursor and counters.
pub(crate) struct Runner {
    pub(crate) name: String,
    store: SinkStore,
    /// Last event read from the log.
    read_to: i64,
    /// Events approved by the rules and not yet handled, in order.
    pending: VecDeque<StoredEvent>,
    /// The last read of the log was a whole batch: more may be there already.
    log_has_more: bool,
    rules: Rules,
    counts: SinkCounts,
    last_error: Option<String>,
    wake: broadcast::Receiver<Committed>,
    shutdown: CancellationToken,
    /// The position last saved, and when.
    saved_position: i64,
    last_save: tokio::time::Instant,
    /// Receive→accepted latencies since the last statistics line, milliseconds (bounded sample).
    latencies: Vec<u32>,
    stats_every: Duration,
    last_stats: (tokio::time::Instant, u64),
}

impl Runner {
    /// Opens the sink's store connection and its cursor (created at the end of the log on first start).
    pub(crate) fn open(
        name: &str,
        data_dir: &std::path::Path,
        rules: rules::RulesConfig,
        wake: broadcast::Receiver<Committed>,
        shutdown: CancellationToken,
        stats_every: Duration,
    ) -> Result<Runner, crate::SinkError> {
        let db = Db::open(data_dir, alarm_center_store::SyncMode::Normal)?;
        let (position, counts) = match db.sink_cursor(name)? {
            Some(c) => (
                c.position,
                SinkCounts {
                    delivered: c.delivered,
                    filtered: c.filtered,
                    dead_letters: c.dead_letters,
                    failures: c.failures,
                },
            ),
            None => {
                let end = db.last_event_id()?;
                db.save_sink_cursor(name, end, SinkCounts::default(), None, crate::now_ms())?;
                (end, SinkCounts::default())
            }
        };
        tracing::info!(sink = name, position, "sink started");
        Ok(Runner {
            name: name.to_owned(),
            store: SinkStore(Arc::new(std::sync::Mutex::new(db))),
            read_to: position,
            pending: VecDeque::new(),
            log_has_more: false,
            rules: Rules::new(rules),
            counts,
            last_error: None,
            wake,
            shutdown,
            latencies: Vec::new(),
            saved_position: position,
            last_save: tokio::time::Instant::now(),
            stats_every,
            last_stats: (tokio::time::Instant::now(), counts.delivered),
        })
    }

    /// The durable position: every event up to it is handled.
    fn position(&self) -> i64 {
        self.pending.front().map_or(self.read_to, |e| e.id - 1)
    }

    async fn save(&mut self) {
        let (name, position, counts) = (self.name.clone(), self.position(), self.counts);
        self.saved_position = position;
        self.last_save = tokio::time::Instant::now();
        let error = self.last_error.take();
        let now = crate::now_ms();
        let result = self
            .store
            .call(move |db| {
                db.save_sink_cursor(
                    &name,
                    position,
                    counts,
                    error.as_deref().map(|e| (e, now)),
                    now,
                )
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(sink = %self.name, error = %e, "sink cursor not saved");
        }
    }

    /// The sink's statistics line, every `server.stats-interval`: deliveries per second, lag and the
    /// receive→accepted latency (milliseconds, from the event's receive time to the destination's
    /// acknowledgement).
    fn log_stats(&mut self) {
        let (since, delivered) = self.last_stats;
        let elapsed = since.elapsed();
        if elapsed < self.stats_every {
            return;
        }
        self.last_stats = (tokio::time::Instant::now(), self.counts.delivered);
        let mut l = std::mem::take(&mut self.latencies);
        l.sort_unstable();
        let at = |q: f64| l.get(((l.len().max(1) - 1) as f64 * q) as usize).copied();
        tracing::info!(
            sink = %self.name,
            delivered_per_s = ((self.counts.delivered - delivered) as f64 / elapsed.as_secs_f64()).round(),
            position = self.position(),
            pending = self.pending.len(),
            latency_p50_ms = at(0.5),
            latency_p99_ms = at(0.99),
            latency_max_ms = at(1.0),
            dead_letters = self.counts.dead_letters,
            "sink stats"
        );
    }

    /// Reads up to [`BATCH`] more events of the log into `pending` (those the rules let through).
    /// Returns how many were read, filtered ones included.
    async fn read_more(&mut self) -> Result<usize, String> {
        let query = EventQuery {
            after_id: Some(self.read_to),
            limit: Some(BATCH),
            ascending: true,
            ..EventQuery::default()
        };
        let events = self.store.call(move |db| db.events(&query)).await?;
        let read = events.len();
        self.log_has_more = read == BATCH as usize;
        if let Some(last) = events.last() {
            self.read_to = last.id;
        }
        for event in events {
            match self.rules.check(&event) {
                Ok(()) => self.pending.push_back(event),
                Err(Skip::Filtered | Skip::Duplicate | Skip::RateLimited) => {
                    self.counts.filtered += 1
                }
            }
        }
        Ok(read)
    }

    /// While a destination works through `pending`: adds what the log gained since (without waiting),
    /// so that a destination that keeps events in flight is offered new ones as soon as they commit.
    async fn top_up(&mut self) {
        let mut news = self.log_has_more;
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = self.wake.try_recv() {
            news = true;
        }
        if news && self.pending.len() < BATCH as usize {
            if let Err(e) = self.read_more().await {
                tracing::warn!(sink = %self.name, error = %e, "cannot read the event log; retrying");
            }
        }
    }

    /// Reads more of the log into `pending`, waiting for new events when caught up. `false` at shutdown.
    async fn fill(&mut self) -> bool {
        loop {
            if self.shutdown.is_cancelled() {
                return false;
            }
            match self.read_more().await {
                Ok(0) => {}
                Ok(_) if !self.pending.is_empty() => return true,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "cannot read the event log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Caught up: record where (filtered events move the position too), then wait for the next
            // commit (or poll, in case a notice was missed).
            // (At most once per SAVE_EVERY: a save is a write transaction that waits for the writer.)
            if self.position() != self.saved_position && self.last_save.elapsed() >= SAVE_EVERY {
                self.save().await;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                _ = self.wake.recv() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Counts what became of `event` at the destination; a dead letter is recorded in the store.
    async fn record(&mut self, event: &StoredEvent, outcome: &Outcome) {
        match outcome {
            Outcome::Delivered => {
                self.counts.delivered += 1;
                if self.latencies.len() < 100_000 {
                    let ms = crate::now_ms().saturating_sub(event.event.received_at);
                    self.latencies.push(ms.clamp(0, i64::from(u32::MAX)) as u32);
                }
            }
            Outcome::DeadLetter {
                attempts,
                error,
                request,
            } => {
                self.counts.dead_letters += 1;
                tracing::warn!(sink = %self.name, event = event.id, attempts, error = %error, "event dead-lettered");
                let (name, id, attempts, error, request) = (
                    self.name.clone(),
                    event.id,
                    *attempts,
                    error.clone(),
                    request.clone(),
                );
                let now = crate::now_ms();
                if let Err(e) = self
                    .store
                    .call(move |db| {
                        db.add_dead_letter(&name, id, now, attempts, &error, request.as_deref())
                    })
                    .await
                {
                    tracing::error!(sink = %self.name, error = %e, "dead letter not recorded");
                }
            }
        }
    }

    /// Delivers the log to `destination` until shutdown.
    pub(crate) async fn run(mut self, mut destination: impl Destination) {
        destination.attach(self.store.clone());
        // While the destination is down: 200 ms, doubling up to 10 s; afresh after each success.
        let outage = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times();
        let mut delays = outage.build();
        // Connect (and announce, where the destination does) before the first event.
        if let (_, Some(reason)) = destination.deliver(&[]).await {
            tracing::warn!(sink = %self.name, error = %reason, "destination unavailable at start");
            self.last_error = Some(reason);
        }
        while self.pending.is_empty() && self.fill().await || !self.pending.is_empty() {
            self.top_up().await;
            let size = destination.batch_size().min(self.pending.len());
            let batch = &self.pending.make_contiguous()[..size];
            // Destinations watch the shutdown token themselves and return what they completed, so that
            // the cursor records every acknowledged event. Fewer outcomes than events without a failure:
            // the rest is still in progress (and offered again, with what came since).
            let (outcomes, failure) = destination.deliver(batch).await;
            tracing::debug!(sink = %self.name, batch = size, handled = outcomes.len(), failure = ?failure, "delivered");
            let done: Vec<StoredEvent> = self.pending.drain(..outcomes.len().min(size)).collect();
            for (event, outcome) in done.iter().zip(&outcomes) {
                self.record(event, outcome).await;
            }
            if failure.is_some() && self.shutdown.is_cancelled() {
                break;
            }
            if let Some(reason) = failure {
                self.counts.failures += 1;
                let backoff = delays.next().unwrap_or(Duration::from_secs(10));
                tracing::warn!(sink = %self.name, error = %reason, retry_in = ?backoff, pending = self.pending.len(), "destination unavailable");
                self.last_error = Some(reason);
                self.save().await;
                tokio::select! {
                    () = self.shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
            delays = outage.build();
            self.log_stats();
            if self.last_save.elapsed() >= SAVE_EVERY {
                self.save().await;
            }
        }
        self.save().await;
        tracing::info!(sink = %self.name, position = self.position(), delivered = self.counts.delivered, "sink stopped");
    }
}

/// Starts the configured sinks; each runs until `shutdown`.
pub fn start(
    config: &SinksConfig,
    context: &Context,
    committed: &broadcast::Sender<Committed>,
    shutdown: &CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Result<(), SinkError> {
    let dir = &context.data_dir;
    let every = context.stats_interval;
    if let Some(mqtt) = config.mqtt.as_ref().filter(|m| m.enabled) {
        let runner = Runner::open(
            "mqtt",
            dir,
            mqtt.rules.clone(),
            committed.subscribe(),
            shutdown.clone(),
            every,
        )?;
        let sink = mqtt::MqttSink::new(
            Arc::new(mqtt.clone()),
            context.auto_clear.clone(),
            shutdown.clone(),
        )?;
        tasks.spawn(runner.run(sink));
    }
    for hook in config.webhook.iter().filter(|w| w.enabled) {
        let name = format!("webhook:{}", hook.name);
        let runner = Runner::open(
            &name,
            dir,
            hook.rules.clone(),
            committed.subscribe(),
            shutdown.clone(),
            every,
        )?;
        let sink = webhook::WebhookSink::new(hook.clone(), shutdown.clone())?;
        tasks.spawn(runner.run(sink));
    }
    Ok(())
}

/// Names of the enabled sinks (their cursors hold back retention).
pub fn enabled_names(config: &SinksConfig) -> Vec<String> {
    let mut names = Vec::new();
    if config.mqtt.as_ref().is_some_and(|m| m.enabled) {
        names.push("mqtt".to_owned());
    }
    names.extend(
        config
            .webhook
            .iter()
            .filter(|w| w.enabled)
            .map(|w| format!("webhook:{}", w.name)),
    );
    names
}

#[cfg(test)]
mod runner_tests;
