//! `Key:Value\r\n` text bodies (DVRIP 0x69 body format 1, 0xF4).

/// Keys read by Dahua's own receiver in a 0x69 text body.
pub const KEY_ALARM_CHANNEL: &str = "alarm channel";
/// Device DDNS/domain name.
pub const KEY_DOMAIN: &str = "Domain name";
/// Device local time without zone, e.g. `2023-01-16 10:00:00`.
pub const KEY_TIME: &str = "Time";
/// Alarm-decoder index (alarm type 9).
pub const KEY_DEALARM_INDEX: &str = "DeAlarm index";
/// Device public IP (alarm type 120).
pub const KEY_GLOBAL_IP: &str = "Global IP";

/// Parses a text body into `(key, value)` pairs in order. Lines end in `\n` (a `\r` before it is dropped);
/// the key is everything before the first `:`, both sides trimmed of spaces; a line without `:` becomes a
/// key with an empty value; trailing NUL padding and blank lines are ignored; invalid UTF-8 is replaced.
pub fn parse(body: &[u8]) -> Vec<(String, String)> {
    let end = body.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let text = String::from_utf8_lossy(&body[..end]);
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_once(':') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (line.trim().to_owned(), String::new()),
        })
        .collect()
}

/// Looks up `key` in parsed pairs (first occurrence, ASCII case-insensitive).
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// True when a body looks like `Key:Value` text: printable UTF-8 (plus CR/LF/tab/NUL padding) with a colon.
pub fn looks_like_text(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|s| {
        s.contains(':')
            && s.chars()
                .all(|c| !c.is_control() || matches!(c, '\r' | '\n' | '\t' | '\0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dahua_text_body() {
        let pairs = parse(
            b"alarm channel:2\r\nDomain name:nvr.example.org\r\nTime:2023-01-16 10:00:00\r\n\0\0",
        );
        assert_eq!(get(&pairs, "alarm channel"), Some("2"));
        assert_eq!(get(&pairs, "domain NAME"), Some("nvr.example.org"));
        assert_eq!(get(&pairs, "Time"), Some("2023-01-16 10:00:00"));
        assert_eq!(pairs.len(), 3);
    }

    #[test]
    fn lines_without_colon_and_bad_utf8_are_kept() {
        let pairs = parse(b"odd line\n\xffkey: v \n");
        assert_eq!(pairs[0], ("odd line".to_owned(), String::new()));
        assert_eq!(pairs[1], ("\u{fffd}key".to_owned(), "v".to_owned()));
    }
}
