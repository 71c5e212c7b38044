//! Byte-level scanners: the end of plain string text, of a run of digits, of whitespace, of a (valid)
//! value, and the second reading of an event's `Data` over text serde has already accepted.

use std::borrow::Cow;

use super::keys::{key_of, Key};
use super::object::{Found, Scalar};

/// The second reading of an event's `Data` without serde: `raw` is one JSON value that serde's first
/// reading accepted (as a `RawValue`), so the grammar needs no checking and skipping a value cannot fail.
/// What a `DataFound` reading (in `serde_read`) could still reject (a key or a kept string with an
/// escape, which may hold a lone surrogate; a number that may overflow an `f64`; the keys of a nested
/// object under a key it reads, a `params`/`eventList` chain deeper than serde's recursion limit) makes
/// it give up: `None`, and the caller reads `raw` with serde. `Some(found)` is what that reading would
/// have returned.
pub(super) fn scan_data(raw: &str) -> Option<Option<Found<'_>>> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'{') {
        // An array or a scalar: no `Found` whether serde's reading of it succeeds or not.
        return Some(None);
    }
    let mut found = Found::default();
    let mut i = skip_ws(b, 1);
    if b.get(i) == Some(&b'}') {
        return Some(Some(found));
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (key, after) = plain_string(raw, i)?;
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        match key_of(key) {
            Key::Params | Key::EventList => return None,
            Key::Data | Key::Other | Key::Result => i = skip_value(b, i)?,
            key => {
                let value = match *b.get(i)? {
                    b'"' => {
                        let (text, after) = plain_string(raw, i)?;
                        i = after;
                        Scalar::Str(Cow::Borrowed(text))
                    }
                    b'-' | b'0'..=b'9' => {
                        let len = b[i..]
                            .iter()
                            .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'.'))
                            .unwrap_or(b.len() - i);
                        // No exponent and at most 17 characters: far below `f64::MAX`. Its value does not
                        // matter: `Found` keeps text only.
                        if len > 17 || matches!(b.get(i + len), Some(b'e' | b'E')) {
                            return None;
                        }
                        i += len;
                        Scalar::Other
                    }
                    b't' | b'n' => {
                        i += 4;
                        Scalar::Other
                    }
                    b'f' => {
                        i += 5;
                        Scalar::Other
                    }
                    _ => return None,
                };
                found.set(key, value);
            }
        }
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(Some(found)),
            _ => return None,
        }
    }
}

/// The index in `rest` of the first byte that ends a run of plain string text: a quote, a backslash or
/// a control character (`< 0x20`). Eight bytes at a time: in each of the three tests below the lowest
/// flagged byte is always a true one (a false flag needs a borrow from a true one below it), so the lowest
/// flag of their union is the answer.
pub(super) fn string_stop(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(&word) = rest.get(at..).and_then(|r| r.first_chunk::<8>()) {
        let v = u64::from_le_bytes(word);
        let quote = v ^ (ONES * u64::from(b'"'));
        let slash = v ^ (ONES * u64::from(b'\\'));
        let flags = ((quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (v.wrapping_sub(ONES * 0x20) & !v))
            & HIGH;
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    while let Some(&c) = rest.get(at) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// The index of the first byte at or after `i` that is not an ASCII digit. Eight bytes at a time, as in
/// [`string_stop`]: a byte below `'0'` is flagged by a borrow test, one above `'9'` by adding `0x46`
/// (which reaches bit 7 from `0x3A` on; bytes from `0x80` on have it already, and only those can carry
/// into the byte above), so the lowest flag is a true one.
pub(super) fn digits_end(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(&word) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let v = u64::from_le_bytes(word);
        let below = v.wrapping_sub(ONES * u64::from(b'0')) & !v;
        let above = v.wrapping_add(ONES * 0x46) | v;
        let flags = (below | above) & HIGH;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting with the quote at `i`, when it has no escape, and the index after its closing
/// quote; `None` for a string with an escape (or no end).
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let rest = text.as_bytes().get(i + 1..)?;
    let len = string_stop(rest)?;
    if rest[len] != b'"' {
        return None;
    }
    Some((text.get(i + 1..i + 1 + len)?, i + 2 + len))
}

/// The index after the (valid) JSON value starting at `i`; `None` when the text ends first.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match *b.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    i += string_stop(b.get(i..)?)?;
                    match b[i] {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1, // a control character: the text was checked, cannot happen
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ if depth == 0 => {
                // A scalar: up to the next delimiter.
                let len = b[i..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(b.len() - i);
                return Some(i + len);
            }
            _ => {}
        }
        i += 1;
        if depth == 0 {
            return Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn string_stop_finds_the_first_quote_backslash_or_control_byte(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b' ', b'"', b'\\', 0x1F, 0x20, 0x7F, 0x80, 0xFF, 0, b'!', b'#', b'[', b']']),
                0..40,
            ),
            plain in 0usize..40,
        ) {
            // Mostly plain text first, so that the stop falls in every position of a word.
            let text: Vec<u8> = std::iter::repeat_n(b'x', plain).chain(bytes).collect();
            let naive = text.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            proptest::prop_assert_eq!(string_stop(&text), naive);
        }

        #[test]
        fn digits_end_finds_the_first_byte_that_is_not_a_digit(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'0', b'9', b'/', b':', b'.', b'e', 0x7F, 0x80, 0xB9, 0xBA, 0xFF, 0, b'-']),
                0..20,
            ),
            digits in 0usize..30,
            from in 0usize..4,
        ) {
            let text: Vec<u8> = (0..digits).map(|d| b'0' + (d % 10) as u8).chain(bytes).collect();
            let from = from.min(text.len());
            let naive = text[from..].iter().position(|c| !c.is_ascii_digit()).map_or(text.len(), |p| from + p);
            proptest::prop_assert_eq!(digits_end(&text, from), naive);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// The scanners that expect text serde has accepted are fed anything: they must be safe (no
        /// panic, debug builds check overflow; every scan ends), if not right.
        #[test]
        fn scanners_survive_hostile_bodies(bodies in super::super::tests::hostile_bodies()) {
            for bytes in bodies {
                let _ = string_stop(&bytes);
                for i in 0..=bytes.len() + 1 {
                    let _ = skip_value(&bytes, i);
                    let _ = digits_end(&bytes, i);
                    let _ = skip_ws(&bytes, i);
                }
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let _ = scan_data(text);
                    for i in 0..=text.len() + 1 {
                        let _ = plain_string(text, i);
                    }
                }
            }
        }
    }
}
