//! The OpenAPI document of the API, generated from the handlers' `#[utoipa::path]` attributes and the
//! answer types, so that it cannot drift from the code (D41). `GET /api/openapi.yaml` and
//! `GET /api/openapi.json` serve it; `docs/openapi.yaml` is a copy for readers, which a test keeps
//! equal to [`yaml`] (`UPDATE_OPENAPI=1 cargo test -p alarm-center-api openapi` rewrites it).

pub mod decoded;
pub mod headers;
pub mod responses;
pub mod rows;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{decode, frames, metrics, probes, read, stream, ApiConfig, ApiError};

/// The document: every route but the web UI's files.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "alarm-center HTTP API",
        license(name = "See the repository"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "Default `api.listen` (loopback; no token required).")),
    security(("bearerAuth" = [])),
    tags(
        (name = "probes", description = "Liveness, readiness and this document; never require a token."),
        (name = "devices", description = "The devices the server knows and their connections."),
        (name = "events", description = "The event log, and live events as they are committed."),
        (name = "frames", description = "The raw frame archive."),
        (name = "decode", description = "Decoding bytes or hex dumps, without storing anything."),
        (name = "sinks", description = "The output sinks' progress through the log."),
        (name = "metrics", description = "Prometheus metrics."),
    ),
    paths(
        yaml_document,
        json_document,
        probes::healthz,
        probes::readyz,
        metrics::metrics,
        read::devices,
        read::connections,
        read::events,
        frames::frames,
        frames::frame,
        frames::frame_raw,
        decode::decode,
        read::sinks,
        stream::stream,
    ),
    components(
        schemas(
            stream::GapNotice,
            headers::DvripHeader,
            headers::DhipHeader,
            headers::XmHeader,
            headers::HttpHeader,
        ),
        responses(
            responses::BadRequest,
            responses::Unauthorized,
            responses::NotFound,
            responses::ForeignOrigin,
            responses::InternalError,
            responses::StoreUnavailable,
            responses::Busy,
        ),
    ),
    modifiers(&Prose),
)]
pub struct ApiDoc;

/// What the derive cannot say: the document's summary and description (with the defaults and
/// headers they quote taken from the code) and the bearer token scheme.
struct Prose;

impl Modify for Prose {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let defaults = ApiConfig::default();
        let seconds = |d: std::time::Duration| format!("{} s", d.as_secs());
        let about = include_str!("openapi/about.md")
            .replace(
                "{content_security_policy}",
                crate::security::CONTENT_SECURITY_POLICY,
            )
            .replace("{max_connections}", &defaults.max_connections.to_string())
            .replace("{header_timeout}", &seconds(defaults.header_timeout))
            .replace("{request_timeout}", &seconds(defaults.request_timeout));
        openapi.info.description = Some(about);
        // OpenAPI 3.1's `info.summary`, which utoipa's `Info` has no field for.
        openapi.info.extensions = Some(Extensions::from_iter([(
            "summary",
            "Devices, events, raw frames, decoding, sink status and metrics of an alarm-center server.",
        )]));
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "`Authorization: Bearer <api.token>` on `/api/*` and `/metrics`. Only checked when\n\
                 `api.token` is configured (it must be when `api.listen` is not a loopback address);\n\
                 with no token configured, requests without the header are accepted. `/healthz`,\n\
                 `/readyz` and this document never require it. The scheme word is matched\n\
                 case-sensitively (`Bearer `), and the token exactly.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearerAuth", SecurityScheme::Http(bearer));
    }
}

/// The document as YAML.
pub fn yaml() -> Result<String, String> {
    ApiDoc::openapi().to_yaml().map_err(|e| e.to_string())
}

/// The document as JSON (pretty-printed).
pub fn json() -> Result<String, String> {
    ApiDoc::openapi()
        .to_pretty_json()
        .map_err(|e| e.to_string())
}

/// A document made once, as `content_type`.
fn document(
    cell: &'static OnceLock<Result<String, String>>,
    make: fn() -> Result<String, String>,
    content_type: &'static str,
) -> Response {
    match cell.get_or_init(make) {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            text.as_str(),
        )
            .into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.as_str()).into_response(),
    }
}

/// This document, as YAML
///
/// The OpenAPI description of this API, generated by the server from its own code. No
/// authentication.
#[utoipa::path(
    get,
    path = "/api/openapi.yaml",
    tag = "probes",
    operation_id = "openapi",
    security(()),
    responses(
        (status = 200, description = "The document.", body = String,
         content_type = "application/yaml"),
    )
)]
pub(crate) async fn yaml_document() -> Response {
    static YAML: OnceLock<Result<String, String>> = OnceLock::new();
    document(&YAML, yaml, "application/yaml; charset=utf-8")
}

/// This document, as JSON
///
/// The same document as `/api/openapi.yaml`, as JSON. No authentication.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "probes",
    operation_id = "openapiJson",
    security(()),
    responses(
        (status = 200, description = "The document.", body = serde_json::Value, content_type = "application/json"),
    )
)]
pub(crate) async fn json_document() -> Response {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    document(&JSON, json, "application/json")
}
