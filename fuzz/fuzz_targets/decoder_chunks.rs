//! The streaming decoder on arbitrary bytes, fed whole and in fuzzer-chosen chunks.
//!
//! Input layout: `[mode, m0, m1, m2, c0, c1, c2, c3, stream...]`.
//! - `mode % 4` and `m0..m2` choose the maximum frame size (64..=70000; mostly small, so that the
//!   oversized and junk-limit paths are reached with small inputs);
//! - `c0..c3` are a cycle of chunk sizes (0 = an empty feed; a set high bit means a large chunk);
//! - the rest is the TCP stream.
//!
//! Asserts:
//! - the frames are the same (offset, bytes, protocol, header length, error) whole and chunked, and
//!   again when the chunked decoder is reused after `finish()`;
//! - after every drained `feed`, `buffered() <= 2 * max_frame()` and `position()` = bytes fed;
//!   `finish()` leaves the decoder empty at offset 0;
//! - every frame's bytes equal the input at its offset, frames are non-empty, in order, do not overlap
//!   and are at most `max_frame` bytes long;
//! - every byte not in a frame is padding (space, tab, CR, LF, NUL) or lies inside the declared length
//!   of an `Oversized` frame (counted from that frame's offset), and no frame starts inside such a
//!   skipped range;
//! - per-variant framing facts: header lengths, the magic/command byte, a clean header-framed frame is
//!   exactly header + declared body long, a whole JSON frame starts with `{` and ends with `}` or `]`
//!   (brackets are matched without checking their kind), `Oversized` declares more than the maximum, `Incomplete`
//!   ends at the end of the stream, junk (and only junk) is `Unrecognized`;
//! - HTTP: a frame starts with a method and its space; a clean one has a head (`header_len`) ending with
//!   a blank line that `http::Header::parse` reads, and a body exactly `Content-Length` long or chunked
//!   and de-chunkable by `http::dechunk`; `Oversized` declares head + `Content-Length` (the head is
//!   whole and parses) and its declared length is skipped like a header-framed one; `TooLong` is
//!   exactly `max_frame` bytes; `Malformed` and `TooLong` occur on HTTP frames only.
#![no_main]

use alarm_center_proto::{
    dhip, dvrip, http, xm, Decoder, DecoderConfig, Frame, FrameError, Protocol,
};
use libfuzzer_sys::fuzz_target;

const PARAMS: usize = 8;

fn max_frame_of(p: &[u8]) -> usize {
    let v = u32::from_le_bytes([p[1], p[2], p[3], 0]) as usize;
    match p[0] % 4 {
        0 | 1 => 64 + v % 256,
        2 => 64 + v % 4096,
        _ => 64 + v % (70_000 - 64 + 1),
    }
}

fn chunk_sizes(p: &[u8]) -> Vec<usize> {
    let sizes: Vec<usize> = p
        .iter()
        .map(|&b| {
            if b & 0x80 != 0 {
                usize::from(b & 0x7f) * 37 + 1
            } else {
                usize::from(b)
            }
        })
        .collect();
    if sizes.iter().all(|&s| s == 0) {
        vec![1]
    } else {
        sizes
    }
}

/// Feeds `stream` in chunks cycling through `sizes`, checking the buffer bound after each feed.
fn decode(decoder: &mut Decoder, stream: &[u8], sizes: &[usize]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut fed = 0;
    for &size in sizes.iter().cycle() {
        let end = (fed + size).min(stream.len());
        frames.extend(decoder.feed(&stream[fed..end]));
        fed = end;
        assert!(
            decoder.buffered() <= 2 * decoder.max_frame(),
            "buffer bound: buffered() = {} > 2 * max_frame() = {} after feeding {fed} bytes",
            decoder.buffered(),
            2 * decoder.max_frame()
        );
        assert_eq!(
            decoder.position(),
            fed as u64,
            "position() is not the number of bytes fed"
        );
        if fed == stream.len() {
            break;
        }
    }
    frames.extend(decoder.finish());
    assert_eq!(decoder.buffered(), 0, "finish() left bytes buffered");
    assert_eq!(decoder.position(), 0, "finish() did not reset the offset");
    frames
}

fn assert_same(what: &str, a: &[Frame], b: &[Frame]) {
    if a == b {
        return;
    }
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: frames differ ({} vs {} frames), first difference at frame {i}:\n  whole:   {:?}\n  chunked: {:?}",
        a.len(),
        b.len(),
        a.get(i),
        b.get(i)
    );
}

fn is_padding(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0)
}

/// Full header length and offset of the little-endian u32 body length of a header-framed variant.
fn header_layout(protocol: Protocol) -> Option<(usize, usize)> {
    match protocol {
        Protocol::Dvrip => Some((dvrip::HEADER_LEN, 4)),
        Protocol::Dhip => Some((dhip::HEADER_LEN, 16)),
        Protocol::Xm => Some((xm::HEADER_LEN, 16)),
        Protocol::Json | Protocol::Junk | Protocol::Http => None,
    }
}

/// The body length the `Content-Length` fields of a head declare (every comma-separated value agrees;
/// 0 without the field); `None` when they do not.
fn content_length(header: &http::Header) -> Option<u64> {
    let mut length = None;
    for (name, value) in &header.headers {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n = part.trim().parse::<u64>().ok()?;
                if length.is_some_and(|l| l != n) {
                    return None;
                }
                length = Some(n);
            }
        }
    }
    Some(length.unwrap_or(0))
}

/// The head of an HTTP frame, which must be whole (end with a blank line) and parse.
fn http_head(i: usize, f: &Frame) -> http::Header {
    let head = f.header();
    assert!(
        head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
        "frame {i}: HTTP head of {} bytes does not end with a blank line ({:?})",
        f.header_len,
        f.error
    );
    http::Header::parse(head).unwrap_or_else(|| {
        panic!(
            "frame {i}: HTTP head does not parse ({:?}): {:?}",
            f.error,
            String::from_utf8_lossy(head)
        )
    })
}

fn declared_total(frame: &Frame, header_len: usize, len_at: usize) -> u64 {
    let b = &frame.bytes[len_at..len_at + 4];
    header_len as u64 + u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn check_frames(stream: &[u8], max_frame: usize, frames: &[Frame]) {
    let len = stream.len() as u64;
    // Bytes that are in a frame or inside an oversized frame's declared length.
    let mut accounted = vec![false; stream.len()];
    // No frame may start before this offset (end of the previous frame or of its skipped range).
    let mut next_min = 0u64;
    for (i, f) in frames.iter().enumerate() {
        assert!(!f.bytes.is_empty(), "frame {i} is empty");
        assert!(
            f.offset >= next_min,
            "frame {i} at offset {} overlaps the previous frame or its skipped range (ends at {next_min})",
            f.offset
        );
        let start = f.offset as usize;
        let end = start + f.len();
        assert!(
            end as u64 <= len,
            "frame {i} runs past the end of the stream"
        );
        assert!(
            stream[start..end] == f.bytes[..],
            "frame {i}'s bytes differ from the input at offset {start}"
        );
        assert!(
            f.len() <= max_frame,
            "frame {i} ({:?}, {} bytes) is longer than max_frame {max_frame}",
            f.protocol,
            f.len()
        );
        accounted[start..end].fill(true);
        next_min = end as u64;

        let first = f.bytes[0];
        match f.protocol {
            Protocol::Dvrip => assert!(
                dvrip::is_known_command(first),
                "frame {i}: DVRIP frame with unknown command {first:#04x}"
            ),
            Protocol::Dhip => {
                let n = f.len().min(dhip::MAGIC.len());
                assert!(
                    f.bytes[..n] == dhip::MAGIC[..n],
                    "frame {i}: DHIP frame without the magic"
                );
            }
            Protocol::Xm => assert_eq!(first, xm::MAGIC, "frame {i}: XM frame without 0xFF"),
            Protocol::Json => {
                assert_eq!(first, b'{', "frame {i}: JSON frame not starting with '{{'");
                assert_eq!(f.header_len, 0, "frame {i}: JSON frame with a header");
                if f.error.is_none() {
                    // The framing matches brackets without checking their kind (`{]` closes), so a
                    // whole candidate ends with either closing bracket.
                    assert!(
                        matches!(f.bytes[f.len() - 1], b'}' | b']'),
                        "frame {i}: whole JSON frame not ending with a closing bracket"
                    );
                }
            }
            Protocol::Http => {
                assert!(
                    http::METHODS.iter().any(|m| f.bytes.starts_with(m)),
                    "frame {i}: HTTP frame not starting with a method"
                );
                assert!(
                    f.header_len <= f.len(),
                    "frame {i}: HTTP header_len {} > frame length {}",
                    f.header_len,
                    f.len()
                );
                match &f.error {
                    None => {
                        let header = http_head(i, f);
                        let body = f.body();
                        if header.is_chunked() {
                            assert!(
                                http::dechunk(body).is_some(),
                                "frame {i}: clean chunked body does not de-chunk"
                            );
                        } else {
                            let declared = content_length(&header).unwrap_or_else(|| {
                                panic!("frame {i}: clean HTTP frame with a bad Content-Length")
                            });
                            assert_eq!(
                                body.len() as u64,
                                declared,
                                "frame {i}: clean HTTP body is not Content-Length long"
                            );
                        }
                    }
                    Some(FrameError::Oversized { declared, max }) => {
                        assert_eq!(*max, max_frame, "frame {i}: Oversized.max");
                        assert!(
                            *declared > max_frame as u64,
                            "frame {i}: Oversized declares {declared} <= max {max_frame}"
                        );
                        let header = http_head(i, f);
                        assert!(!header.is_chunked(), "frame {i}: Oversized chunked request");
                        assert_eq!(
                            Some(*declared),
                            content_length(&header).map(|n| n + f.header_len as u64),
                            "frame {i}: Oversized.declared is not head + Content-Length"
                        );
                        let skip_end = (f.offset + declared).min(len);
                        accounted[start..skip_end as usize].fill(true);
                        next_min = skip_end;
                    }
                    Some(FrameError::TooLong { max }) => {
                        assert_eq!(*max, max_frame, "frame {i}: TooLong.max");
                        assert_eq!(f.len(), max_frame, "frame {i}: TooLong frame length");
                    }
                    Some(FrameError::Incomplete { have, need }) => {
                        assert_eq!(*have, f.len(), "frame {i}: Incomplete.have");
                        assert!(
                            *need == 0 || have < need,
                            "frame {i}: Incomplete with have {have} >= need {need}"
                        );
                        if f.header_len > 0 {
                            http_head(i, f);
                        }
                    }
                    Some(FrameError::Malformed(_) | FrameError::Unrecognized) => {}
                }
            }
            Protocol::Junk => {
                assert_eq!(f.header_len, 0, "frame {i}: junk with a header");
                assert_eq!(
                    f.error,
                    Some(FrameError::Unrecognized),
                    "frame {i}: junk must be Unrecognized"
                );
            }
        }
        if f.protocol != Protocol::Junk {
            assert_ne!(
                f.error,
                Some(FrameError::Unrecognized),
                "frame {i}: Unrecognized on a {:?} frame",
                f.protocol
            );
        }
        if let Some(FrameError::Malformed(_) | FrameError::TooLong { .. }) = &f.error {
            assert_eq!(
                f.protocol,
                Protocol::Http,
                "frame {i}: {:?} on a {:?} frame",
                f.error,
                f.protocol
            );
        }
        if let Some((header_len, len_at)) = header_layout(f.protocol) {
            match &f.error {
                None => {
                    assert_eq!(f.header_len, header_len, "frame {i}: header_len");
                    assert_eq!(
                        f.len() as u64,
                        declared_total(f, header_len, len_at),
                        "frame {i}: clean {:?} frame is not header + declared body long",
                        f.protocol
                    );
                }
                Some(FrameError::Oversized { declared, max }) => {
                    assert_eq!(f.header_len, header_len, "frame {i}: header_len");
                    assert_eq!(*max, max_frame, "frame {i}: Oversized.max");
                    assert!(
                        *declared > max_frame as u64,
                        "frame {i}: Oversized declares {declared} <= max {max_frame}"
                    );
                    assert_eq!(
                        *declared,
                        declared_total(f, header_len, len_at),
                        "frame {i}: Oversized.declared differs from the header"
                    );
                    let skip_end = (f.offset + declared).min(len);
                    accounted[start..skip_end as usize].fill(true);
                    next_min = skip_end;
                }
                Some(FrameError::Incomplete { have, need }) => {
                    assert_eq!(*have, f.len(), "frame {i}: Incomplete.have");
                    assert_eq!(
                        f.header_len,
                        header_len.min(f.len()),
                        "frame {i}: header_len"
                    );
                    if f.len() >= len_at + 4 {
                        assert_eq!(
                            *need as u64,
                            declared_total(f, header_len, len_at),
                            "frame {i}: Incomplete.need differs from the header"
                        );
                    }
                    assert!(have < need, "frame {i}: Incomplete with have >= need");
                }
                Some(
                    FrameError::Unrecognized
                    | FrameError::Malformed(_)
                    | FrameError::TooLong { .. },
                ) => unreachable!(),
            }
        }
        if let Some(FrameError::Incomplete { .. }) = f.error {
            assert_eq!(
                end as u64, len,
                "frame {i}: Incomplete frame does not end at the end of the stream"
            );
        }
        if let Some(FrameError::Oversized { .. }) = f.error {
            assert!(
                header_layout(f.protocol).is_some() || f.protocol == Protocol::Http,
                "frame {i}: Oversized on a {:?} frame",
                f.protocol
            );
        }
    }
    if let Some(at) = accounted
        .iter()
        .zip(stream)
        .position(|(&acc, &b)| !acc && !is_padding(b))
    {
        panic!(
            "byte {:#04x} at offset {at} is in no frame, is not padding and is not inside an oversized frame's declared length",
            stream[at]
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < PARAMS {
        return;
    }
    let (params, stream) = data.split_at(PARAMS);
    let max_frame = max_frame_of(&params[..4]);
    let sizes = chunk_sizes(&params[4..]);
    let config = DecoderConfig { max_frame };

    let mut whole_decoder = Decoder::new(config);
    assert_eq!(whole_decoder.max_frame(), max_frame);
    let whole = decode(&mut whole_decoder, stream, &[stream.len().max(1)]);

    let mut decoder = Decoder::new(config);
    let chunked = decode(&mut decoder, stream, &sizes);
    assert_same("whole vs chunked", &whole, &chunked);

    // finish() resets the decoder for a new stream starting at offset 0.
    let again = decode(&mut decoder, stream, &[stream.len().max(1)]);
    assert_same(
        "fresh decoder vs decoder reused after finish()",
        &whole,
        &again,
    );

    check_frames(stream, max_frame, &whole);
});
