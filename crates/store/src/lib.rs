//! The embedded store: an append-only event log, the device table, connection history and the raw frame
//! archive, in one SQLite database (WAL, one writer). Synchronous on purpose: the server runs it on its
//! own writer thread and batches many records into one transaction.
#![forbid(unsafe_code)]

mod device_index;
mod model;
mod query;
mod retention;
mod schema;
mod sinks;
mod write;

use std::path::{Path, PathBuf};

pub use model::{EventAction, EventKind, FrameRef, Synthetic};
pub use query::{ConnectionRow, DeviceRow, EventQuery, FrameQuery, StoredEvent, StoredFrame};
pub use retention::{
    Retention, RetentionReport, SizeUnmet, SIZE_KEEPS_DEAD_LETTERS, SIZE_KEEPS_EVENTS,
    SIZE_KEEPS_FRAMES, SIZE_LOW_WATER_PERCENT,
};
pub use sinks::{DeadLetter, EventKey, SinkCounts, SinkCursor};

/// The events of one commit, in log order, as the writer publishes them after committing: what wakes
/// the sinks and the API's live stream up. A receiver that lags loses messages, never events: the log
/// holds them.
pub type Committed = std::sync::Arc<Vec<StoredEvent>>;
pub use write::{
    Batch, ConnectionClose, ConnectionIdentified, ConnectionOpen, DeviceRemoval, DeviceUpdate,
    NewEvent, NewFrame, WriteResult,
};

/// The tables that hold the log's rows: ids grow with receive time, retention bounds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `events`: the event log.
    Events,
    /// `frames`: the raw frame archive.
    Frames,
    /// `dead_letters`: events a sink gave up on.
    DeadLetters,
}

impl Table {
    /// The SQL name (SQL text is built only from these, never from a caller's string).
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Frames => "frames",
            Table::DeadLetters => "dead_letters",
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a device is online, as supervision last decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Frames arrive within the keep-alive period plus grace.
    Online,
    /// Silent past it, or identified as another device.
    Offline,
}

impl DeviceState {
    /// The stored and shown name: `online` or `offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Offline => "offline",
        }
    }
}

impl std::fmt::Display for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl rusqlite::types::ToSql for DeviceState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

impl rusqlite::types::FromSql for DeviceState {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value.as_str()? {
            "online" => Ok(DeviceState::Online),
            "offline" => Ok(DeviceState::Offline),
            other => Err(rusqlite::types::FromSqlError::Other(
                format!("unknown device state {other:?}").into(),
            )),
        }
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    /// (Shown in the message, not chained: an error chain would print it twice.)
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {cause}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why (shown in the message, not chained: an error chain would print it twice).
        cause: std::io::Error,
    },
    /// The database was written by a newer version of alarm-center.
    #[error("database schema version {found} is newer than this program understands ({known})")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// Creating or upgrading the schema failed other than in SQLite (`rusqlite_migration`'s error: an
    /// invalid `PRAGMA user_version`, for one).
    #[error("cannot migrate the database schema: {0}")]
    Migration(String),
    /// A page size SQLite does not accept.
    #[error("page size {0} is not a power of two from 512 to 65536 bytes")]
    PageSize(u32),
    /// A read-only open found a schema older than this build's (the server upgrades it at start).
    #[error("database schema version {found} is older than this program's ({known}): start `alarm-center serve` once to upgrade it")]
    SchemaTooOld {
        /// Version in the file.
        found: i64,
        /// The version this build writes.
        known: i64,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// WAL with `synchronous=NORMAL`: a committed transaction survives the process being killed
    /// (`kill -9`); the last ones may be lost on power loss. The database is never corrupted.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before it is acknowledged (slower).
    Full,
}

/// The database file name inside the data directory.
pub const DB_FILE: &str = "alarm-center.db";

/// Page size of a new store, bytes (D67): at high rates a page of 16 KiB writes the same rows with a
/// quarter of the write-ahead log's `pwrite`s and the checkpoint's copies of 4 KiB pages (SQLite's
/// default). An existing store keeps the size it was created with.
pub const DEFAULT_PAGE_SIZE: u32 = 16 * 1024;

/// Whether SQLite accepts `bytes` as a page size: a power of two from 512 to 65,536.
pub fn valid_page_size(bytes: u32) -> bool {
    (512..=65_536).contains(&bytes) && bytes.is_power_of_two()
}

/// An open database.
pub struct Db {
    conn: rusqlite::Connection,
    path: PathBuf,
    /// How far the per-device index goes (the writing connection only).
    indexed: Option<device_index::Indexed>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating if needed, with pages of [`DEFAULT_PAGE_SIZE`]) the database in `data_dir` for
    /// writing, and migrates its schema.
    pub fn open(data_dir: &Path, sync: SyncMode) -> Result<Db> {
        Db::open_with_page_size(data_dir, sync, DEFAULT_PAGE_SIZE)
    }

    /// [`Db::open`], creating a new database with pages of `page_size` bytes (a power of two from 512
    /// to 65,536; see [`valid_page_size`]). An existing database keeps its own page size (changing it
    /// takes a `VACUUM` outside the write-ahead log mode): [`Db::page_size`] tells which it has.
    pub fn open_with_page_size(data_dir: &Path, sync: SyncMode, page_size: u32) -> Result<Db> {
        if !valid_page_size(page_size) {
            return Err(StoreError::PageSize(page_size));
        }
        std::fs::create_dir_all(data_dir).map_err(|cause| StoreError::DataDir {
            path: data_dir.to_owned(),
            cause,
        })?;
        let path = data_dir.join(DB_FILE);
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Before anything is written: a database with pages already has its size, and SQLite
        // ignores the pragma then.
        conn.pragma_update(None, "page_size", page_size)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "cache_size", -32_000)?; // KiB
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The writer alone keeps 12 insert statements (frames and events, 32 down to 1 rows each)
        // besides its updates, the device index's and the sinks' and the API's queries: rusqlite's
        // default of 16 would evict and prepare them again on every commit.
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn)?;
        let indexed = Some(device_index::Indexed::load(&conn)?);
        Ok(Db {
            conn,
            path,
            indexed,
        })
    }

    /// Opens an existing database read-only (queries while the server runs: WAL allows it).
    pub fn open_read_only(data_dir: &Path) -> Result<Db> {
        let path = data_dir.join(DB_FILE);
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::check_current(&conn)?;
        Ok(Db {
            conn,
            path,
            indexed: None,
        })
    }

    /// Checks the structure of the database in `data_dir` (`PRAGMA quick_check`: every page and
    /// b-tree, without comparing indexes to tables), before anything else opens it. `Ok(None)` when it
    /// is sound or does not exist yet; otherwise the first problems found (at most 20 lines).
    pub fn quick_check(data_dir: &Path) -> Result<Option<String>> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        // Read-write without create: a WAL database needs its shared-memory file.
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let checked = rusqlite::Connection::open_with_flags(&path, flags).and_then(|conn| {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let mut stmt = conn.prepare("PRAGMA quick_check(20)")?;
            let lines = stmt.query_map([], |r| r.get::<_, String>(0))?;
            lines.collect::<rusqlite::Result<Vec<_>>>()
        });
        match checked {
            Ok(lines) => Ok((lines != ["ok"]).then(|| lines.join("\n"))),
            // Damage bad enough that the check itself cannot read the file is its answer too.
            Err(rusqlite::Error::SqliteFailure(e, message))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                Ok(Some(message.unwrap_or_else(|| e.to_string())))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stops this connection from checkpointing the write-ahead log itself (a commit that triggers a
    /// checkpoint waits for it, which shows as latency spikes); [`Db::checkpoint`] must then be called
    /// from another connection.
    pub fn disable_auto_checkpoint(&self) -> Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // Keep the WAL file from growing without bound on disk once checkpointed.
        self.conn
            .pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        // Set after the pragma, which replaces the hook: each commit's `WriteResult::log_pages`.
        self.conn.wal_hook(Some(write::note_log_pages));
        Ok(())
    }

    /// Copies committed pages from the write-ahead log into the database without blocking the writer
    /// (`PRAGMA wal_checkpoint(PASSIVE)`). Returns (pages in the log, pages checkpointed).
    pub fn checkpoint(&self) -> Result<(i64, i64)> {
        Ok(self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?)
    }

    /// Checkpoints the whole write-ahead log and truncates its file to zero bytes
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), giving its disk space back. Waits for readers (up to the
    /// busy timeout, 5 s); returns false when some still held an old snapshot and the log stayed.
    pub fn checkpoint_truncate(&self) -> Result<bool> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// The size of the database's pages, bytes (the write-ahead log's frames hold one page each).
    pub fn page_size(&self) -> Result<u32> {
        Ok(self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The write-ahead log file next to the database (`<file>-wal`).
    pub fn wal_path(&self) -> PathBuf {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        PathBuf::from(wal)
    }

    /// Checks the database file's integrity (`PRAGMA integrity_check`); `Ok(None)` when it is sound.
    pub fn integrity_problem(&self) -> Result<Option<String>> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok((result != "ok").then_some(result))
    }

    /// The largest connection id stored (new ids continue after it).
    pub fn max_connection_id(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM connections", [], |r| {
                r.get(0)
            })?)
    }
}

/// Bytes available to this process on the file system holding `dir` (`statvfs`: free blocks for
/// unprivileged users × fragment size).
pub fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Milliseconds since the Unix epoch → RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| ms.to_string())
}
