//! Log lines a device cannot forge: every control character inside a log record (newline, carriage
//! return, ANSI escape, …) is written escaped, so text a device sent can neither start a new line nor
//! drive the terminal. Only the newline that ends a record is written as it is.

use std::borrow::Cow;

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
