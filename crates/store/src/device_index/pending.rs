//! The events written since the last addition to `device_events`, kept by device in the writer's
//! memory, so that an addition inserts them without reading the events back and can go in steps of a
//! few thousand rows, each its own transaction, in key order (decision D68).

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Transaction;

use crate::Result;

/// Most events kept in memory: past this (additions failing for a long while) the writer forgets
/// them and the next addition reads them back from the events table instead, so memory stays
/// bounded (about 40 bytes an event).
pub(super) const MAX_KEPT: usize = 262_144;

/// Event ids by device, each list ascending (events are recorded in id order). A device stays in the
/// map, its list emptied, from one addition to the next (no allocation for its name each time), and
/// goes if it sent nothing in between. The hash is foldhash's, seeded at random per map (device
/// names come from the network).
#[derive(Debug, Default)]
pub(super) struct Pending {
    by_device: HashMap<Arc<str>, Vec<i64>, foldhash::fast::RandomState>,
    len: usize,
}

impl Pending {
    /// Events kept.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Keeps event `id` of `device`; ids must come in ascending order.
    pub(super) fn push(&mut self, device: &str, id: i64) {
        match self.by_device.get_mut(device) {
            Some(ids) => ids.push(id),
            None => {
                self.by_device.insert(device.into(), vec![id]);
            }
        }
        self.len += 1;
    }

    /// Forgets every event kept.
    pub(super) fn clear(&mut self) {
        self.by_device.clear();
        self.len = 0;
    }

    /// Takes the events kept, as an addition in the order of `device_events`' key.
    pub(super) fn take(&mut self, until: i64) -> Adding {
        let mut devices: Vec<(Arc<str>, Vec<i64>)> = Vec::with_capacity(self.by_device.len());
        self.by_device.retain(|device, ids| {
            if ids.is_empty() {
                return false;
            }
            // As many as last time, allocated at once.
            let room = Vec::with_capacity(ids.len());
            devices.push((device.clone(), std::mem::replace(ids, room)));
            true
        });
        // `device_events` compares text bytewise (BINARY), as `str`'s `Ord` does.
        devices.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.len = 0;
        Adding {
            devices,
            next: (0, 0),
            until,
        }
    }
}

/// An addition under way: the rows of every event up to `until` (and after `device_index.upto`),
/// inserted a step at a time.
#[derive(Debug)]
pub(super) struct Adding {
    /// Devices in key order, each with its event ids, ascending.
    devices: Vec<(Arc<str>, Vec<i64>)>,
    /// The first row not inserted yet: (device, position in its ids).
    next: (usize, usize),
    /// `device_index.upto` once every row is in.
    pub(super) until: i64,
}

impl Adding {
    /// Inserts the next rows, at most `budget` of them, in `tx`; returns where the addition will
    /// stand once `tx` commits ([`Adding::advance`]) and whether every row is then in.
    pub(super) fn insert_step(
        &self,
        tx: &Transaction<'_>,
        budget: usize,
    ) -> Result<((usize, usize), bool)> {
        let (mut device, mut at) = self.next;
        let mut left = budget.max(1);
        let mut mixed = Vec::with_capacity(MIXED.sizes[0]);
        while left > 0 {
            let Some((name, ids)) = self.devices.get(device) else {
                break;
            };
            let take = (ids.len() - at).min(left);
            let run = &ids[at..at + take];
            // A device's rows in statements of its own while they fill them; the rest, with other
            // devices' rests, in statements of pairs.
            let own = run.len() / SAME_DEVICE_MIN * SAME_DEVICE_MIN;
            insert_same_device(tx, name, &run[..own])?;
            for &id in &run[own..] {
                mixed.push((&**name, id));
                if mixed.len() == MIXED.sizes[0] {
                    insert_mixed(tx, &mixed)?;
                    mixed.clear();
                }
            }
            left -= take;
            at += take;
            if at == ids.len() {
                device += 1;
                at = 0;
            }
        }
        insert_mixed(tx, &mixed)?;
        Ok(((device, at), device == self.devices.len()))
    }

    /// Moves on to `next`, as returned by [`Adding::insert_step`] for a step that committed.
    pub(super) fn advance(&mut self, next: (usize, usize)) {
        self.next = next;
    }
}

/// Multi-row `INSERT` statements of `device_events`, largest first (the statement cache is looked up
/// by text, so the texts are made once).
struct Statements {
    /// Rows of each statement.
    sizes: Vec<usize>,
    /// `INSERT OR IGNORE INTO device_events (device, id) VALUES …` with that many rows.
    sql: Vec<String>,
}

impl Statements {
    /// Statements of `sizes` rows, each row's parameters written by `row(i)` for row `i`.
    fn new(sizes: &[usize], row: impl Fn(usize) -> String) -> Statements {
        let sql = sizes
            .iter()
            .map(|&n| {
                let rows: Vec<String> = (0..n).map(&row).collect();
                format!(
                    "INSERT OR IGNORE INTO device_events (device, id) VALUES {}",
                    rows.join(", ")
                )
            })
            .collect();
        Statements {
            sizes: sizes.to_vec(),
            sql,
        }
    }
}

/// Rows of one device take statements of their own in multiples of this; fewer go with other
/// devices' rows. Each statement costs about as much as twenty rows to start and end, a row of pairs
/// about 340 instructions more than one with the device bound once (SQLite copies each text bound).
const SAME_DEVICE_MIN: usize = 16;

/// One device's rows: `(?1, ?2), (?1, ?3), …`, the device bound once.
static SAME_DEVICE: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| {
    Statements::new(&[32, SAME_DEVICE_MIN], |i| format!("(?1, ?{})", i + 2))
});

/// Rows of several devices: `(?1, ?2), (?3, ?4), …`.
static MIXED: std::sync::LazyLock<Statements> = std::sync::LazyLock::new(|| {
    Statements::new(&[32, 16, 8, 4, 2, 1], |i| {
        format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2)
    })
});

/// Inserts the rows of `device`'s events `ids` (a multiple of [`SAME_DEVICE_MIN`]).
fn insert_same_device(tx: &Transaction<'_>, device: &str, ids: &[i64]) -> Result<()> {
    let mut rest = ids;
    for (&size, sql) in SAME_DEVICE.sizes.iter().zip(&SAME_DEVICE.sql) {
        if rest.len() < size {
            continue;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        stmt.raw_bind_parameter(1, device)?;
        while rest.len() >= size {
            let (chunk, after) = rest.split_at(size);
            for (i, id) in chunk.iter().enumerate() {
                stmt.raw_bind_parameter(i + 2, id)?;
            }
            stmt.raw_execute()?;
            rest = after;
        }
    }
    debug_assert!(rest.is_empty(), "{} rows left", rest.len());
    Ok(())
}

/// Inserts `rows`, (device, event id) pairs.
fn insert_mixed(tx: &Transaction<'_>, rows: &[(&str, i64)]) -> Result<()> {
    let mut rest = rows;
    for (&size, sql) in MIXED.sizes.iter().zip(&MIXED.sql) {
        if rest.len() < size {
            continue;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        while rest.len() >= size {
            let (chunk, after) = rest.split_at(size);
            for (i, (device, id)) in chunk.iter().enumerate() {
                stmt.raw_bind_parameter(2 * i + 1, device)?;
                stmt.raw_bind_parameter(2 * i + 2, id)?;
            }
            stmt.raw_execute()?;
            rest = after;
        }
    }
    Ok(())
}
