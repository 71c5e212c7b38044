//! The frame archive's endpoints: a page of frames, one frame with its decode, its bytes.

use alarm_center_store::{FrameQuery, StoredFrame};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::params::{Params, PathId};
use super::read::parse_limit;
use super::{decode, query, ApiError, ApiResult, ApiState};

/// A page of frames.
#[derive(Serialize)]
pub(crate) struct FramesPage {
    /// Newest first, without their bytes.
    frames: Vec<StoredFrame>,
    /// The id of the last frame of this page when the page is full (pass it as `before`); null
    /// otherwise.
    next: Option<i64>,
}

/// `GET /api/frames` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FramesParams {
    /// Only frames of this device id.
    device: Option<String>,
    /// `true`: only junk frames, frames of kind `unknown` and frames with a decode error (the
    /// material for reverse-engineering). Only `true` and `false` are accepted.
    #[serde(default)]
    unknown: bool,
    /// Only frames with an id below this (the `next` of the previous page).
    before: Option<i64>,
    /// Page size.
    limit: Option<u32>,
}

/// Archived raw frames, newest first
///
/// Frame metadata newest first (without the bytes; see `/api/frames/{id}` and
/// `/api/frames/{id}/raw`), with the same `before`/`next` pagination as `/api/events`. Any
/// parameter not listed here is a 400.
pub(crate) async fn frames(
    State(state): State<ApiState>,
    Params(p): Params<FramesParams>,
) -> ApiResult<Json<FramesPage>> {
    let limit = parse_limit(p.limit, 100, 10_000)?;
    let q = FrameQuery {
        device: p.device,
        unknown: p.unknown,
        before_id: p.before,
        limit: Some(limit),
    };
    let frames = query(&state, move |db| db.frames(&q)).await?;
    let next = (frames.len() == limit as usize)
        .then(|| frames.last().map(|f| f.id))
        .flatten();
    Ok(Json(FramesPage { frames, next }))
}

/// One frame with its bytes and their decode.
#[derive(Serialize)]
pub(crate) struct FrameAnswer {
    /// The stored classification.
    frame: StoredFrame,
    /// The frame's bytes, lower-case hex without separators.
    hex: String,
    /// The decode records of the bytes, decoded now.
    decoded: Vec<Box<RawValue>>,
}

/// One frame, its bytes as hex and its decode
///
/// The stored classification, the bytes as lower-case hex, and the field-by-field decode of the
/// bytes recomputed now (the `alarm-center decode` record of protocol.md §5, with `raw`). The decode
/// starts from a fresh session: a DVRIP 0x69 mask is diffed against nothing, so its `events` may
/// differ from the events stored for the frame, which are authoritative. The bytes may decode into
/// more than one record (e.g. a junk frame).
pub(crate) async fn frame(
    State(state): State<ApiState>,
    PathId(id): PathId,
) -> ApiResult<Json<FrameAnswer>> {
    let max_frame = state.max_frame;
    let answer = query(&state, move |db| {
        Ok(db.frame(id)?.map(|frame| {
            let (hex, decoded) = decode::stored_frame(&frame.bytes, max_frame);
            FrameAnswer {
                frame,
                hex,
                decoded,
            }
        }))
    })
    .await?
    .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no frame {id}")))?;
    Ok(Json(answer))
}

/// Download a frame's bytes
///
/// The frame's bytes as stored, as an attachment named `frame-<id>.bin`.
pub(crate) async fn frame_raw(
    State(state): State<ApiState>,
    PathId(id): PathId,
) -> ApiResult<Response> {
    let stored = query(&state, move |db| db.frame(id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no frame {id}")))?;
    let disposition = format!("attachment; filename=\"frame-{id}.bin\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        stored.bytes,
    )
        .into_response())
}
