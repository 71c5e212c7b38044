//! `POST /api/decode` and the decode of stored frames: off the async workers, a bounded number at once,
//! answers of bounded size.

use std::sync::atomic::Ordering;

use alarm_center_proto::record::{hex, StreamInfo};
use alarm_center_proto::{Decoder, DecoderConfig, Frame, FrameRecord, Session};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::openapi::decoded::DecodeRecord;
use super::openapi::responses::{Busy, ForeignOrigin, InternalError, Unauthorized};
use super::{bad, busy, Api, ApiError, ApiResult};

/// Largest request body, bytes.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most frames one answer lists.
pub(crate) const MAX_FRAMES: usize = 10_000;
/// Most events one answer lists (over all its frames).
pub(crate) const MAX_EVENTS: usize = 100_000;
/// Most bytes of frame records in one answer (the answer is this plus a few bytes per stream).
pub(crate) const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Content type of a hex dump. Not `text/plain`: a web page can send that (and form encodings) to any
/// server without asking the browser's permission (a CORS preflight).
pub(crate) const HEX_TYPE: &str = "text/x-hexdump";
/// Content type of raw bytes.
pub(crate) const BYTES_TYPE: &str = "application/octet-stream";

/// How much an answer may still hold; says why it stopped.
#[derive(Debug)]
pub(crate) struct Budget {
    frames: usize,
    events: usize,
    bytes: usize,
    /// Why the answer was cut short, once it was.
    pub(crate) truncated: Option<String>,
}

impl Budget {
    pub(crate) fn new() -> Budget {
        Budget {
            frames: 0,
            events: 0,
            bytes: 0,
            truncated: None,
        }
    }

    /// Takes a frame record of `len` bytes with `events` events, or says why not.
    fn admit(&mut self, events: usize, len: usize) -> bool {
        let why = if self.frames >= MAX_FRAMES {
            format!(
                "the input has more than {MAX_FRAMES} frames: the first {MAX_FRAMES} are listed"
            )
        } else if self.events + events > MAX_EVENTS {
            format!(
                "the frames carry more than {MAX_EVENTS} events: the frames up to that are listed"
            )
        } else if self.bytes + len > MAX_ANSWER {
            format!(
                "the answer would exceed {} MiB: the frames up to that are listed",
                MAX_ANSWER >> 20
            )
        } else {
            self.frames += 1;
            self.events += events;
            self.bytes += len;
            return true;
        };
        self.truncated = Some(why);
        false
    }
}

/// Decodes one stream of bytes into decode records (the `alarm-center decode` schema), serialised
/// once, until `budget` runs out (then `budget.truncated` says why).
pub(crate) fn records(bytes: &[u8], max_frame: usize, budget: &mut Budget) -> Vec<Box<RawValue>> {
    let mut decoder = Decoder::new(DecoderConfig { max_frame });
    let mut session = Session::new();
    let mut out = Vec::new();
    for frame in decoder.feed(bytes) {
        if !push(&mut session, &frame, budget, &mut out) {
            return out;
        }
    }
    for frame in decoder.finish() {
        if !push(&mut session, &frame, budget, &mut out) {
            return out;
        }
    }
    out
}

/// Decodes `frame` and adds its record to `out` if the budget allows.
fn push(
    session: &mut Session,
    frame: &Frame,
    budget: &mut Budget,
    out: &mut Vec<Box<RawValue>>,
) -> bool {
    if budget.truncated.is_some() {
        return false;
    }
    let decoded = session.decode(frame);
    let record = FrameRecord {
        frame,
        decoded: &decoded,
        stream: None::<&StreamInfo>,
        include_raw: true,
    };
    let raw = serde_json::value::to_raw_value(&record).unwrap_or_else(|e| {
        let failed = Unserialisable {
            offset: frame.offset,
            error: format!("cannot serialise: {e}"),
        };
        serde_json::value::to_raw_value(&failed).unwrap_or_else(|_| null())
    });
    if !budget.admit(decoded.events.len(), raw.get().len()) {
        return false;
    }
    out.push(raw);
    true
}

/// In place of a record that cannot be serialised (never seen: every record is plain data).
#[derive(Serialize)]
struct Unserialisable {
    offset: u64,
    error: String,
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_default()
}

/// The stored frame's bytes as hex and their decode records.
pub(crate) fn stored_frame(bytes: &[u8], max_frame: usize) -> (String, Vec<Box<RawValue>>) {
    (hex(bytes), records(bytes, max_frame, &mut Budget::new()))
}

/// What the body of a decode request is.
#[derive(Debug, Clone, Copy)]
enum Input {
    Bytes,
    Hex,
}

fn input_kind(headers: &HeaderMap) -> ApiResult<Input> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some(BYTES_TYPE) => Ok(Input::Bytes),
        Some(HEX_TYPE) => Ok(Input::Hex),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {}: send a hex dump as {HEX_TYPE} or bytes as {BYTES_TYPE} \
                 (text/plain and form types are refused: any web page could send them)",
                given
                    .as_deref()
                    .map_or("missing".to_owned(), |t| format!("{t:?}"))
            ),
        )),
    }
}

/// The frames of one stream of the input.
#[derive(Serialize, ToSchema)]
#[schema(as = DecodedStream)]
pub(crate) struct StreamAnswer {
    /// The stream's frames, in input order.
    #[schema(value_type = Vec<DecodeRecord>)]
    frames: Vec<Box<RawValue>>,
}

/// The frames of each stream, in input order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "streams": [{"frames": [{
        "offset": 0, "length": 36, "protocol": "dvrip", "command": 105, "kind": "alarm",
        "body_format": "mask",
        "header": {"byte3": 0, "body_length": 4, "alarm_type": 2, "channel_group": 0, "body_format_byte": 0},
        "body": {"mask": 5},
        "events": [
            {"code": "VideoMotion", "action": "start", "index": 0, "channel": 1},
            {"code": "VideoMotion", "action": "start", "index": 2, "channel": 3}
        ],
        "raw": "690000000400000000000000020000000000000000000000000000000000000005000000"
    }]}],
    "truncated": false
}))]
pub(crate) struct DecodeAnswer {
    /// One entry per stream (always one for `application/octet-stream`).
    streams: Vec<StreamAnswer>,
    /// The input held more than the answer's limits allow; the answer stops at the limit.
    truncated: bool,
    /// Present when `truncated`; which limit was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        examples("the input has more than 10000 frames: the first 10000 are listed")
    )]
    truncated_reason: Option<String>,
}

/// Decodes a request body into the answer's JSON (on a blocking thread).
fn decode_body(input: Input, body: &[u8], max_frame: usize) -> ApiResult<(Vec<u8>, bool)> {
    let owned;
    let streams: Vec<&[u8]> = match input {
        Input::Bytes => vec![body],
        Input::Hex => {
            let text = std::str::from_utf8(body).map_err(|_| {
                bad(format!(
                    "the body is not UTF-8 text; send bytes as {BYTES_TYPE}"
                ))
            })?;
            owned =
                alarm_center_capture::parse_hex(text).map_err(|e| bad(format!("hex dump: {e}")))?;
            owned.iter().map(|s| s.bytes.as_slice()).collect()
        }
    };
    let mut budget = Budget::new();
    let mut answer = DecodeAnswer {
        streams: Vec::new(),
        truncated: false,
        truncated_reason: None,
    };
    for stream in streams {
        if budget.truncated.is_some() {
            break;
        }
        answer.streams.push(StreamAnswer {
            frames: records(stream, max_frame, &mut budget),
        });
    }
    answer.truncated = budget.truncated.is_some();
    answer.truncated_reason = budget.truncated;
    let json = serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((json, answer.truncated))
}

/// Decode bytes or a hex dump
///
/// Decodes the body as `alarm-center decode` would and answers the frames of each stream. Does not
/// touch the store.
///
/// * `Content-Type: application/octet-stream` (any parameters allowed): the body is the raw bytes of
///   one stream.
/// * `Content-Type: text/x-hexdump` (any parameters allowed): the body must be UTF-8 text holding a
///   hex dump in any style `alarm-center decode` reads — plain hex (`69 00 00 00`, `0x69,`, `\x69`,
///   `xxd -p`), `xxd`, `hexdump -C`, Wireshark/`tshark -x`; `#` starts a comment line; blank lines
///   (or an offset going back to 0) separate streams.
/// * Any other or no content type is a 415: `text/plain` and the form types are what any web page
///   can post to any server without a CORS preflight, so they are refused (CSRF). With curl, give
///   `-H 'Content-Type: text/x-hexdump'`.
///
/// Each stream is decoded from a fresh decoder and session, with the server's maximum frame size.
///
/// Bounds: the body is at most 4 MiB (4,194,304 bytes; 413 beyond). The answer lists at most 10,000
/// frames, 100,000 events and 8 MiB of frame records; when the input holds more, the answer stops
/// there with `truncated: true` and `truncated_reason` saying which limit was reached. Decoding runs
/// on blocking threads, never on the threads that serve devices: at most 2 decodes run and at most 8
/// decode requests are in progress at once; a request beyond that gets 503 with `Retry-After: 1`.
#[utoipa::path(
    post,
    path = "/api/decode",
    tag = "decode",
    operation_id = "decode",
    request_body(
        description = "A hex dump as `text/x-hexdump`, or raw bytes as `application/octet-stream`. \
                       Must not be empty.",
        content(
            (String = "text/x-hexdump", example = json!("00000000: 6900 0000 0400 0000 0000 0000 0200 0000  i...............\n00000010: 0000 0000 0000 0000 0000 0000 0000 0000  ................\n00000020: 0500 0000                                ....\n")),
            ("application/octet-stream"),
        ),
    ),
    responses(
        (status = 200, description = "The frames of each stream, in input order.", body = DecodeAnswer),
        (status = 400, description = "Empty body; a text body that is not UTF-8; or a hex dump that \
         does not parse (`{\"error\": \"hex dump: …\"}`).", body = ApiError,
         example = json!({"error": "empty body: send a hex dump as text/x-hexdump or bytes as application/octet-stream"})),
        (status = 401, response = Unauthorized),
        (status = 403, response = ForeignOrigin),
        (status = 413, description = "Body too large (over 4 MiB).", body = ApiError,
         example = json!({"error": "at most 4194304 bytes"})),
        (status = 415, description = "Missing content type, or one other than `text/x-hexdump` and \
         `application/octet-stream`.", body = ApiError,
         example = json!({"error": "Content-Type \"text/plain\": send a hex dump as text/x-hexdump or bytes as application/octet-stream (text/plain and form types are refused: any web page could send them)"})),
        (status = 500, response = InternalError),
        (status = 503, response = Busy),
    )
)]
pub(crate) async fn decode(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let input = input_kind(&headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let limits = &api.limits;
    let Ok(_request) = limits.decode_requests.clone().try_acquire_owned() else {
        limits.decode_busy.fetch_add(1, Ordering::Relaxed);
        return Ok(busy("the decoder is busy: retry in a moment"));
    };
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        let over = e
            .into_inner()
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some();
        if over {
            too_large()
        } else {
            bad("the body could not be read whole")
        }
    })?;
    if body.is_empty() {
        return Err(bad(format!(
            "empty body: send a hex dump as {HEX_TYPE} or bytes as {BYTES_TYPE}"
        )));
    }
    let Ok(worker) = limits.decode_workers.clone().try_acquire_owned() else {
        limits.decode_busy.fetch_add(1, Ordering::Relaxed);
        return Ok(busy("the decoder is busy: retry in a moment"));
    };
    let max_frame = api.state.max_frame;
    let (json, truncated) = tokio::task::spawn_blocking(move || {
        let _worker = worker;
        decode_body(input, &body, max_frame)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if truncated {
        limits.decode_truncated.fetch_add(1, Ordering::Relaxed);
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("at most {MAX_BODY} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alarm_center_proto::encode;

    #[test]
    fn the_budget_stops_at_the_frame_limit_and_says_why() {
        let bytes: Vec<u8> = (0..MAX_FRAMES + 5)
            .flat_map(|i| encode::dvrip_mask(2, 0, (i % 3) as u32))
            .collect();
        let mut budget = Budget::new();
        let out = records(&bytes, 1 << 20, &mut budget);
        assert_eq!(out.len(), MAX_FRAMES);
        assert!(budget.truncated.unwrap().contains("10000 frames"));
    }

    #[test]
    fn the_budget_stops_before_the_answer_size_limit() {
        let mut budget = Budget::new();
        assert!(budget.admit(1, MAX_ANSWER - 10));
        assert!(!budget.admit(1, 11));
        assert!(budget.truncated.unwrap().contains("8 MiB"));
    }
}
