//! The events written since the last addition to `device_events`, kept by device in the writer's
//! memory, so that an addition inserts them without reading the events back and can go in steps of a
//! few thousand rows, each its own transaction, in key order (decision D68).

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rusqlite::Transaction;
use smallvec::SmallVec;

use crate::write::{execute_rows, MultiInsert, ROWS_PER_INSERT};
use crate::Result;

/// Most bytes the writer's memory of events may take, the addition under way included, as
/// [`Pending::bytes`] and [`Adding::bytes`] estimate them: past it (additions failing for a long while,
/// or a flood of new device names) the writer forgets the events kept and the next addition reads
/// them back from the events table instead. An addition of 65,536 events from 100 devices takes
/// about 0.5 MiB.
pub(super) const MAX_BYTES: usize = 32 << 20;

/// What one slot of the map's table costs: the name and the ids (56 bytes) and a control byte.
const SLOT_BYTES: usize = 57;

/// Bytes of a name kept inside the key.
const INLINE: usize = 22;

/// A device's name as the map's key: up to [`INLINE`] bytes inside the key itself (Dahua's serial
/// numbers have 15 characters), so that a lookup compares it without following a pointer, which with
/// thousands of devices is a cache miss per event; longer names on the heap. Hashed, compared and
/// ordered as its bytes: the order is `str`'s, and SQLite's `BINARY` collation of `device_events`.
#[derive(Clone, Debug)]
enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Arc<str>),
}

impl Name {
    fn new(name: &str) -> Name {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Name::Inline { len, bytes }
            }
            _ => Name::Heap(name.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(name) => name.as_bytes(),
        }
    }

    /// The name as text (always borrowed: it was made from a `str`).
    fn as_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    /// Bytes on the heap.
    fn heap_bytes(&self) -> usize {
        match self {
            Name::Inline { .. } => 0,
            // The text and the `Arc`'s two counts.
            Name::Heap(name) => name.len() + 16,
        }
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `[u8]` it borrows as, so that a lookup by bytes finds it.
        self.as_bytes().hash(state);
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A device's event ids, ascending: the first two inside the map's slot (with thousands of devices
/// most have one or two per addition), more on the heap.
type Ids = SmallVec<[i64; 2]>;

/// Bytes of `ids` on the heap.
fn heap_bytes(ids: &Ids) -> usize {
    if ids.spilled() {
        ids.capacity() * size_of::<i64>()
    } else {
        0
    }
}

/// Event ids by device. A device stays in the map, its ids emptied, from one addition to the next,
/// and goes if it sent nothing in between. The map has std's hash (SipHash, keyed at random): device
/// names come from the network.
#[derive(Debug, Default)]
pub(super) struct Pending {
    by_device: HashMap<Name, Ids>,
    /// The heap memory of the names and ids in the map (not its table).
    bytes: usize,
}

impl Pending {
    /// Events kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_device.values().map(|ids| ids.len()).sum()
    }

    /// The memory the map takes, estimated: names, ids and table.
    pub(super) fn bytes(&self) -> usize {
        self.bytes + self.by_device.capacity() * SLOT_BYTES
    }

    /// Keeps event `id` of `device`; ids must come in ascending order.
    pub(super) fn push(&mut self, device: &str, id: i64) {
        match self.by_device.get_mut(device.as_bytes()) {
            Some(ids) => {
                let before = heap_bytes(ids);
                ids.push(id);
                self.bytes += heap_bytes(ids) - before;
            }
            None => {
                let name = Name::new(device);
                self.bytes += name.heap_bytes();
                self.by_device.insert(name, smallvec::smallvec![id]);
            }
        }
    }

    /// Forgets every event kept, and gives the map's memory back.
    pub(super) fn clear(&mut self) {
        self.by_device = HashMap::default();
        self.bytes = 0;
    }

    /// Takes the events kept, as an addition in the order of `device_events`' key.
    pub(super) fn take(&mut self, until: i64) -> Adding {
        let mut devices: Vec<(Name, Ids)> = Vec::with_capacity(self.by_device.len());
        let mut kept_bytes = 0;
        let mut taken_bytes = 0;
        self.by_device.retain(|device, ids| {
            if ids.is_empty() {
                return false;
            }
            // As many as last time, allocated at once.
            let room = Ids::with_capacity(ids.len());
            kept_bytes += device.heap_bytes() + heap_bytes(&room);
            taken_bytes += heap_bytes(ids);
            devices.push((device.clone(), std::mem::replace(ids, room)));
            true
        });
        // After a burst of devices heard once, the table shrinks again.
        if self.by_device.capacity() > 4 * self.by_device.len() + 1024 {
            self.by_device.shrink_to_fit();
        }
        devices.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.bytes = kept_bytes;
        Adding {
            bytes: taken_bytes + devices.capacity() * size_of::<(Name, Ids)>(),
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
    devices: Vec<(Name, Ids)>,
    /// The first row not inserted yet: (device, position in its ids).
    next: (usize, usize),
    /// `device_index.upto` once every row is in.
    pub(super) until: i64,
    /// The memory it takes, estimated (long names are shared with [`Pending`]).
    pub(super) bytes: usize,
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
        let mut mixed = Vec::with_capacity(ROWS_PER_INSERT);
        while left > 0 {
            let Some((name, ids)) = self.devices.get(device) else {
                break;
            };
            let name = name.as_str();
            let take = (ids.len() - at).min(left);
            let run = &ids[at..at + take];
            // A device's rows in statements of its own while they fill them; the rest, with other
            // devices' rests, in statements of pairs.
            let own = run.len() / SAME_DEVICE_MIN * SAME_DEVICE_MIN;
            insert_same_device(tx, &name, &run[..own])?;
            for &id in &run[own..] {
                mixed.push((name.clone(), id));
                if mixed.len() == ROWS_PER_INSERT {
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

/// Rows of one device take statements of their own in multiples of this; fewer go with other
/// devices' rows. Each statement costs about as much as twenty rows to start and end, a row of pairs
/// about 340 instructions more than one with the device bound once (SQLite copies each text bound).
const SAME_DEVICE_MIN: usize = 16;

/// One device's rows, `(rows, SQL)` largest first: `(?1, ?2), (?1, ?3), …`, the device bound once
/// (the statement cache is looked up by text, so the texts are made once).
static SAME_DEVICE: std::sync::LazyLock<Vec<(usize, String)>> = std::sync::LazyLock::new(|| {
    [2 * SAME_DEVICE_MIN, SAME_DEVICE_MIN]
        .into_iter()
        .map(|n| {
            let rows: Vec<String> = (0..n).map(|i| format!("(?1, ?{})", i + 2)).collect();
            let sql = format!(
                "INSERT OR IGNORE INTO device_events (device, id) VALUES {}",
                rows.join(", ")
            );
            (n, sql)
        })
        .collect()
});

/// Rows of several devices, (device, id) pairs, in the store's multi-row statements.
static MIXED: std::sync::LazyLock<MultiInsert> = std::sync::LazyLock::new(|| {
    MultiInsert::new("INSERT OR IGNORE INTO device_events (device, id)", 2)
});

/// Inserts the rows of `device`'s events `ids` (a multiple of [`SAME_DEVICE_MIN`]).
fn insert_same_device(tx: &Transaction<'_>, device: &str, ids: &[i64]) -> Result<()> {
    let mut rest = ids;
    for (size, sql) in SAME_DEVICE.iter() {
        if rest.len() < *size {
            continue;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        stmt.raw_bind_parameter(1, device)?;
        while rest.len() >= *size {
            let (chunk, after) = rest.split_at(*size);
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
fn insert_mixed(tx: &Transaction<'_>, rows: &[(Cow<'_, str>, i64)]) -> Result<()> {
    execute_rows(
        tx,
        &MIXED,
        rows,
        |stmt, at, (device, id)| {
            stmt.raw_bind_parameter(at, &**device)?;
            stmt.raw_bind_parameter(at + 1, id)
        },
        |_, _| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_the_key_and_on_the_heap_compare_and_sort_as_their_text() {
        let texts: Vec<String> = (0..=30)
            .flat_map(|n| {
                [
                    format!("{:z<n$}", ""),
                    format!("{:a<n$}", ""),
                    format!("é{:m<n$}", ""),
                ]
            })
            .collect();
        let mut names: Vec<Name> = texts.iter().map(|t| Name::new(t)).collect();
        names.sort();
        let mut sorted = texts.clone();
        sorted.sort();
        let back: Vec<String> = names.iter().map(|n| n.as_str().into_owned()).collect();
        assert_eq!(back, sorted);
        assert!(matches!(
            Name::new(&"x".repeat(INLINE)),
            Name::Inline { .. }
        ));
        assert!(matches!(Name::new(&"x".repeat(INLINE + 1)), Name::Heap(_)));

        let mut pending = Pending::default();
        let twice: Vec<&String> = texts.iter().chain(&texts).collect();
        for (id, text) in twice.iter().enumerate() {
            pending.push(text, id as i64);
        }
        let got: Vec<(String, Vec<i64>)> = pending
            .take(0)
            .devices
            .iter()
            .map(|(n, ids)| (n.as_str().into_owned(), ids.to_vec()))
            .collect();
        // One device per text (the three empty texts are one), its ids those it was pushed with.
        sorted.dedup();
        let want: Vec<(String, Vec<i64>)> = sorted
            .iter()
            .map(|t| {
                let ids = (0..twice.len()).filter(|&i| twice[i] == t);
                (t.clone(), ids.map(|i| i as i64).collect())
            })
            .collect();
        assert_eq!(got, want);
    }
}
