//! The server's answers to the HTTP variant's requests, cut out of the bytes read with `httparse`.

/// Most header fields read in one answer.
const MAX_FIELDS: usize = 32;
/// An answer head not complete within this many bytes is not believed.
const MAX_HEAD: usize = 64 * 1024;
/// Nor is an answer longer than this, head and body.
const MAX_ANSWER: usize = 1024 * 1024;

/// What the bytes read so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The start of an answer (or nothing): read more.
    Partial,
    /// A whole answer of `len` bytes at the start of the buffer. `close`: the server closes the
    /// connection after it (`Connection: close`, HTTP/1.0 without keep-alive, or a body that the
    /// end of the connection delimits, in which case `len` covers only the bytes read so far).
    Answer {
        status: u16,
        len: usize,
        close: bool,
    },
    /// Not an HTTP answer, or one whose end cannot be found: the connection cannot be trusted.
    Invalid(String),
}

/// Looks for a whole answer at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Invalid(format!("no end of the answer head in {MAX_HEAD} bytes"))
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => return Parsed::Invalid(format!("invalid answer: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut close = response.version == Some(0);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for field in response.headers.iter() {
        let value = String::from_utf8_lossy(field.value);
        if field.name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse::<usize>() {
                Ok(n) if n <= MAX_ANSWER && length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Parsed::Invalid(format!("answer Content-Length {value:?}")),
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if field.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    close = false;
                }
            }
        }
    }
    let body = &buf[head_len..];
    // Interim answers, 204 and 304 have no body (and no request of the simulator is a HEAD).
    let body_len = if (100..200).contains(&status) || status == 204 || status == 304 {
        0
    } else if chunked {
        match chunked_len(body) {
            Ok(Some(n)) => n,
            Ok(None) => return Parsed::Partial,
            Err(reason) => return Parsed::Invalid(reason),
        }
    } else if let Some(n) = length {
        if body.len() < n {
            return Parsed::Partial;
        }
        n
    } else {
        // The body runs to the end of the connection: the status is known, the rest is not needed.
        return Parsed::Answer {
            status,
            len: buf.len(),
            close: true,
        };
    };
    Parsed::Answer {
        status,
        len: head_len + body_len,
        close,
    }
}

/// Length of a whole chunked body (chunks, last chunk, trailer fields, blank line) at the start of
/// `body`; `None` while incomplete.
fn chunked_len(body: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    loop {
        match httparse::parse_chunk_size(&body[pos..]) {
            Ok(httparse::Status::Complete((n, 0))) => {
                pos += n;
                break;
            }
            Ok(httparse::Status::Complete((n, size))) => {
                pos = usize::try_from(size)
                    .ok()
                    .and_then(|size| (pos + n).checked_add(size)?.checked_add(2))
                    .filter(|&end| end <= MAX_ANSWER)
                    .ok_or("answer chunk too large")?;
                if pos > body.len() {
                    return Ok(None);
                }
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("invalid chunk size in the answer".into()),
        }
    }
    loop {
        let Some(nl) = body[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line = &body[pos..pos + nl];
        pos += nl + 1;
        if line.is_empty() || line == b"\r" {
            return Ok(Some(pos));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_answers_are_read_whole() {
        let ok = alarm_center_proto::http::response(200, &[], "OK\n", true, false);
        let mut two = ok.clone();
        two.extend_from_slice(b"HTTP/1.1 503");
        assert_eq!(
            parse(&two),
            Parsed::Answer {
                status: 200,
                len: ok.len(),
                close: false
            }
        );
        for cut in 0..ok.len() {
            assert_eq!(parse(&ok[..cut]), Parsed::Partial, "{cut}");
        }
        let refused = alarm_center_proto::http::response(503, &[], "not stored\n", false, false);
        assert_eq!(
            parse(&refused),
            Parsed::Answer {
                status: 503,
                len: refused.len(),
                close: true
            }
        );
    }

    #[test]
    fn other_framings_and_garbage() {
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nX";
        assert_eq!(
            parse(chunked),
            Parsed::Answer {
                status: 200,
                len: chunked.len() - 1,
                close: false
            }
        );
        assert_eq!(parse(&chunked[..chunked.len() - 3]), Parsed::Partial);
        let old = b"HTTP/1.0 204 No Content\r\n\r\n";
        assert_eq!(
            parse(old),
            Parsed::Answer {
                status: 204,
                len: old.len(),
                close: true
            }
        );
        let unbounded = b"HTTP/1.1 200 OK\r\n\r\nbody";
        assert!(matches!(
            parse(unbounded),
            Parsed::Answer {
                status: 200,
                close: true,
                ..
            }
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Parsed::Invalid(_)
        ));
    }
}
