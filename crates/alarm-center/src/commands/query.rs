//! `alarm-center events`, `devices` and `sinks`: read the store, beside a running server or not.

use std::io::Write;
use std::time::Duration;

use alarm_center_store::{Db, EventQuery, StoredEvent};
use anyhow::{bail, Result};
use clap::Args;

use super::serve::ConfigArgs;

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only this device id.
    #[arg(long)]
    device: Option<String>,
    /// Only this event code (e.g. VideoMotion).
    #[arg(long)]
    code: Option<String>,
    /// Only this action: start, stop, pulse, state, …
    #[arg(long)]
    action: Option<String>,
    /// Only this kind: alarm, device, …
    #[arg(long)]
    kind: Option<String>,
    /// Only events received since: a duration ago (`10m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only events received until: a duration ago (`10m`) or an RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// At most this many, newest first (with --follow: the last ones, then every new one).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Keep printing new events as the server stores them, oldest first, until Ctrl-C (reads the
    /// store twice a second).
    #[arg(long, short = 'f', conflicts_with = "until")]
    follow: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

fn instant(flag: &str, text: Option<&str>, now: i64) -> Result<Option<i64>> {
    text.map(|t| alarm_center_api::parse_instant(t, now))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--{flag} {e}"))
}

fn open_store(config: &ConfigArgs) -> Result<Db> {
    let config = config.load()?;
    let dir = &config.store.data_dir;
    if !dir.join(alarm_center_store::DB_FILE).exists() {
        bail!(
            "no store in {} (start `alarm-center serve` first, or pass --data-dir)",
            dir.display()
        );
    }
    Ok(Db::open_read_only(dir)?)
}

/// Columns padded to their widest cell (the last one is not padded); `right` columns align right.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    widths: Vec<usize>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            widths: columns.iter().map(|c| c.0.chars().count()).collect(),
        }
    }

    fn fit(&mut self, rows: &[Vec<String>]) {
        for row in rows {
            for (width, cell) in self.widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }

    fn line(&self, out: &mut impl Write, cells: &[String]) -> std::io::Result<()> {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (n, cell) in cells.iter().enumerate() {
            let width = self.widths[n];
            match (n == last, self.right[n]) {
                (true, _) => text.push_str(cell),
                (false, true) => text.push_str(&format!("{cell:>width$}  ")),
                (false, false) => text.push_str(&format!("{cell:<width$}  ")),
            }
        }
        writeln!(out, "{}", text.trim_end())
    }

    fn header(&self, out: &mut impl Write) -> std::io::Result<()> {
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        self.line(out, &headers)
    }

    fn print(mut self, out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<Table> {
        self.fit(rows);
        self.header(out)?;
        for row in rows {
            self.line(out, row)?;
        }
        Ok(self)
    }
}

fn event_row(e: &StoredEvent) -> Vec<String> {
    let channel = match (e.event.channel, &e.event.channel_name) {
        (Some(c), Some(name)) => format!("{c} ({name})"),
        (Some(c), None) => c.to_string(),
        (None, _) => "-".to_owned(),
    };
    let synthetic = e
        .event
        .synthetic
        .as_deref()
        .map(|s| format!(" (synthetic: {s})"))
        .unwrap_or_default();
    vec![
        e.id.to_string(),
        e.received_at(),
        e.event.device.clone(),
        e.event.code.clone(),
        e.event.action.to_string(),
        channel,
        format!(
            "{}{synthetic}",
            e.event.device_time.as_deref().unwrap_or("-")
        ),
    ]
}

const EVENT_COLUMNS: [(&str, bool); 7] = [
    ("ID", true),
    ("RECEIVED", false),
    ("DEVICE", false),
    ("CODE", false),
    ("ACTION", false),
    ("CH", true),
    ("DEVICE TIME", false),
];

pub(crate) fn events(args: &EventsArgs) -> Result<()> {
    let db = open_store(&args.config)?;
    let now = alarm_center_server::time::now_ms();
    let mut query = EventQuery {
        device: args.device.clone(),
        code: args.code.clone(),
        action: args.action.clone(),
        kind: args.kind.clone(),
        since: instant("since", args.since.as_deref(), now)?,
        until: instant("until", args.until.as_deref(), now)?,
        limit: Some(args.limit),
        ..EventQuery::default()
    };
    let mut events = db.events(&query)?;
    if args.follow {
        // Oldest first, so that new events follow below.
        events.reverse();
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
    let table = match args.json {
        true => {
            for e in &events {
                serde_json::to_writer(&mut out, e)?;
                writeln!(out)?;
            }
            None
        }
        false => Some(Table::new(&EVENT_COLUMNS).print(&mut out, &rows)?),
    };
    out.flush()?;
    if !args.follow {
        return Ok(());
    }
    let mut last = match events.last() {
        Some(e) => e.id,
        None => db.last_event_id()?,
    };
    query.limit = Some(1000);
    query.ascending = true;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        query.after_id = Some(last);
        let new = db.events(&query)?;
        for e in &new {
            match &table {
                Some(table) => table.line(&mut out, &event_row(e))?,
                None => {
                    serde_json::to_writer(&mut out, e)?;
                    writeln!(out)?;
                }
            }
            last = e.id;
        }
        out.flush()?;
    }
}

#[derive(Debug, Args)]
pub(crate) struct DevicesArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn devices(args: &DevicesArgs) -> Result<()> {
    let db = open_store(&args.config)?;
    let devices = db.devices()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        for d in &devices {
            serde_json::to_writer(&mut out, d)?;
            writeln!(out)?;
        }
    } else {
        let rows: Vec<Vec<String>> = devices
            .iter()
            .map(|d| {
                let identity = [
                    ("serial", &d.serial),
                    ("mac", &d.mac),
                    ("domain", &d.domain),
                    ("ip", &d.ip),
                ]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(" ");
                vec![
                    d.name
                        .as_ref()
                        .map_or(d.id.clone(), |n| format!("{} ({n})", d.id)),
                    d.state.to_string(),
                    d.last_seen.clone(),
                    d.peer.clone().unwrap_or_else(|| "-".into()),
                    d.protocol.clone().unwrap_or_else(|| "-".into()),
                    identity,
                ]
            })
            .collect();
        Table::new(&[
            ("DEVICE", false),
            ("STATE", false),
            ("LAST SEEN", false),
            ("PEER", false),
            ("PROTO", false),
            ("IDENTITY", false),
        ])
        .print(&mut out, &rows)?;
    }
    out.flush()?;
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct SinksArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// Each sink's cursor, lag (events in the log after it), counters and last error.
pub(crate) fn sinks(args: &SinksArgs) -> Result<()> {
    let db = open_store(&args.config)?;
    let last = db.last_event_id()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let cursors = db.sink_cursors()?;
    if args.json {
        for c in &cursors {
            let mut value = serde_json::to_value(c)?;
            value["lag"] = serde_json::json!(last - c.position);
            serde_json::to_writer(&mut out, &value)?;
            writeln!(out)?;
        }
    } else {
        let rows: Vec<Vec<String>> = cursors
            .iter()
            .map(|c| {
                vec![
                    c.sink.clone(),
                    c.position.to_string(),
                    (last - c.position).to_string(),
                    c.delivered.to_string(),
                    c.filtered.to_string(),
                    c.dead_letters.to_string(),
                    c.failures.to_string(),
                    c.updated_at.clone(),
                    c.last_error.as_deref().map_or("-".to_owned(), |e| {
                        format!("{e} ({})", c.last_error_at.as_deref().unwrap_or("?"))
                    }),
                ]
            })
            .collect();
        Table::new(&[
            ("SINK", false),
            ("POSITION", true),
            ("LAG", true),
            ("DELIVERED", true),
            ("FILTERED", true),
            ("DEAD", true),
            ("FAILURES", true),
            ("SAVED", false),
            ("LAST ERROR", false),
        ])
        .print(&mut out, &rows)?;
        if cursors.is_empty() {
            writeln!(
                out,
                "(no sink has run yet: configure [sinks.mqtt] or [[sinks.webhook]])"
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let rows = vec![
            vec![
                "1".to_owned(),
                "a-very-long-device-id@203.0.113.7".to_owned(),
                "x".to_owned(),
            ],
            vec!["1000".to_owned(), "short".to_owned(), "y".to_owned()],
        ];
        let mut out = Vec::new();
        Table::new(&[("ID", true), ("DEVICE", false), ("LAST", false)])
            .print(&mut out, &rows)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  ID  DEVICE                             LAST");
        assert_eq!(lines[1], "   1  a-very-long-device-id@203.0.113.7  x");
        assert_eq!(lines[2], "1000  short                              y");
    }
}
