//! The frame archive's endpoints: a page of frames, one frame with its decode, its bytes.

use alarm_center_store::{FrameQuery, StoredFrame};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::openapi::responses::{
    BadRequest, InternalError, NotFound, StoreUnavailable, Unauthorized,
};
use super::openapi::{decoded, rows};
use super::params::{Params, PathId};
use super::read::parse_limit;
use super::{decode, query, ApiError, ApiResult, ApiState};

/// A page of frames.
#[derive(Serialize, ToSchema)]
pub(crate) struct FramesPage {
    /// Newest first, without their bytes.
    #[schema(value_type = Vec<rows::Frame>)]
    frames: Vec<StoredFrame>,
    /// The id of the last frame of this page when the page is full (pass it as `before`); null
    /// otherwise.
    #[schema(required = true)]
    next: Option<i64>,
}

/// `GET /api/frames` parameters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FramesParams {
    /// Only frames of this device id.
    device: Option<String>,
    /// `true`: only junk frames, frames of kind `unknown` and frames with a decode error (the
    /// material for reverse-engineering). Only `true` and `false` are accepted.
    #[serde(default)]
    #[param(default = false)]
    unknown: bool,
    /// Only frames with an id below this (the `next` of the previous page).
    before: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 10000, default = 100)]
    limit: Option<u32>,
}

/// Archived raw frames, newest first
///
/// Frame metadata newest first (without the bytes; see `/api/frames/{id}` and
/// `/api/frames/{id}/raw`), with the same `before`/`next` pagination as `/api/events`. Any
/// parameter not listed here is a 400.
#[utoipa::path(
    get,
    path = "/api/frames",
    tag = "frames",
    operation_id = "listFrames",
    params(FramesParams),
    responses(
        (status = 200, description = "A page of frames.", body = FramesPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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
#[derive(Serialize, ToSchema)]
pub(crate) struct FrameAnswer {
    /// The stored classification.
    #[schema(value_type = rows::Frame)]
    frame: StoredFrame,
    /// The frame's bytes, lower-case hex without separators.
    #[schema(pattern = "^([0-9a-f]{2})*$")]
    hex: String,
    /// The decode records of the bytes, decoded now.
    #[schema(value_type = Vec<decoded::DecodeRecord>)]
    decoded: Vec<Box<RawValue>>,
}

/// One frame, its bytes as hex and its decode
///
/// The stored classification, the bytes as lower-case hex, and the field-by-field decode of the
/// bytes recomputed now (the `alarm-center decode` record of protocol.md §5, with `raw`). The decode
/// starts from a fresh session: a DVRIP 0x69 mask is diffed against nothing, so its `events` may
/// differ from the events stored for the frame, which are authoritative. The bytes may decode into
/// more than one record (e.g. a junk frame).
#[utoipa::path(
    get,
    path = "/api/frames/{id}",
    tag = "frames",
    operation_id = "getFrame",
    params(("id" = i64, Path, description = "Frame id. Anything that is not a 64-bit integer is a 400.")),
    responses(
        (status = 200, description = "The frame.", body = FrameAnswer),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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
#[utoipa::path(
    get,
    path = "/api/frames/{id}/raw",
    tag = "frames",
    operation_id = "getFrameRaw",
    params(("id" = i64, Path, description = "Frame id. Anything that is not a 64-bit integer is a 400.")),
    responses(
        (status = 200, description = "The bytes.", content(("application/octet-stream")),
         headers(("Content-Disposition" = String, description = "`attachment; filename=\"frame-<id>.bin\"`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = StoreUnavailable),
    )
)]
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
