//! The error answers several endpoints share (`components.responses`), each an [`ApiError`] body.
//! Never built: the handlers answer with [`ApiError`] itself.

use utoipa::ToResponse;

use crate::ApiError;

/// A parameter is invalid or unknown.
#[derive(ToResponse)]
#[response(example = json!({"error": "limit 0: give a number from 1 to 10000"}))]
pub struct BadRequest(pub ApiError);

/// A token is configured and the request does not carry it.
#[derive(ToResponse)]
#[response(example = json!({"error": "missing or wrong bearer token"}))]
pub struct Unauthorized(pub ApiError);

/// No such frame or device.
#[derive(ToResponse)]
#[response(example = json!({"error": "no frame 42"}))]
pub struct NotFound(pub ApiError);

/// The request's `Origin` is not this server's own origin (a cross-site request).
#[derive(ToResponse)]
#[response(example = json!({
    "error": "Origin \"http://evil.example\" is not this server's own origin: cross-origin requests are refused"
}))]
pub struct ForeignOrigin(pub ApiError);

/// The store query task failed (panicked or was cancelled).
#[derive(ToResponse)]
pub struct InternalError(pub ApiError);

/// The store could not be opened or queried.
#[derive(ToResponse)]
#[response(example = json!({"error": "store: database is locked"}))]
pub struct StoreUnavailable(pub ApiError);

/// A limit was reached (the decoder is busy, or too many live streams); retry after the
/// `Retry-After` seconds.
#[derive(ToResponse)]
#[response(
    headers(("Retry-After" = u32, description = "Seconds to wait before retrying (always 1).")),
    example = json!({"error": "the decoder is busy: retry in a moment"}),
)]
pub struct Busy(pub ApiError);
