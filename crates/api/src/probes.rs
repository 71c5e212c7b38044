//! `GET /healthz` and `GET /readyz`: liveness and readiness, never behind the token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{query, ApiResult, ApiState};

/// Liveness
///
/// The process serves HTTP. Does not touch the store. No authentication.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    operation_id = "healthz",
    security(()),
    responses(
        (status = 200, description = "Always `ok` followed by a newline.", body = String,
         content_type = "text/plain", example = "ok\n"),
    )
)]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz` while the server is ready.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"ready": true, "last_event_id": 1234}))]
pub(crate) struct Ready {
    /// Always `true` here.
    ready: bool,
    /// Newest event id in the log; 0 when the log is empty.
    last_event_id: i64,
}

/// `/readyz` while the server is not ready.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"ready": false, "error": "store writes are failing: database or disk is full"}))]
pub(crate) struct NotReady {
    /// Always `false` here.
    ready: bool,
    /// Why not.
    error: String,
}

/// Readiness
///
/// The store answers a query and commits succeed. No authentication. While commits fail (a full
/// disk, a read-only file system: the writer retries and ingest waits) or the store cannot be read,
/// 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    operation_id = "readyz",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Ready),
        (status = 500, response = crate::openapi::responses::InternalError),
        (status = 503, description = "Not ready: commits fail (full disk, damaged store). When the \
         store cannot even be opened or queried, the body is an `Error` instead \
         (`{\"error\": \"store: …\"}`).", body = NotReady),
    )
)]
pub(crate) async fn readyz(State(state): State<ApiState>) -> ApiResult<Response> {
    if let Some(error) = state.live.store_failure() {
        let body = NotReady {
            ready: false,
            error: format!("store writes are failing: {error}"),
        };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    let last_event_id = query(&state, |db| db.last_event_id()).await?;
    Ok(Json(Ready {
        ready: true,
        last_event_id,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;

    #[test]
    fn probe_and_error_answers_keep_their_json() {
        let ready = Ready {
            ready: true,
            last_event_id: 3,
        };
        let not_ready = NotReady {
            ready: false,
            error: "disk full".into(),
        };
        let error = ApiError::new(StatusCode::NOT_FOUND, "no frame 4");
        assert_eq!(
            serde_json::to_string(&ready).unwrap(),
            r#"{"ready":true,"last_event_id":3}"#
        );
        assert_eq!(
            serde_json::to_string(&not_ready).unwrap(),
            r#"{"ready":false,"error":"disk full"}"#
        );
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"error":"no frame 4"}"#
        );
    }
}
