//! The fields of a log line in the text tracing-subscriber's `DefaultFields` writes, without its
//! styling machinery: `DefaultVisitor` writes each field with a three-argument `write!` (name, `=`,
//! value, through no-op colour wrappers) and the message through a writer that escapes terminal
//! controls character by character, about 1,000 to 1,500 instructions a field; with a camera that
//! connects for each alarm, two lines of two to seven fields per alarm (docs/benchmarks.md §22).
//! Here integers, booleans and strings that `{:?}` writes as themselves are written directly, other
//! values with one `{:?}`, the message through the same escapes with a fast path for text that has
//! none. Errors, strings that need escaping, `r#` names and the `log.` fields of the `log` crate's
//! records go to tracing-subscriber's own `DefaultVisitor`; so does everything when colours are on.
//! A test compares the text with `DefaultFields`' byte for byte.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;

/// The log lines' field formatter (`tracing_subscriber::fmt().fmt_fields(LogFields)`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogFields;

impl<'writer> FormatFields<'writer> for LogFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        // With colours (never in the server's log, D26), names are painted: tracing-subscriber's.
        if writer.has_ansi_escapes() {
            return tracing_subscriber::fmt::format::DefaultFields::new()
                .format_fields(writer, fields);
        }
        let mut visitor = Visitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes fields as `DefaultVisitor` does: separated by one space, `name=value`, the message first
/// without its name (as the macros record it).
struct Visitor<'writer> {
    writer: Writer<'writer>,
    /// Nothing written yet (no space before the next field).
    is_empty: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// The field's name when this visitor writes it itself: not the message (written with ANSI
    /// escapes sanitised), not a raw identifier (`r#type`, written without `r#`), not the `log.`
    /// metadata of a record from the `log` crate (skipped).
    fn own_name(field: &Field) -> Option<&'static str> {
        let name = field.name();
        (name != "message" && !name.starts_with("r#") && !name.starts_with("log.")).then_some(name)
    }

    /// Writes one field with `write` after a space when fields came before (unless writing failed).
    fn field(&mut self, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let first = std::mem::replace(&mut self.is_empty, false);
        let mut writer = self.writer.by_ref();
        self.result = if first {
            Ok(())
        } else {
            writer.write_char(' ')
        }
        .and_then(|()| write(&mut writer));
    }

    /// Writes `name=` and `value`.
    fn write(&mut self, name: &str, value: &str) {
        self.field(|w| {
            w.write_str(name)?;
            w.write_char('=')?;
            w.write_str(value)
        });
    }

    /// Hands the field to tracing-subscriber's visitor, which writes it (after a space when fields
    /// came before), or skips it (`log.` metadata).
    fn delegate(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = tracing_subscriber::field::VisitOutput::finish(visitor);
        if !field.name().starts_with("log.") {
            self.is_empty = false;
        }
    }
}

/// The message's writer: escapes what tracing-subscriber's `EscapeGuard` escapes (terminal controls
/// ESC, BEL, BS, FF, DEL and the C1 controls), the same way; text without any goes in one piece.
struct Sanitizing<'a, 'writer>(&'a mut Writer<'writer>);

impl fmt::Write for Sanitizing<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // C1 controls are not ASCII: ASCII without the five is written as it is.
        if s.bytes()
            .all(|b| b.is_ascii() && !matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f))
        {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                c if ('\u{80}'..='\u{9f}').contains(&c) => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Whether `{:?}` writes `value` as itself in quotes: printable ASCII without quote or backslash.
fn debug_is_plain(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for Visitor<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        match Self::own_name(field) {
            Some(name) => self.write(name, itoa::Buffer::new().format(value)),
            None => self.delegate(field, |v| v.record_i64(field, value)),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match Self::own_name(field) {
            Some(name) => self.write(name, itoa::Buffer::new().format(value)),
            None => self.delegate(field, |v| v.record_u64(field, value)),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        match Self::own_name(field) {
            Some(name) => self.write(name, if value { "true" } else { "false" }),
            None => self.delegate(field, |v| v.record_bool(field, value)),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            // As `DefaultVisitor::record_str` hands it on.
            return self.record_debug(field, &format_args!("{value}"));
        }
        match Self::own_name(field) {
            Some(name) if debug_is_plain(value) => self.field(|w| {
                w.write_str(name)?;
                w.write_str("=\"")?;
                w.write_str(value)?;
                w.write_char('"')
            }),
            _ => self.delegate(field, |v| v.record_str(field, value)),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.delegate(field, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("r#") || name.starts_with("log.") {
            return self.delegate(field, |v| v.record_debug(field, value));
        }
        self.field(|w| {
            if name != "message" {
                w.write_str(name)?;
                w.write_char('=')?;
                return write!(w, "{value:?}");
            }
            // As `DefaultVisitor` writes the message: terminal controls escaped (its `EscapeGuard`).
            if w.sanitizes_ansi_escapes() {
                write!(Sanitizing(w), "{value:?}")
            } else {
                write!(w, "{value:?}")
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failure(Option<Box<Failure>>);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "failure\nwith \"detail\" \u{1b}[31m")
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.as_deref().map(|e| e as _)
        }
    }

    /// Every kind of field the server logs, and the odd ones.
    fn log_everything() {
        let texts = [
            "",
            "plain text",
            "CAM-1",
            "quote\"inside",
            "back\\slash",
            "new\nline",
            "tab\t",
            "\u{1b}[31mred",
            "ünïcödé",
            "\u{7f}",
            "\u{301}accent first",
            "\u{85}next line\u{9f}",
            "bell\u{7}bs\u{8}ff\u{c}",
            "~ }",
        ];
        for text in texts {
            tracing::info!(text, "a plain message");
            tracing::info!(device = text, conn = 7, "connection {} closed", text);
            tracing::warn!(r#type = text, "raw identifier");
            tracing::info!(value = %text, other = ?text, "display and debug");
            tracing::info!(message = text, extra = 1);
        }
        for (i, u) in [
            0u64,
            9,
            10,
            999_999_999,
            1_000_000_000,
            4_294_967_296,
            u64::MAX,
        ]
        .into_iter()
        .enumerate()
        {
            let i = i as i64;
            tracing::info!(
                u,
                i,
                negative = -i,
                min = i64::MIN,
                max = i64::MAX,
                yes = true,
                no = false,
                "numbers"
            );
        }
        tracing::info!(ratio = 0.5, big = 1e300, nan = f64::NAN, "floats");
        tracing::info!(wide = 1u128 << 100, neg = -(1i128 << 100), "wide integers");
        let inner = Failure(None);
        let outer = Failure(Some(Box::new(Failure(None))));
        tracing::error!(
            error = &inner as &(dyn std::error::Error + 'static),
            "an error"
        );
        tracing::error!(
            error = &outer as &(dyn std::error::Error + 'static),
            "a chain"
        );
        tracing::info!(conn = 1, peer = %"127.0.0.1:5", device = "CAM-9", frames = 3u64, bytes = 300u64, reason = %"closed by the device", kind = "closed", "connection closed");
        tracing::info!(conn = 1);
        tracing::info!("no fields");
        // As the log crate's records come through tracing-log.
        tracing::info!(log.target = "rumqttc", log.line = 7, "from the log crate");
        tracing::info!(log.target = "rumqttc", text = "after", "from the log crate");
        tracing::info!(first = 1, log.target = "rumqttc", "log field between");
        // A skipped field first: the next one has no space before it.
        tracing::info!(log.target = "rumqttc", after = 1);
        tracing::info!(log.target = "rumqttc", after = "x", n = 2);
        tracing::info!(log.target = "rumqttc", after = %"display");
        let span = tracing::info_span!("span", id = 3, name = "n");
        let _entered = span.enter();
        tracing::info!(inside = "yes", "in a span");
    }

    /// The text of [`log_everything`] with the given field formatter.
    fn text_with<N>(fields: N) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_fields_are_written_as_tracing_subscriber_writes_them() {
        let ours = text_with(LogFields);
        let theirs = text_with(tracing_subscriber::fmt::format::DefaultFields::new());
        assert!(ours.lines().count() > 80, "{ours}");
        for (line, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
            assert_eq!(a, b, "line {line}");
        }
        assert_eq!(ours, theirs);
    }

    #[test]
    fn plain_strings_are_written_by_debug_as_they_are() {
        for byte in 0..=0x7fu8 {
            let text = format!("a{}b", char::from(byte));
            if debug_is_plain(&text) {
                assert_eq!(format!("{text:?}"), format!("\"{text}\""), "{byte}");
            } else {
                assert!(byte < 0x20 || byte == 0x7f || byte == b'"' || byte == b'\\');
            }
        }
        // Beyond ASCII, `{:?}` escapes some characters: left to tracing-subscriber.
        assert!(!debug_is_plain("é"));
    }
}
