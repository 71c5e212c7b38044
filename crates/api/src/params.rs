//! Typed request parameters: a query string into a struct that refuses unknown parameters, and a
//! numeric path id. Both answer a malformed request with the API's JSON 400, naming the parameter.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{bad, ApiError};

/// The query string as `T` (a struct with `deny_unknown_fields`): an unknown parameter or a value of
/// the wrong type is a 400 that names it.
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = form_urlencoded::parse(query.as_bytes());
        serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs))
            .map(Params)
            .map_err(|e| {
                let message = e.inner().to_string();
                match e.path().to_string().as_str() {
                    // serde names the parameter itself: `unknown field `colour`, expected one of …`.
                    _ if message.starts_with("unknown field") => {
                        bad(message.replacen("unknown field", "unknown parameter", 1))
                    }
                    "." => bad(message),
                    path => bad(format!("{path}: {message}")),
                }
            })
    }
}

/// A numeric id in the path (`/api/frames/{id}`).
pub(crate) struct PathId(pub(crate) i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad(e.to_string()))?;
        text.parse()
            .map(PathId)
            .map_err(|_| bad(format!("{text:?} is not a frame id")))
    }
}
