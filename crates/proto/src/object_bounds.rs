//! Framing of bare JSON objects: string- and escape-aware brace matching, resumable across chunks.

/// Progress of a brace-matching scan over a candidate that starts with `{` at offset 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JsonScan {
    /// Bytes of the candidate already scanned.
    pos: usize,
    /// Open `{`/`[` not yet closed.
    depth: u32,
    in_string: bool,
    escaped: bool,
}

/// Outcome of [`JsonScan::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The object closes at this length (bytes from the opening `{`).
    Complete(usize),
    /// All bytes so far are consistent with JSON; the object is still open.
    Open,
    /// The byte at this offset cannot occur in JSON text here: not a JSON object.
    Invalid(usize),
}

impl JsonScan {
    /// Continues the scan over `buf` (the candidate from its `{`, including bytes seen before).
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Scan {
        while self.pos < buf.len() {
            if self.in_string {
                if self.escaped {
                    // The byte after a backslash is taken as it is, whatever it is.
                    let at = self.pos;
                    self.pos += 1;
                    self.escaped = false;
                    if buf[at] < 0x20 && !matches!(buf[at], b'\t' | b'\r' | b'\n') {
                        return Scan::Invalid(at);
                    }
                    continue;
                }
                // Most bytes of a JSON text are inside strings: skip the plain ones in a tight loop.
                let rest = &buf[self.pos..];
                let plain = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                // A control byte in the plain run is reported at its own offset.
                if rest[..plain].iter().fold(false, |any, &b| any | (b < 0x20)) {
                    let first = rest[..plain].iter().position(|&b| b < 0x20).unwrap_or(0);
                    self.pos += first;
                } else {
                    self.pos += plain;
                }
                let Some(&b) = buf.get(self.pos) else {
                    break;
                };
                let at = self.pos;
                self.pos += 1;
                if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                } else if !matches!(b, b'\t' | b'\r' | b'\n') {
                    return Scan::Invalid(at);
                }
                continue;
            }
            let at = self.pos;
            let b = buf[at];
            self.pos += 1;
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Scan::Invalid(at);
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Scan::Complete(self.pos);
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                0x21..=0x7E => {}
                _ => return Scan::Invalid(at),
            }
        }
        Scan::Open
    }

    /// Bytes scanned so far.
    pub(crate) fn scanned(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(text: &[u8]) -> Scan {
        JsonScan::default().scan(text)
    }

    #[test]
    fn strings_hide_braces_and_escaped_quotes() {
        let text = br#"{"a":"}{\"}","b":[1,{"c":2}]} trailing"#;
        assert_eq!(scan_all(text), Scan::Complete(29));
    }

    #[test]
    fn resumes_across_chunks() {
        let text = br#"{"k":"v\\","x":{"y":[]}}"#;
        let mut scan = JsonScan::default();
        for end in 1..text.len() {
            assert_eq!(scan.scan(&text[..end]), Scan::Open, "prefix {end}");
        }
        assert_eq!(scan.scan(text), Scan::Complete(text.len()));
    }

    #[test]
    fn binary_bytes_are_invalid() {
        assert_eq!(scan_all(b"{\x00\x00"), Scan::Invalid(1));
        assert_eq!(scan_all(b"{\"a\x01\""), Scan::Invalid(3));
        assert_eq!(scan_all(b"{}"), Scan::Complete(2));
        assert_eq!(scan_all(b"{\xff}"), Scan::Invalid(1));
    }

    #[test]
    fn every_escape_is_skipped_whole() {
        // Found by fuzzing: an escape other than \" or \\ once hid the closing quote.
        for text in [
            &br#"{"a":"\n"}"#[..],
            br#"{"a":"\t\u00e9\\","b":"\""}"#,
            br#"{"a":"x\/y"}"#,
        ] {
            assert_eq!(
                scan_all(text),
                Scan::Complete(text.len()),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let mut scan = JsonScan::default();
        let text = br#"{"a":"\n"}"#;
        for end in 1..text.len() {
            assert_eq!(scan.scan(&text[..end]), Scan::Open);
        }
        assert_eq!(scan.scan(text), Scan::Complete(text.len()));
    }

    #[test]
    fn utf8_inside_strings_is_fine() {
        let text = "{\"name\":\"Caméra 東\"}".as_bytes();
        assert_eq!(scan_all(text), Scan::Complete(text.len()));
    }
}
