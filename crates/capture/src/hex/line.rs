//! Line-level hex dump parsing: offset detection, gutter cutting, hex tokens.

use super::HexError;

/// Splits an offset dump line into `(offset, rest, is_xxd)`, or `None` for a line without an
/// offset. An offset is 1-16 hex digits followed by `:` (xxd), or 4-16 hex digits followed by
/// at least two blanks, a tab, or the end of the line.
pub(super) fn split_offset(line: &str) -> Option<(u64, &str, bool)> {
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let (token, rest) = line.split_at(end);
    let is_hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(digits) = token.strip_suffix(':') {
        if (1..=16).contains(&digits.len()) && is_hex(digits) {
            return Some((u64::from_str_radix(digits, 16).ok()?, rest, true));
        }
        return None;
    }
    if !(4..=16).contains(&token.len()) || !is_hex(token) {
        return None;
    }
    if rest.is_empty() || rest.starts_with('\t') || rest.starts_with("  ") {
        return Some((u64::from_str_radix(token, 16).ok()?, rest, false));
    }
    None
}

/// Parses the byte columns of an offset line, cutting off the ASCII gutter: for xxd at the
/// first double blank; otherwise at the first `|` or run of three or more blanks.
pub(super) fn parse_data(
    rest: &str,
    xxd: bool,
    line: &str,
    line_no: usize,
) -> Result<Vec<u8>, HexError> {
    let s = rest.trim_start();
    let cut = if xxd {
        s.find("  ").unwrap_or(s.len())
    } else {
        let bar = s.find('|').unwrap_or(s.len());
        let gap = find_blank_run(s, 3).unwrap_or(s.len());
        bar.min(gap)
    };
    parse_tokens(&s[..cut], line, line_no)
}

/// Byte index of the first run of at least `n` blanks (spaces or tabs) in `s`.
fn find_blank_run(s: &str, n: usize) -> Option<usize> {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == b' ' || b == b'\t' {
            run += 1;
            if run == n {
                return Some(i + 1 - n);
            }
        } else {
            run = 0;
        }
    }
    None
}

/// Parses hex tokens separated by blanks or commas; each token may carry `0x` / `\x` prefixes.
pub(super) fn parse_tokens(s: &str, line: &str, line_no: usize) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::new();
    for token in s.split(|c: char| c.is_whitespace() || c == ',') {
        if token.is_empty() {
            continue;
        }
        if token.contains("\\x") {
            for part in token.split("\\x").filter(|p| !p.is_empty()) {
                push_hex(part, token, line, line_no, &mut out)?;
            }
        } else {
            let digits = token
                .strip_prefix("0x")
                .or_else(|| token.strip_prefix("0X"))
                .unwrap_or(token);
            push_hex(digits, token, line, line_no, &mut out)?;
        }
    }
    if out.is_empty() {
        return Err(not_hex(line, line_no));
    }
    Ok(out)
}

fn push_hex(
    digits: &str,
    token: &str,
    line: &str,
    line_no: usize,
    out: &mut Vec<u8>,
) -> Result<(), HexError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_hex(line, line_no));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddDigits {
            line: line_no,
            token: shorten(token),
        });
    }
    for pair in digits.as_bytes().chunks_exact(2) {
        out.push((nibble(pair[0]) << 4) | nibble(pair[1]));
    }
    Ok(())
}

fn nibble(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn not_hex(line: &str, line_no: usize) -> HexError {
    HexError::NotHex {
        line: line_no,
        text: shorten(line),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_detection() {
        assert_eq!(split_offset("00000010: 6900"), Some((16, " 6900", true)));
        assert_eq!(split_offset("0010  69 00"), Some((16, "  69 00", false)));
        assert_eq!(split_offset("00000175"), Some((0x175, "", false)));
        assert_eq!(split_offset("69 00 00"), None);
        assert_eq!(split_offset("69000000 04"), None);
        assert_eq!(split_offset("zz: 00"), None);
    }

    #[test]
    fn gutter_cuts() {
        assert_eq!(
            parse_data(" 6465 6164  dead", true, "", 1).unwrap(),
            b"dead"
        );
        assert_eq!(
            parse_data("  64 65  61 64  |de ad|", false, "", 1).unwrap(),
            b"dead"
        );
        assert_eq!(
            parse_data("   64 65 61 64   dead", false, "", 1).unwrap(),
            b"dead"
        );
        assert_eq!(find_blank_run("a  b   c", 3), Some(4));
        assert_eq!(find_blank_run("a  b", 3), None);
    }

    #[test]
    fn tokens() {
        assert_eq!(
            parse_tokens("0x0a,0X0B \\x0c\\x0d 0e0f", "", 1).unwrap(),
            [10, 11, 12, 13, 14, 15]
        );
        assert!(matches!(
            parse_tokens("abc", "abc", 4),
            Err(HexError::OddDigits { line: 4, .. })
        ));
        assert!(matches!(
            parse_tokens("0x", "0x", 2),
            Err(HexError::NotHex { line: 2, .. })
        ));
        assert!(matches!(
            parse_tokens(",,", ",,", 2),
            Err(HexError::NotHex { line: 2, .. })
        ));
        assert!(matches!(
            parse_tokens("zz", "zz", 9),
            Err(HexError::NotHex { line: 9, .. })
        ));
        let long = "q".repeat(100);
        let Err(HexError::NotHex { text, .. }) = parse_tokens(&long, &long, 1) else {
            panic!()
        };
        assert_eq!(text.len(), 60);
    }
}
