//! The HTTP API: one router nesting each documented API, paths exactly as
//! in CONTRACT.md. Handlers extract, call the engine, shape the answer.

pub mod alexa;
pub mod analytics;
pub mod auth;
pub mod csv;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod interaction;
pub mod metric_store;
pub mod token;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::engine::Engine;
use auth::{Auth, Principal};
pub use error::ApiError;

/// The most a request body may hold (queries and definitions; ingest has
/// its own limit).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What every handler shares.
pub struct AppState {
    pub engine: Engine,
    pub auth: Arc<Auth>,
    pub clock: Clock,
    pub tokens: token::Signer,
    pub ingest: Arc<crate::ingest::Ingest>,
    /// The AI extractor of the Metric Store (none unless configured).
    pub ai: crate::metric_store::extract::Ai,
    known_workspaces: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(engine: Engine, auth: Arc<Auth>, clock: Clock, tokens: token::Signer) -> Arc<Self> {
        Self::with_ai(
            engine,
            auth,
            clock,
            tokens,
            crate::metric_store::extract::Ai::none(),
        )
    }

    /// As [`AppState::new`], with an AI extractor for the Metric Store.
    pub fn with_ai(
        engine: Engine,
        auth: Arc<Auth>,
        clock: Clock,
        tokens: token::Signer,
        ai: crate::metric_store::extract::Ai,
    ) -> Arc<Self> {
        let ingest = crate::ingest::Ingest::new(&engine, crate::ingest::Limits::default());
        Arc::new(Self {
            engine,
            auth,
            clock,
            tokens,
            ingest,
            ai,
            known_workspaces: Mutex::default(),
        })
    }

    /// Whether any event names `workspace`. Positive answers are cached:
    /// a workspace with events never stops having them.
    pub async fn workspace_exists(&self, workspace: &str) -> Result<bool, ApiError> {
        if self
            .known_workspaces
            .lock()
            .expect("not poisoned")
            .contains(workspace)
        {
            return Ok(true);
        }
        let exists = self.engine.workspace_exists(workspace).await?;
        if exists {
            self.known_workspaces
                .lock()
                .expect("not poisoned")
                .insert(workspace.to_string());
        }
        Ok(exists)
    }
}

/// The server's idea of "now": `METRICSTORE_NOW` if set, else the clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pinned_ms: Option<i64>,
}

impl Clock {
    pub fn system() -> Self {
        Self { pinned_ms: None }
    }

    pub fn pinned(ms: i64) -> Self {
        Self {
            pinned_ms: Some(ms),
        }
    }

    /// Reads `METRICSTORE_NOW` (RFC 3339).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("METRICSTORE_NOW") {
            Ok(v) if !v.trim().is_empty() => chrono::DateTime::parse_from_rfc3339(v.trim())
                .map(|t| Self::pinned(t.timestamp_millis()))
                .map_err(|e| format!("METRICSTORE_NOW {v:?} is not RFC 3339: {e}")),
            _ => Ok(Self::system()),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.pinned_ms
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
    }
}

/// The router of every API.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The router of every API plus `extra` routes of the layers above (the
/// metric alerts), under the same fallbacks, limits and tracing.
pub fn router_with(state: Arc<AppState>, extra: Router<Arc<AppState>>) -> Router {
    Router::new()
        .merge(extra)
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v2/skills/metrics", get(alexa::list_metrics))
        .route("/v2/skills/{skill_id}/metrics", post(alexa::get_metrics))
        .route(
            "/v2/skills/{skill_id}/analytics/retention",
            get(analytics::retention),
        )
        .route(
            "/v2/skills/{skill_id}/analytics/paths",
            get(analytics::paths),
        )
        .route(
            "/v2/skills/{skill_id}/analytics/sessions",
            get(analytics::sessions),
        )
        .route(
            "/v2/skills/{skill_id}/analytics/intents",
            get(analytics::intents),
        )
        .merge(dashboard::routes())
        .route(
            "/v1/{workspace_id}/events",
            post(events::ingest_events).layer(axum::extract::DefaultBodyLimit::max(
                crate::ingest::Limits::default().max_body_bytes,
            )),
        )
        .route(
            "/api/interaction-metrics",
            get(interaction::list).post(interaction::create),
        )
        .route(
            "/api/interaction-metrics/types",
            get(interaction::list_types),
        )
        .route(
            "/api/interaction-metrics/fields/discover",
            get(interaction::discover),
        )
        .route(
            "/api/interaction-metrics/calculate-all",
            post(interaction::calculate_all),
        )
        .route(
            "/api/interaction-metrics/{id}",
            get(interaction::get)
                .put(interaction::update)
                .delete(interaction::delete),
        )
        .route(
            "/api/interaction-metrics/{id}/calculate",
            post(interaction::calculate),
        )
        .route(
            "/v1/{workspace_id}/settings/metrics",
            get(metric_store::get_settings).put(metric_store::put_settings),
        )
        .route("/v1/{workspace_id}/metrics", get(metric_store::latest))
        .route(
            "/v1/{workspace_id}/metrics/catalog",
            get(metric_store::catalog),
        )
        .route(
            "/v1/{workspace_id}/metrics/{metric_key}",
            get(metric_store::values),
        )
        .route(
            "/v1/{workspace_id}/metrics/{metric_key}/trend",
            get(metric_store::trend),
        )
        .route(
            "/v1/{workspace_id}/metrics/{metric_key}/evaluate",
            post(metric_store::evaluate),
        )
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::bad("METHOD_NOT_ALLOWED", "this route does not take that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        state.auth.authenticate(&parts.headers)
    }
}

/// A JSON body whose every failure (too large, not JSON, wrong shape) is a
/// documented 4xx, not axum's plain-text rejection.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes"
                ))
            } else {
                ApiError::bad(
                    "INVALID_REQUEST_BODY",
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad(
                "INVALID_REQUEST_BODY",
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad(
                "INVALID_REQUEST_BODY",
                format!("the request body is not valid JSON: {e}"),
            )
        })
    }
}
