//! Hex dump parsing.
//!
//! [`parse_hex`] turns the text of one or more hex dumps into byte streams. It accepts:
//!
//! * plain hex: `69 00 00 00`, `690000000400`, `0x69, 0x00`, `\x69\x00`, `xxd -p` output;
//! * `xxd` output (offset ending in `:`, any `-g` grouping, ASCII gutter after two spaces);
//! * `hexdump -C` output (offset, two spaces, bytes, `|ascii|` gutter, `*` repeat lines and the
//!   final offset-only line) and the project's sample files written in that style;
//! * Wireshark "copy as hex dump" / `tshark -x` output (4-digit offset, ASCII after 3 spaces).
//!
//! A line whose first non-blank character is `#` is a comment. One or more blank lines end a
//! stream; an offset going back to 0 without a blank line also starts a new stream.

use thiserror::Error;

mod line;

use line::{parse_data, parse_tokens, split_offset};

/// Upper bound on the bytes that `*` repeat lines may add, over all streams of one input
/// (64 MiB), so a hostile dump cannot make the parser allocate without limit.
pub const MAX_REPEAT_BYTES: u64 = 64 * 1024 * 1024;

/// One byte stream found in a hex dump text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexStream {
    /// The bytes, in dump order.
    pub bytes: Vec<u8>,
    /// 1-based line number of the first data line of this stream.
    pub first_line: usize,
}

/// Why a hex dump text could not be parsed. Every variant but [`HexError::Empty`] names the
/// 1-based line at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HexError {
    /// The text holds no data byte at all (empty, blank or only comments).
    #[error("no hex data found (input is empty, blank or only comments)")]
    Empty,
    /// A line is neither a comment, a blank line, nor hex data.
    #[error("line {line}: not hex data or a comment: {text:?}")]
    NotHex {
        /// 1-based line number.
        line: usize,
        /// The offending line (shortened to 60 characters).
        text: String,
    },
    /// A hex token has an odd number of digits.
    #[error("line {line}: odd number of hex digits in {token:?}")]
    OddDigits {
        /// 1-based line number.
        line: usize,
        /// The offending token (shortened to 60 characters).
        token: String,
    },
    /// An offset line does not continue where the previous line ended.
    #[error("line {line}: offset {found:#x} expected {expected:#x}")]
    Offset {
        /// 1-based line number.
        line: usize,
        /// Offset written on the line.
        found: u64,
        /// Offset that would continue the previous line.
        expected: u64,
    },
    /// A `*` repeat line is misplaced or expands to too much data.
    #[error("line {line}: {reason}")]
    Repeat {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Offset dump lines and plain hex lines are mixed without a blank line between them.
    #[error("line {line}: {reason} (separate dumps with a blank line)")]
    Mixed {
        /// 1-based line number.
        line: usize,
        /// What is mixed.
        reason: &'static str,
    },
}

impl HexError {
    /// The 1-based line number the error refers to, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            HexError::Empty => None,
            HexError::NotHex { line, .. }
            | HexError::OddDigits { line, .. }
            | HexError::Offset { line, .. }
            | HexError::Repeat { line, .. }
            | HexError::Mixed { line, .. } => Some(*line),
        }
    }
}

/// How the stream being built is written.
enum Mode {
    /// Plain hex lines without offsets.
    Plain,
    /// Offset dump lines.
    Offset {
        /// Offset the next line must carry.
        expected: u64,
        /// Bytes of the previous data line (what a `*` line repeats).
        last: Vec<u8>,
        /// Line number of a `*` line waiting for the next offset.
        star: Option<usize>,
    },
}

struct Current {
    stream: HexStream,
    mode: Mode,
}

/// Parses hex dump text into byte streams (see the [module docs](self) for the formats).
///
/// Returns at least one stream, each with at least one byte, or the first error found.
pub fn parse_hex(text: &str) -> Result<Vec<HexStream>, HexError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut streams = Vec::new();
    let mut cur: Option<Current> = None;
    let mut repeat_budget = MAX_REPEAT_BYTES;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() {
            finish(&mut cur, &mut streams)?;
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line == "*" {
            match cur.as_mut().map(|c| &mut c.mode) {
                Some(Mode::Offset { star, last, .. }) if star.is_none() && !last.is_empty() => {
                    *star = Some(line_no);
                }
                _ => {
                    return Err(HexError::Repeat {
                        line: line_no,
                        reason: "'*' without a preceding dump line",
                    })
                }
            }
            continue;
        }
        let in_offset_mode = matches!(cur.as_ref().map(|c| &c.mode), Some(Mode::Offset { .. }));
        match split_offset(line) {
            Some((offset, rest, _)) if rest.trim().is_empty() && in_offset_mode => {
                // Final offset-only line (hexdump): closes a pending repeat, adds no data.
                if let Some(c) = cur.as_mut() {
                    if offset == 0 && current_len(c) > 0 && !has_star(c) {
                        finish(&mut cur, &mut streams)?;
                    } else {
                        advance_to(c, offset, line_no, &mut repeat_budget)?;
                    }
                }
            }
            Some((offset, rest, xxd)) if !rest.trim().is_empty() => {
                let data = parse_data(rest, xxd, line, line_no)?;
                let restart = match cur.as_mut() {
                    None => true,
                    Some(c) => match c.mode {
                        Mode::Plain => {
                            return Err(HexError::Mixed {
                                line: line_no,
                                reason: "offset dump line inside a plain hex block",
                            })
                        }
                        Mode::Offset { expected, .. } => {
                            if offset == 0 && expected > 0 && !has_star(c) {
                                true
                            } else {
                                advance_to(c, offset, line_no, &mut repeat_budget)?;
                                false
                            }
                        }
                    },
                };
                if restart {
                    finish(&mut cur, &mut streams)?;
                    cur = Some(Current {
                        stream: HexStream {
                            bytes: Vec::new(),
                            first_line: line_no,
                        },
                        mode: Mode::Offset {
                            expected: offset,
                            last: Vec::new(),
                            star: None,
                        },
                    });
                }
                if let Some(c) = cur.as_mut() {
                    c.stream.bytes.extend_from_slice(&data);
                    if let Mode::Offset { expected, last, .. } = &mut c.mode {
                        *expected = expected.saturating_add(data.len() as u64);
                        *last = data;
                    }
                }
            }
            _ => {
                if in_offset_mode {
                    return Err(HexError::Mixed {
                        line: line_no,
                        reason: "plain hex line inside an offset dump",
                    });
                }
                let data = parse_tokens(line, line, line_no)?;
                let c = cur.get_or_insert_with(|| Current {
                    stream: HexStream {
                        bytes: Vec::new(),
                        first_line: line_no,
                    },
                    mode: Mode::Plain,
                });
                c.stream.bytes.extend_from_slice(&data);
            }
        }
    }
    finish(&mut cur, &mut streams)?;
    if streams.is_empty() {
        return Err(HexError::Empty);
    }
    Ok(streams)
}

fn current_len(c: &Current) -> usize {
    c.stream.bytes.len()
}

fn has_star(c: &Current) -> bool {
    matches!(c.mode, Mode::Offset { star: Some(_), .. })
}

/// Ends the current stream, if any; a `*` still waiting for its offset is an error.
fn finish(cur: &mut Option<Current>, streams: &mut Vec<HexStream>) -> Result<(), HexError> {
    if let Some(c) = cur.take() {
        if let Mode::Offset {
            star: Some(line), ..
        } = c.mode
        {
            return Err(HexError::Repeat {
                line,
                reason: "'*' not followed by an offset line",
            });
        }
        if !c.stream.bytes.is_empty() {
            streams.push(c.stream);
        }
    }
    Ok(())
}

/// Checks that `offset` continues the stream, expanding a pending `*` repeat first.
fn advance_to(
    c: &mut Current,
    offset: u64,
    line_no: usize,
    budget: &mut u64,
) -> Result<(), HexError> {
    let Mode::Offset {
        expected,
        last,
        star,
    } = &mut c.mode
    else {
        return Ok(());
    };
    if star.take().is_some() && offset > *expected {
        let gap = offset - *expected;
        let unit = last.len() as u64;
        if unit == 0 || !gap.is_multiple_of(unit) {
            return Err(HexError::Repeat {
                line: line_no,
                reason: "offset after '*' is not a whole number of repeated lines",
            });
        }
        if gap > *budget {
            return Err(HexError::Repeat {
                line: line_no,
                reason: "'*' repeat expands beyond the 64 MiB limit",
            });
        }
        *budget -= gap;
        for _ in 0..gap / unit {
            c.stream.bytes.extend_from_slice(last);
        }
        *expected = offset;
    }
    if offset != *expected {
        return Err(HexError::Offset {
            line: line_no,
            found: offset,
            expected: *expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Vec<u8> {
        let streams = parse_hex(text).unwrap();
        assert_eq!(streams.len(), 1, "{streams:?}");
        streams.into_iter().next().unwrap().bytes
    }

    #[test]
    fn plain_variants() {
        assert_eq!(one("69 00 00 00"), [0x69, 0, 0, 0]);
        assert_eq!(one("690000000400"), [0x69, 0, 0, 0, 4, 0]);
        assert_eq!(one("0x69, 0x00,0X0a"), [0x69, 0, 0x0a]);
        assert_eq!(one("\\x69\\x00\\xFF"), [0x69, 0, 0xff]);
        assert_eq!(one("69 00\n00 00\r\n"), [0x69, 0, 0, 0]);
        assert_eq!(one("\u{feff}dead\nbeef"), [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn wireshark_copy_as_hex_dump() {
        let text = "0000   69 00 00 00 04 00 00 00 00 00 00 00 02 00 00 00   i...............\n\
                    0010   de ad be ef                                       dead\n";
        let bytes = one(text);
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[16..], [0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn xxd_gutter_that_looks_like_hex_is_cut() {
        let text = "00000000: 6465 6164  dead\n";
        assert_eq!(one(text), b"dead");
    }

    #[test]
    fn hexdump_gutter_with_bars_and_spaces() {
        let text = "00000000  7c 20 7c 41 20 20 7c 7c  || |A  |||\n00000008\n";
        assert_eq!(one(text), b"| |A  ||");
    }

    #[test]
    fn offset_reset_starts_new_stream() {
        let text = "00000000  01 02\n00000002  03\n00000000  04\n";
        let s = parse_hex(text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].bytes, [1, 2, 3]);
        assert_eq!((s[1].bytes.as_slice(), s[1].first_line), (&[4u8][..], 3));
    }

    #[test]
    fn repeat_line_expands() {
        let text = "00000000  00 00  |..|\n*\n00000008  01  |.|\n00000009\n";
        assert_eq!(one(text), [0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let text = "00000000  00 00  |..|\n*\n00000008\n";
        assert_eq!(one(text), [0; 8]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_hex("00000000  01 02\n00000004  03\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: offset 0x4 expected 0x2");
        let e = parse_hex("# c\n\n69 0\n").unwrap_err();
        assert!(matches!(e, HexError::OddDigits { line: 3, .. }), "{e}");
        let e = parse_hex("69 00\nhello world\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().starts_with("line 2: not hex"), "{e}");
        assert_eq!(parse_hex("").unwrap_err(), HexError::Empty);
        assert_eq!(parse_hex("# only\n\n  \n").unwrap_err(), HexError::Empty);
        let e = parse_hex("*\n").unwrap_err();
        assert!(matches!(e, HexError::Repeat { line: 1, .. }), "{e}");
        let e = parse_hex("00000000  00 00\n*\n\n").unwrap_err();
        assert!(matches!(e, HexError::Repeat { line: 2, .. }), "{e}");
        let e = parse_hex("00000000  00 00\n*\n00000005  01\n").unwrap_err();
        assert!(matches!(e, HexError::Repeat { line: 3, .. }), "{e}");
        let e = parse_hex("00000000  00 00\n*\n1000000000  01\n").unwrap_err();
        assert!(e.to_string().contains("64 MiB"), "{e}");
        let e = parse_hex("69 00\n00000002  01 02\n").unwrap_err();
        assert!(matches!(e, HexError::Mixed { line: 2, .. }), "{e}");
        let e = parse_hex("00000000  01 02\n03 04\n").unwrap_err();
        assert!(matches!(e, HexError::Mixed { line: 2, .. }), "{e}");
    }
}
