//! The one place errors become HTTP answers. User mistakes are 4xx with the
//! documented body `{"message", "code"}`; anything else is a 500 with a
//! generic body, and the full error is logged once, here.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// A 400 with extra fields in the body (e.g. the rejected lines).
    #[error("{message}")]
    Detailed {
        code: &'static str,
        message: String,
        details: serde_json::Value,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests; retry in {} s", .0.as_secs().max(1))]
    TooManyRequests(Duration),
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    /// A service this server depends on (an AI endpoint, a query)
    /// failed: logged in full, answered generically.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// A feature this server is not configured for.
    #[error("{0}")]
    NotConfigured(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            message: message.into(),
        }
    }

    /// An unexpected failure: logged in full, answered generically.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } | Self::Detailed { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::NotFound { code, .. }
            | Self::Detailed { code, .. } => code,
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::Conflict(_) => "CONFLICT",
            Self::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::Unsupported(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::Unprocessable(_) => "NOT_EVALUABLE",
            Self::TooManyRequests(_) => "TOO_MANY_REQUESTS",
            Self::Unavailable { .. } => "SERVICE_UNAVAILABLE",
            Self::NotConfigured(_) => "NOT_CONFIGURED",
            Self::BadGateway(_) => "BAD_GATEWAY",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }
}

/// Set by a layer above the APIs (the cluster, when plans run on one):
/// the answer to give instead of a 500 when an internal error's text says
/// that layer could not run the request.
static UNAVAILABLE: std::sync::OnceLock<fn(&str) -> Option<ApiError>> = std::sync::OnceLock::new();

/// Installs the check of [`UNAVAILABLE`] (once per process).
pub fn classify_unavailable(check: fn(&str) -> Option<ApiError>) {
    let _ = UNAVAILABLE.set(check);
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) | Self::BadGateway(detail) = &self
            && let Some(instead) = UNAVAILABLE.get().and_then(|check| check(detail))
        {
            tracing::error!(error = %detail, "the cluster failed a request");
            return instead.into_response();
        }
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                "internal error; the server log has the details".to_string()
            }
            Self::BadGateway(detail) => {
                tracing::error!(error = %detail, "upstream failed");
                "the analytics query failed; retry after a few seconds".to_string()
            }
            other => other.to_string(),
        };
        let mut body = serde_json::to_value(Body {
            message: &message,
            code: self.code(),
        })
        .expect("serialisable");
        if let (
            Self::Detailed {
                details: serde_json::Value::Object(extra),
                ..
            },
            Some(obj),
        ) = (&self, body.as_object_mut())
        {
            obj.extend(extra.clone());
        }
        let mut response = (status, Json(body)).into_response();
        let retry = match &self {
            Self::TooManyRequests(d) => Some(*d),
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        if let Some(d) = retry {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<crate::engine::Error> for ApiError {
    fn from(e: crate::engine::Error) -> Self {
        match e {
            crate::engine::Error::Compile(crate::compile::Error::Invalid(p)) => {
                ApiError::bad("INVALID_ARGUMENT", p.to_string())
            }
            crate::engine::Error::Compile(crate::compile::Error::Field { path, message }) => {
                ApiError::bad("INVALID_ARGUMENT", format!("{path}: {message}"))
            }
            e @ crate::engine::Error::Busy(_) => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: Duration::from_secs(2),
            },
            e @ crate::engine::Error::TooLarge { .. } => {
                ApiError::bad("RESULT_TOO_LARGE", e.to_string())
            }
            e @ crate::engine::Error::Timeout(_) => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: Duration::from_secs(30),
            },
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::skill_metrics::Invalid> for ApiError {
    fn from(e: crate::skill_metrics::Invalid) -> Self {
        ApiError::bad(e.code, e.message)
    }
}

impl From<crate::analytics::Error> for ApiError {
    fn from(e: crate::analytics::Error) -> Self {
        match e {
            crate::analytics::Error::Invalid { code, message } => ApiError::bad(code, message),
            crate::analytics::Error::Engine(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

/// A catalog document changed by too many writers at once is worth a
/// retry; any other storage failure is the server's.
impl From<crate::storage::Error> for ApiError {
    fn from(e: crate::storage::Error) -> Self {
        match e {
            crate::storage::Error::Contended { key } => ApiError::Unavailable {
                message: format!("too many concurrent changes to {key}; try again"),
                retry_after: std::time::Duration::from_secs(1),
            },
            e => ApiError::internal(e),
        }
    }
}

impl From<crate::interaction::Error> for ApiError {
    fn from(e: crate::interaction::Error) -> Self {
        use crate::interaction::Error;
        match e {
            Error::Invalid { code, message } => ApiError::bad(code, message),
            e @ Error::NotFound(_) => ApiError::not_found("METRIC_NOT_FOUND", e.to_string()),
            Error::NotCalculable(message) => ApiError::Unprocessable(message),
            e @ Error::Contended(_) => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: std::time::Duration::from_secs(1),
            },
            Error::Storage(e) => ApiError::internal(e),
            Error::Engine(e) => e.into(),
        }
    }
}
