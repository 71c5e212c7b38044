//! Dahua's HTTP Alarm Center mode ("Protocol Type: HTTP" on current firmware): each event is an
//! HTTP/1.x request, `POST /cgi-bin/NotifyEvent` with one JSON event as the body, on the device port.
//!
//! This module cuts requests out of the byte stream (head parsed by `httparse`, bodies framed by
//! `Content-Length` or chunked transfer coding), reads their heads, de-chunks their bodies and builds
//! the answers. Everything is ASCII text on the wire; there are no binary integers.

use bytes::{Bytes, BytesMut};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// Request methods recognised at a frame start, each with the space that follows it on the wire.
pub const METHODS: [&[u8]; 7] = [
    b"POST ",
    b"GET ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
];

/// Most header fields read in one request head; a head with more is malformed.
pub const MAX_HEADERS: usize = 64;

/// The path Dahua devices post their events to.
pub const NOTIFY_PATH: &str = "/cgi-bin/NotifyEvent";

/// Longest chunk-size line (hex digits, extensions, CRLF) believed, in bytes.
const MAX_CHUNK_LINE: usize = 1024;

/// Whether the bytes at a frame start begin an HTTP request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A prefix of a method: too few bytes to tell.
    NeedMore,
    /// No HTTP method here.
    No,
    /// A method and its space.
    Yes,
}

/// Looks for a request method at `b[0]`.
pub(crate) fn probe(b: &[u8]) -> Start {
    let mut need_more = false;
    for method in METHODS {
        let n = b.len().min(method.len());
        if b[..n] == method[..n] {
            if n == method.len() {
                return Start::Yes;
            }
            need_more = true;
        }
    }
    if need_more {
        Start::NeedMore
    } else {
        Start::No
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    /// `Content-Length` (or no body: 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Where a chunked body's scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPhase {
    /// At a chunk-size line.
    Size,
    /// Inside chunk data that (with its CRLF) ends at this offset of the request.
    Data(usize),
    /// After the last chunk: trailer fields until an empty line.
    Trailer,
}

/// Resumable framing of one request that starts at offset 0 of the buffer: bytes already examined are
/// not examined again, so a sender trickling a request byte by byte costs linear time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpScan {
    /// Bytes searched for the blank line that ends the head.
    searched: usize,
    /// Length of the head (request line, fields, blank line) once found.
    head_len: Option<usize>,
    framing: BodyFraming,
    /// Offset of the next chunk-size line or trailer line.
    pos: usize,
    phase: ChunkPhase,
}

impl Default for HttpScan {
    fn default() -> Self {
        HttpScan {
            searched: 0,
            head_len: None,
            framing: BodyFraming::Length(0),
            pos: 0,
            phase: ChunkPhase::Size,
        }
    }
}

/// Outcome of [`HttpScan::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The request is not whole yet.
    NeedMore,
    /// The request is `len` bytes, of which `head_len` are its head.
    Complete { len: usize, head_len: usize },
    /// Not a valid request: cut `len` bytes as one frame with this reason.
    Malformed {
        len: usize,
        head_len: usize,
        reason: String,
    },
    /// Larger than the maximum frame: keep `keep` bytes; `declared` is the whole length when known
    /// (`Content-Length`), so the rest can be skipped unread.
    Oversized {
        keep: usize,
        head_len: usize,
        declared: Option<u64>,
    },
    /// The stream ended inside the request; `need` is its declared length (0 when unknown).
    Incomplete { head_len: usize, need: usize },
}

/// Where the search for the end of a head stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadEnd {
    /// Offset just past the blank line.
    Found(usize),
    /// Not found in the bytes so far; resume from this offset.
    Searched(usize),
    /// A byte that cannot occur in a request head (a control byte) at this offset.
    Invalid(usize),
}

/// Finds the blank line ending a head (`\r\n\r\n`, or bare `\n\n`), searching from `from`.
fn head_end(buf: &[u8], from: usize) -> HeadEnd {
    let invalid = |b: &u8| (*b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || *b == 0x7F;
    if let Some(bad) = buf[from..].iter().position(invalid) {
        return match find_blank_line(&buf[..from + bad], from) {
            Ok(end) => HeadEnd::Found(end),
            Err(_) => HeadEnd::Invalid(from + bad),
        };
    }
    match find_blank_line(buf, from) {
        Ok(end) => HeadEnd::Found(end),
        Err(at) => HeadEnd::Searched(at),
    }
}

/// Offset just past the first blank line at or after `from`, or where to resume the search.
fn find_blank_line(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut at = from;
    while let Some(nl) = memchr::memchr(b'\n', &buf[at..]) {
        let i = at + nl;
        match buf.get(i + 1) {
            None => return Err(i),
            Some(b'\n') => return Ok(i + 2),
            Some(b'\r') => match buf.get(i + 2) {
                None => return Err(i),
                Some(b'\n') => return Ok(i + 3),
                Some(_) => {}
            },
            Some(_) => {}
        }
        at = i + 1;
    }
    Err(buf.len())
}

/// The body framing a parsed head declares.
fn body_framing(headers: &[httparse::Header<'_>]) -> Result<BodyFraming, String> {
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = String::from_utf8_lossy(h.value);
            let last = value.rsplit(',').next().unwrap_or("").trim().to_owned();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(format!(
                    "Transfer-Encoding {:?} does not end with chunked",
                    value.trim()
                ));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let text = std::str::from_utf8(part).unwrap_or("").trim();
                let n = text
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| text.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| format!("Content-Length {:?} is not a number", text))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length values".into());
                }
                length = Some(n);
            }
        }
    }
    Ok(match chunked {
        Some(_) => BodyFraming::Chunked,
        None => BodyFraming::Length(length.unwrap_or(0)),
    })
}

impl HttpScan {
    /// Length of the request's head once it has been read whole.
    pub(crate) fn head_len(&self) -> Option<usize> {
        self.head_len
    }

    /// Continues framing the request at `buf[0]` (all bytes seen so far). `max_frame` bounds the whole
    /// request; at `eof` an unfinished request is reported incomplete.
    pub(crate) fn scan(&mut self, buf: &[u8], max_frame: usize, eof: bool) -> Step {
        // Only the first `max_frame` bytes can belong to the frame: whatever else is buffered must not
        // change the outcome, or it would depend on how the stream was cut into reads (fuzz F7, F8).
        let buf = &buf[..buf.len().min(max_frame)];
        let head_len = match self.head_len {
            Some(h) => h,
            None => match head_end(buf, self.searched.saturating_sub(2)) {
                HeadEnd::Found(end) | HeadEnd::Invalid(end) if end > max_frame => {
                    return Step::Oversized {
                        keep: max_frame,
                        head_len: max_frame,
                        declared: None,
                    }
                }
                HeadEnd::Invalid(at) => {
                    return Step::Malformed {
                        len: at.max(1),
                        head_len: at.max(1),
                        reason: format!("byte {:#04x} in the request head", buf[at]),
                    }
                }
                HeadEnd::Found(end) => match self.read_head(&buf[..end]) {
                    Ok(()) => end,
                    Err(reason) => {
                        return Step::Malformed {
                            len: end,
                            head_len: end,
                            reason,
                        }
                    }
                },
                HeadEnd::Searched(searched) => {
                    self.searched = searched;
                    return self.unfinished(buf.len(), 0, max_frame, eof, None);
                }
            },
        };
        match self.framing {
            BodyFraming::Length(n) => {
                let total = head_len as u64 + n;
                if total > max_frame as u64 {
                    return self.unfinished(buf.len(), head_len, max_frame, eof, Some(total));
                }
                let total = total as usize;
                if buf.len() >= total {
                    Step::Complete {
                        len: total,
                        head_len,
                    }
                } else {
                    self.unfinished(buf.len(), head_len, max_frame, eof, Some(total as u64))
                }
            }
            BodyFraming::Chunked => self.chunks(buf, head_len, max_frame, eof),
        }
    }

    /// Parses a whole head and notes how its body is framed.
    fn read_head(&mut self, head: &[u8]) -> Result<(), String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("incomplete request head".into()),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(format!("more than {MAX_HEADERS} header fields"))
            }
            Err(e) => return Err(format!("invalid request head: {e}")),
        }
        let framing = body_framing(request.headers)?;
        self.head_len = Some(head.len());
        self.framing = framing;
        self.pos = head.len();
        Ok(())
    }

    /// The request needs more bytes: wait, or report it oversized or incomplete.
    fn unfinished(
        &self,
        have: usize,
        head_len: usize,
        max_frame: usize,
        eof: bool,
        declared: Option<u64>,
    ) -> Step {
        let too_long = declared.map_or(have >= max_frame, |d| d > max_frame as u64);
        if too_long && (have >= max_frame || eof) {
            return Step::Oversized {
                keep: have.min(max_frame),
                head_len: head_len.min(max_frame),
                declared,
            };
        }
        if eof {
            let need = declared.map_or(0, |d| usize::try_from(d).unwrap_or(usize::MAX));
            return Step::Incomplete { head_len, need };
        }
        Step::NeedMore
    }

    /// Walks the chunks of a chunked body.
    fn chunks(&mut self, buf: &[u8], head_len: usize, max_frame: usize, eof: bool) -> Step {
        let malformed = |len: usize, reason: &str| Step::Malformed {
            len: len.min(buf.len()).min(max_frame),
            head_len,
            reason: reason.to_owned(),
        };
        loop {
            if self.pos > max_frame {
                return self.unfinished(buf.len(), head_len, max_frame, eof, None);
            }
            match self.phase {
                // A bad chunk-size line ends the frame where the line starts, whatever arrived after.
                ChunkPhase::Size => match httparse::parse_chunk_size(&buf[self.pos..]) {
                    Ok(httparse::Status::Complete((n, _))) if n > MAX_CHUNK_LINE => {
                        return malformed(self.pos, "chunk-size line too long");
                    }
                    Ok(httparse::Status::Complete((n, 0))) => {
                        self.pos += n;
                        self.phase = ChunkPhase::Trailer;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        let end = (self.pos + n) as u64 + size + 2;
                        if end > max_frame as u64 {
                            return self.unfinished(buf.len(), head_len, max_frame, eof, None);
                        }
                        self.pos += n;
                        self.phase = ChunkPhase::Data(end as usize);
                    }
                    Ok(httparse::Status::Partial) if buf.len() - self.pos > MAX_CHUNK_LINE => {
                        return malformed(self.pos, "chunk-size line too long");
                    }
                    Ok(httparse::Status::Partial) => {
                        return self.unfinished(buf.len(), head_len, max_frame, eof, None)
                    }
                    Err(_) => return malformed(self.pos, "invalid chunk size"),
                },
                ChunkPhase::Data(end) => {
                    if buf.len() < end {
                        return self.unfinished(buf.len(), head_len, max_frame, eof, None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return malformed(end, "chunk data not followed by CRLF");
                    }
                    self.pos = end;
                    self.phase = ChunkPhase::Size;
                }
                ChunkPhase::Trailer => {
                    let Some(nl) = memchr::memchr(b'\n', &buf[self.pos..]) else {
                        return self.unfinished(buf.len(), head_len, max_frame, eof, None);
                    };
                    let line = &buf[self.pos..self.pos + nl];
                    self.pos += nl + 1;
                    if line.is_empty() || line == b"\r" {
                        return Step::Complete {
                            len: self.pos,
                            head_len,
                        };
                    }
                }
            }
        }
    }
}

/// The head of a request, as read from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Request method (`POST`).
    pub method: String,
    /// Request target as sent (`/cgi-bin/NotifyEvent`).
    pub path: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Header fields in wire order (values decoded as UTF-8, invalid bytes replaced).
    pub headers: Vec<(String, String)>,
}

impl Header {
    /// Reads the head of a request; `None` when it does not parse (a malformed frame).
    pub fn parse(head: &[u8]) -> Option<Header> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut fields);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return None,
        }
        Some(Header {
            method: request.method.unwrap_or("").to_owned(),
            path: request.path.unwrap_or("").to_owned(),
            version: format!("HTTP/1.{}", request.version.unwrap_or(1)),
            headers: request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the body uses chunked transfer coding.
    pub fn is_chunked(&self) -> bool {
        self.get("transfer-encoding").is_some_and(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
        })
    }

    /// Whether the connection stays open after the answer: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let connection = |token: &str| {
            self.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("connection")
                    && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
            })
        };
        if self.version == "HTTP/1.0" {
            connection("keep-alive")
        } else {
            !connection("close")
        }
    }

    /// True when the client waits for `100 Continue` before sending the body.
    pub fn expects_continue(&self) -> bool {
        self.get("expect")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// Fields as `[name, value]` pairs: wire order and repeated names survive.
        struct Fields<'a>(&'a [(String, String)]);
        impl Serialize for Fields<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for (name, value) in self.0 {
                    seq.serialize_element(&[name, value])?;
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", &self.method)?;
        map.serialize_entry("path", &self.path)?;
        map.serialize_entry("version", &self.version)?;
        map.serialize_entry("headers", &Fields(&self.headers))?;
        map.end()
    }
}

/// The body of a chunked request with its transfer coding removed; `None` when the chunks are not
/// well formed (the framing checked them, so only a truncated frame gets here).
pub fn dechunk(body: &[u8]) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(body.len());
    let mut pos = 0;
    loop {
        let (n, size) = match httparse::parse_chunk_size(&body[pos..]) {
            Ok(httparse::Status::Complete(found)) => found,
            _ => return None,
        };
        pos += n;
        if size == 0 {
            return Some(out.freeze());
        }
        let end = pos.checked_add(usize::try_from(size).ok()?)?;
        out.extend_from_slice(body.get(pos..end)?);
        pos = end + 2;
    }
}

/// An answer to a request, HTTP/1.1, with `Content-Length`; `body` is omitted for `HEAD` when `head`
/// is true (its length is still announced).
pub fn response(
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &str,
    keep_alive: bool,
    head: bool,
) -> Vec<u8> {
    let reason = match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in extra_headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    if !head {
        out.push_str(body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8], max: usize) -> Step {
        HttpScan::default().scan(bytes, max, false)
    }

    #[test]
    fn content_length_request_is_framed() {
        let req =
            b"POST /cgi-bin/NotifyEvent HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}rest";
        assert_eq!(
            scan_all(req, 4096),
            Step::Complete {
                len: req.len() - 4,
                head_len: req.len() - 6
            }
        );
    }

    #[test]
    fn chunked_request_is_framed_and_dechunked() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\nT: v\r\n\r\nNEXT";
        let Step::Complete { len, head_len } = scan_all(req, 4096) else {
            panic!("not complete")
        };
        assert_eq!(&req[len..], b"NEXT");
        assert_eq!(dechunk(&req[head_len..len]).unwrap(), &b"{\"a\":1}"[..]);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_answer() {
        let req = b"POST / HTTP/1.0\nContent-Length: 3\n\nabc";
        let mut scan = HttpScan::default();
        for n in 1..req.len() {
            assert_eq!(scan.scan(&req[..n], 4096, false), Step::NeedMore, "at {n}");
        }
        assert!(matches!(
            scan.scan(req, 4096, false),
            Step::Complete { len: 38, .. }
        ));
    }

    #[test]
    fn bad_requests_are_malformed_or_oversized() {
        assert!(matches!(
            scan_all(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 4096),
            Step::Malformed { .. }
        ));
        assert!(matches!(
            scan_all(b"GET / HTTP/2.0\r\n\r\n", 4096),
            Step::Malformed { .. }
        ));
        assert!(matches!(
            scan_all(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                4096
            ),
            Step::Malformed { .. }
        ));
        let big = b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
        let mut bytes = big.to_vec();
        bytes.resize(200, b'x');
        assert_eq!(
            scan_all(&bytes, 100),
            Step::Oversized {
                keep: 100,
                head_len: big.len(),
                declared: Some(100_000 + big.len() as u64)
            }
        );
    }

    #[test]
    fn methods_are_probed() {
        assert_eq!(probe(b"PO"), Start::NeedMore);
        assert_eq!(probe(b"POST /"), Start::Yes);
        assert_eq!(probe(b"POSTX"), Start::No);
        assert_eq!(probe(b"HEAD "), Start::Yes);
        assert_eq!(probe(b"{"), Start::No);
    }

    #[test]
    fn keep_alive_rules() {
        let h = |text: &str| Header::parse(text.as_bytes()).unwrap();
        assert!(h("GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!h("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive());
        assert!(!h("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(h("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
    }
}
