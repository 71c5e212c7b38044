//! Log lines a device cannot forge: every control character inside a log record (newline, carriage
//! return, ANSI escape, …) is written escaped, so text a device sent can neither start a new line nor
//! drive the terminal. Only the newline that ends a record is written as it is.

use std::borrow::Cow;
use std::io::{self, Write};

/// `text` with its control characters escaped (`\n`, `\r`, `\t` kept readable, others as `\u{…}`),
/// except one final newline.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if !body.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in body.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    if body.len() < text.len() {
        out.push('\n');
    }
    Cow::Owned(out)
}

/// A writer that escapes each record it is given (the fmt layer writes one record per call, and the
/// log thread hands over one record per call).
pub(crate) struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(escape_controls(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Standard error, escaped record by record and buffered: the log thread writes each record it is
/// handed, then flushes once no more are waiting.
pub(crate) fn escaped_stderr() -> Escaping<io::BufWriter<io::Stderr>> {
    Escaping(io::BufWriter::with_capacity(64 * 1024, io::stderr()))
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_inside_a_record_are_escaped() {
        assert_eq!(escape_controls("plain line\n"), "plain line\n");
        assert_eq!(
            escape_controls("serial=EVIL\nERROR forged\r\u{1b}[2J\u{7f}\u{85} end\n"),
            "serial=EVIL\\nERROR forged\\r\\u{1b}[2J\\u{7f}\\u{85} end\n"
        );
        assert_eq!(escape_controls("tab\tkept"), "tab\tkept");
        assert_eq!(
            escape_controls("no final newline\n\n"),
            "no final newline\\n\n"
        );
    }
}
