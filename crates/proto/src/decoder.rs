//! The streaming decoder: arbitrary chunks of one TCP stream in, whole [`Frame`]s out.
//!
//! Memory is bounded: the decoder never buffers more than twice the maximum frame size, whatever the
//! caller feeds it, and it checks a header's declared length before buffering any body.

use bytes::{Buf, BytesMut};

use crate::frame::{le_u32, Frame, FrameError, ParsedJson, Protocol};
use crate::http::{HttpScan, Start, Step};
use crate::object_bounds::{JsonScan, Scan};
use crate::{dhip, dvrip, http, json_body, xm};

/// Most events of a bare JSON reading attached to its frame (see [`ParsedJson`]).
const MAX_ATTACHED_EVENTS: usize = 16;

/// Default maximum frame size in bytes (header + body): 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// A declared body longer than this (16 MiB) is not believed: the "header" is treated as junk and the
/// decoder resynchronises, instead of skipping a length that would swallow the rest of the stream.
pub const MAX_PLAUSIBLE_BODY: u64 = 16 * 1024 * 1024;

/// Smallest maximum frame size accepted by [`DecoderConfig`]: one DVRIP/DHIP header.
pub const MIN_MAX_FRAME: usize = 64;

/// Decoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest frame (header + body) kept whole, in bytes; clamped to at least [`MIN_MAX_FRAME`].
    pub max_frame: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// What the bytes at a candidate position look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Too few bytes to tell.
    NeedMore,
    /// Not the start of any frame.
    No,
    /// A binary header of `protocol`; the whole frame declares `total` bytes.
    Header {
        protocol: Protocol,
        header_len: usize,
        total: u64,
    },
    /// An opening brace: maybe a bare JSON object.
    Json,
    /// An HTTP request method.
    Http,
}

/// Recognises a frame start at `b[0]` (REFERENCE.md §4).
fn probe(b: &[u8]) -> Probe {
    let Some(&first) = b.first() else {
        return Probe::NeedMore;
    };
    match first {
        b'{' => Probe::Json,
        b'A'..=b'Z' => match http::probe(b) {
            Start::Yes => Probe::Http,
            Start::NeedMore => Probe::NeedMore,
            Start::No => Probe::No,
        },
        0x20 => {
            let n = b.len().min(dhip::MAGIC.len());
            if b[..n] != dhip::MAGIC[..n] {
                Probe::No
            } else {
                header_probe(b, Protocol::Dhip, dhip::HEADER_LEN, 16)
            }
        }
        xm::MAGIC => {
            // version 0 or 1, then two reserved zero bytes
            let plausible = [(1, 1u8), (2, 0), (3, 0)]
                .iter()
                .all(|&(at, max)| b.get(at).is_none_or(|&v| v <= max));
            if plausible {
                header_probe(b, Protocol::Xm, xm::HEADER_LEN, 16)
            } else {
                Probe::No
            }
        }
        cmd if dvrip::is_known_command(cmd) => {
            // Bytes 1–2 are zero, except that login requests carry a value in byte 1 (`A0 01`, `A0 05`
            // in DahuaConsole's captures).
            let byte1_ok = cmd == dvrip::CMD_LOGIN || b.get(1).is_none_or(|&v| v == 0);
            let plausible = byte1_ok && b.get(2).is_none_or(|&v| v == 0);
            if plausible {
                header_probe(b, Protocol::Dvrip, dvrip::HEADER_LEN, 4)
            } else {
                Probe::No
            }
        }
        _ => Probe::No,
    }
}

/// Reads the body length (u32 little-endian at `len_at`) once enough bytes are there.
fn header_probe(b: &[u8], protocol: Protocol, header_len: usize, len_at: usize) -> Probe {
    match le_u32(b, len_at) {
        None => Probe::NeedMore,
        Some(body) if u64::from(body) > MAX_PLAUSIBLE_BODY => Probe::No,
        Some(body) => Probe::Header {
            protocol,
            header_len,
            total: header_len as u64 + u64::from(body),
        },
    }
}

/// Length of the padding at the start of `b`: whitespace (newline-delimited JSON) and NUL bytes between
/// frames. A space that may begin a DHIP magic (`20 00 00 00 'DHIP'`) is not padding; before the stream's
/// end, a lone trailing space waits for the next byte to tell.
fn padding_len(b: &[u8], eof: bool) -> usize {
    let mut n = 0;
    while let Some(&byte) = b.get(n) {
        match byte {
            b'\t' | b'\r' | b'\n' | 0 => n += 1,
            b' ' => {
                let next = &b[n + 1..];
                let m = next.len().min(dhip::MAGIC.len() - 1);
                let may_be_dhip = next[..m] == dhip::MAGIC[1..=m];
                let whole_magic = m == dhip::MAGIC.len() - 1;
                if may_be_dhip && (whole_magic || !eof) {
                    break;
                }
                n += 1;
            }
            _ => break,
        }
    }
    n
}

/// Streaming decoder for one TCP stream. Feed it chunks with [`Decoder::feed`]; call
/// [`Decoder::finish`] when the stream ends.
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// `buf[..junk]` is unrecognised and waits to be emitted as one junk frame.
    junk: usize,
    /// Brace-matching progress of the JSON candidate at `buf[0]` (only while `junk == 0`).
    json: Option<JsonScan>,
    /// `{` bytes before this stream offset were inside a candidate already found invalid: not rescanned,
    /// so garbage full of braces costs linear time.
    json_dead_until: u64,
    /// Framing progress of the HTTP request at `buf[0]` (only while `junk == 0`).
    http: Option<HttpScan>,
    /// Bytes of an oversized frame still to discard unread.
    skip: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DecoderConfig::default())
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new(config: DecoderConfig) -> Decoder {
        Decoder {
            max_frame: config.max_frame.max(MIN_MAX_FRAME),
            buf: BytesMut::new(),
            base: 0,
            junk: 0,
            json: None,
            json_dead_until: 0,
            http: None,
            skip: 0,
        }
    }

    /// The maximum frame size in bytes.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes held waiting for the rest of a frame (never more than twice the maximum frame size).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Releases the buffer's memory when it holds nothing, so that an idle connection costs no buffer.
    pub fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The head of the HTTP request being received, when its head is whole and its body is not (so
    /// that a server can answer `Expect: 100-continue`), with the request's stream offset.
    pub fn pending_http_head(&self) -> Option<(u64, &[u8])> {
        let head_len = self.http.as_ref()?.head_len()?;
        (self.junk == 0).then(|| (self.base, &self.buf[..head_len.min(self.buf.len())]))
    }

    /// True while an HTTP request has begun and is not whole yet.
    pub fn in_http_request(&self) -> bool {
        self.junk == 0 && self.http.is_some()
    }

    /// Stream offset of the next byte to be fed.
    pub fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Decodes `chunk`, the next bytes of the stream. The returned iterator must be drained: it pulls
    /// the chunk into the decoder piece by piece so that memory stays bounded.
    #[must_use = "the frames of the chunk are produced by iterating"]
    pub fn feed<'a>(&'a mut self, chunk: &'a [u8]) -> Frames<'a> {
        Frames {
            decoder: self,
            input: chunk,
        }
    }

    /// Ends the stream: returns the frames still buffered (an incomplete frame, pending junk) and resets
    /// the decoder for a new stream starting at offset 0.
    pub fn finish(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame(true) {
            frames.push(frame);
        }
        *self = Decoder::new(DecoderConfig {
            max_frame: self.max_frame,
        });
        frames
    }

    /// Moves bytes from `input` into the buffer, at most up to the buffer bound.
    fn fill(&mut self, input: &mut &[u8]) {
        if self.skip > 0 && self.buf.is_empty() {
            let n = (input.len() as u64).min(self.skip) as usize;
            *input = &input[n..];
            self.skip -= n as u64;
            self.base += n as u64;
            return;
        }
        let room = (2 * self.max_frame).saturating_sub(self.buf.len()).max(1);
        let n = room.min(input.len());
        self.buf.extend_from_slice(&input[..n]);
        *input = &input[n..];
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.base += n as u64;
    }

    fn split(
        &mut self,
        n: usize,
        protocol: Protocol,
        header_len: usize,
        error: Option<FrameError>,
    ) -> Frame {
        let offset = self.base;
        let bytes = self.buf.split_to(n).freeze();
        self.base += n as u64;
        Frame {
            offset,
            bytes,
            protocol,
            header_len,
            error,
            parsed: ParsedJson::default(),
        }
    }

    /// Counts one more byte as junk; a junk frame reaching the maximum size is emitted at once.
    fn grow_junk(&mut self) -> Option<Frame> {
        self.junk += 1;
        (self.junk >= self.max_frame).then(|| self.take_junk())
    }

    fn take_junk(&mut self) -> Frame {
        let n = std::mem::take(&mut self.junk);
        self.split(n, Protocol::Junk, 0, Some(FrameError::Unrecognized))
    }

    /// The next whole frame from the buffer, if any; at `eof`, incomplete data is emitted too.
    fn next_frame(&mut self, eof: bool) -> Option<Frame> {
        loop {
            if self.skip > 0 {
                let n = (self.buf.len() as u64).min(self.skip) as usize;
                self.advance(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return None;
                }
            }
            if self.junk == 0 && self.json.is_none() {
                let pad = padding_len(&self.buf, eof);
                self.advance(pad);
            }
            let at = self.junk;
            if at >= self.buf.len() {
                return (at > 0 && eof).then(|| self.take_junk());
            }
            let rest = &self.buf[at..];
            let found = if rest[0] == b'{' && self.base + (at as u64) < self.json_dead_until {
                Probe::No
            } else {
                probe(rest)
            };
            match found {
                Probe::No => {
                    if let Some(junk) = self.grow_junk() {
                        return Some(junk);
                    }
                }
                Probe::NeedMore if eof => {
                    self.junk = self.buf.len().min(self.max_frame);
                    return Some(self.take_junk());
                }
                Probe::NeedMore => return None,
                Probe::Header { .. } | Probe::Http if at > 0 => return Some(self.take_junk()),
                Probe::Http => return self.http_frame(eof),
                Probe::Header {
                    protocol,
                    header_len,
                    total,
                } => return self.header_frame(protocol, header_len, total, eof),
                Probe::Json if at == 0 && self.json.is_none() => {
                    // First sight of an object with no junk before it: read it whole in one pass when
                    // it is all there (never past the maximum frame size). Otherwise (incomplete,
                    // invalid, not UTF-8) the brace matcher below frames it exactly as it always did.
                    let end = self.buf.len().min(self.max_frame);
                    if let Some((n, facts)) = json_body::bare_object(&self.buf[..end]) {
                        let mut frame = self.split(n, Protocol::Json, 0, None);
                        // A reading rides with its frame until the session takes it, possibly behind
                        // other frames of the same read: only small ones, so that what a read holds
                        // stays of the order of its bytes (a long event list is read again instead).
                        if facts.events.len() <= MAX_ATTACHED_EVENTS {
                            frame.parsed = ParsedJson::new(facts, &frame.bytes);
                        }
                        return Some(frame);
                    }
                    self.json = Some(JsonScan::default());
                }
                Probe::Json => {
                    // Scanned in place behind any pending junk, so that a brace inside garbage does not
                    // split the garbage in two; the junk is emitted once the object proves whole.
                    let scan = self.json.get_or_insert_with(JsonScan::default);
                    // Never look past the maximum frame size: an object closing later is too long.
                    let end = self.buf.len().min(at + self.max_frame);
                    match scan.scan(&self.buf[at..end]) {
                        Scan::Complete(_) | Scan::Open if at > 0 && eof => {
                            self.json = None;
                            return Some(self.take_junk());
                        }
                        Scan::Complete(_) if at > 0 => {
                            self.json = None;
                            return Some(self.take_junk());
                        }
                        Scan::Complete(n) => {
                            self.json = None;
                            return Some(self.split(n, Protocol::Json, 0, None));
                        }
                        Scan::Open if scan.scanned() >= self.max_frame => {
                            // Too long for one frame: treat as junk and look again inside it.
                            self.json_dead_until = self.base + (at + self.max_frame) as u64;
                            self.json = None;
                            if let Some(junk) = self.grow_junk() {
                                return Some(junk);
                            }
                        }
                        Scan::Open if eof => {
                            self.json = None;
                            let have = self.buf.len();
                            let error = FrameError::Incomplete { have, need: 0 };
                            return Some(self.split(have, Protocol::Json, 0, Some(error)));
                        }
                        Scan::Open => return None,
                        Scan::Invalid(k) => {
                            self.json_dead_until = self.base + (at + k) as u64 + 1;
                            self.json = None;
                            if let Some(junk) = self.grow_junk() {
                                return Some(junk);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Emits the HTTP request at `buf[0]` once it is whole (or cut when malformed or oversized).
    fn http_frame(&mut self, eof: bool) -> Option<Frame> {
        let scan = self.http.get_or_insert_with(HttpScan::default);
        let step = scan.scan(&self.buf, self.max_frame, eof);
        if step != Step::NeedMore {
            self.http = None;
        }
        match step {
            Step::NeedMore => None,
            Step::Complete { len, head_len } => {
                Some(self.split(len, Protocol::Http, head_len, None))
            }
            Step::Malformed {
                len,
                head_len,
                reason,
            } => Some(self.split(
                len.max(1),
                Protocol::Http,
                head_len,
                Some(FrameError::Malformed(reason)),
            )),
            Step::Oversized {
                keep,
                head_len,
                declared,
            } => {
                // A known length is skipped unread; a chunked body past the limit cannot be followed,
                // and what comes after it is decoded as whatever it looks like.
                self.skip = declared.map_or(0, |d| d.saturating_sub(keep as u64));
                let error = match declared {
                    Some(declared) => FrameError::Oversized {
                        declared,
                        max: self.max_frame,
                    },
                    None => FrameError::TooLong {
                        max: self.max_frame,
                    },
                };
                Some(self.split(keep, Protocol::Http, head_len, Some(error)))
            }
            Step::Incomplete { head_len, need } => {
                let have = self.buf.len();
                let error = FrameError::Incomplete { have, need };
                Some(self.split(have, Protocol::Http, head_len, Some(error)))
            }
        }
    }

    /// Emits the header-framed frame at `buf[0]` once it is whole (or truncated when oversized).
    fn header_frame(
        &mut self,
        protocol: Protocol,
        header_len: usize,
        total: u64,
        eof: bool,
    ) -> Option<Frame> {
        let have = self.buf.len();
        if total > self.max_frame as u64 {
            if have < self.max_frame && !eof {
                return None;
            }
            let keep = have.min(self.max_frame);
            self.skip = total - keep as u64;
            let error = FrameError::Oversized {
                declared: total,
                max: self.max_frame,
            };
            return Some(self.split(keep, protocol, header_len, Some(error)));
        }
        let total = total as usize;
        if have >= total {
            Some(self.split(total, protocol, header_len, None))
        } else if eof {
            let error = FrameError::Incomplete { have, need: total };
            Some(self.split(have, protocol, header_len.min(have), Some(error)))
        } else {
            None
        }
    }
}

/// Frames decoded from one fed chunk; see [`Decoder::feed`].
#[derive(Debug)]
pub struct Frames<'a> {
    decoder: &'a mut Decoder,
    input: &'a [u8],
}

impl Iterator for Frames<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.decoder.next_frame(false) {
                return Some(frame);
            }
            if self.input.is_empty() {
                return None;
            }
            self.decoder.fill(&mut self.input);
        }
    }
}
