//! `POST /v1/{workspace_id}/events`: newline-delimited JSON events, plain,
//! gzip or zstd. 200 means every event is durable; a 4xx means none was
//! taken.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};

use super::auth::Principal;
use super::{ApiError, AppState};
use crate::ingest;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub accepted: usize,
}

/// `POST /v1/{workspace_id}/events`: newline-delimited JSON events.
#[utoipa::path(
    post,
    path = "/v1/{workspace_id}/events",
    tag = "Events",
    params(
        ("workspace_id" = String, Path, description = "The workspace the events belong to", example = "ws-demo"),
        ("Idempotency-Key" = Option<String>, Header, description = "A resent body with the same key (kept 24 hours) is counted once"),
        ("Content-Encoding" = Option<String>, Header, description = "gzip or zstd, or none"),
    ),
    request_body(content = String, content_type = "text/plain", description = "Newline-delimited JSON: one event (EVENTS.md) a line; any Content-Type is read so"),
    responses(
        (status = 200, description = "Every event is durable", body = Accepted),
        (status = 415, description = "A Content-Encoding other than gzip or zstd", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "The Idempotency-Key was used before with another body", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn ingest_events(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Accepted>, ApiError> {
    let Path(ws) =
        path.map_err(|e| ApiError::bad("INVALID_WORKSPACE", format!("workspace_id: {e}")))?;
    if ws.is_empty() || ws.chars().count() > 255 {
        return Err(ApiError::bad(
            "INVALID_WORKSPACE",
            "workspace_id must be 1 to 255 characters",
        ));
    }
    principal.require(&ws)?;
    principal.require_admin()?;
    let ingest = &state.ingest;
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the body is larger than {} bytes",
                ingest.limits.max_body_bytes
            ))
        } else {
            ApiError::bad(
                "INVALID_REQUEST_BODY",
                format!("could not read the body: {e}"),
            )
        }
    })?;
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::Unsupported("Content-Encoding must be text".into()))?,
        ),
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v.to_str().map_err(|_| {
                ApiError::bad(
                    "INVALID_IDEMPOTENCY_KEY",
                    "Idempotency-Key must be visible ASCII",
                )
            })?;
            ingest::check_key(k).map_err(|m| ApiError::bad("INVALID_IDEMPOTENCY_KEY", m))?;
            Some(k.to_string())
        }
    };
    let decoded = ingest.decode(&body, encoding)?;
    let rows = ingest.parse(&ws, &decoded)?;
    let accepted = match key {
        Some(key) => ingest.append_once(&ws, &key, &decoded, &rows).await?,
        None => ingest.append(&rows).await?,
    };
    Ok(Json(Accepted { accepted }))
}

impl From<ingest::Error> for ApiError {
    fn from(e: ingest::Error) -> Self {
        use ingest::Error as E;
        match e {
            E::UnsupportedEncoding(_) => ApiError::Unsupported(e.to_string()),
            E::BadCompression { .. } => ApiError::bad("INVALID_ENCODING", e.to_string()),
            E::TooLarge(m) => ApiError::PayloadTooLarge(m),
            E::Empty => ApiError::bad("NO_EVENTS", e.to_string()),
            E::Invalid(ref errors) => {
                let first: Vec<String> = errors
                    .iter()
                    .take(3)
                    .map(|l| format!("line {}: {}", l.line, l.reason))
                    .collect();
                ApiError::Detailed {
                    code: "INVALID_EVENTS",
                    message: format!("{e}: {}", first.join("; ")),
                    details: serde_json::json!({ "errors": errors }),
                }
            }
            E::Backpressure { .. } => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: std::time::Duration::from_secs(1),
            },
            E::Standby => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: std::time::Duration::from_secs(10),
            },
            E::KeyReused(_) => ApiError::Unprocessable(e.to_string()),
            E::Storage(s) => ApiError::internal(s),
        }
    }
}
