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
pub mod openapi;
pub mod token;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::get;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    router_with(state, OpenApiRouter::new())
}

/// The routes of every API, with their OpenAPI entries, before state.
fn routes(
    extra: OpenApiRouter<Arc<AppState>>,
) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    // Ingest takes larger bodies than the other routes.
    let (schemas, paths, ingest) = routes!(events::ingest_events);
    let ingest = ingest.layer(axum::extract::DefaultBodyLimit::max(
        crate::ingest::Limits::default().max_body_bytes,
    ));
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(extra)
        .routes(routes!(health))
        .routes(routes!(alexa::list_metrics))
        .routes(routes!(alexa::get_metrics))
        .routes(routes!(analytics::retention))
        .routes(routes!(analytics::paths))
        .routes(routes!(analytics::sessions))
        .routes(routes!(analytics::intents))
        .routes((schemas, paths, ingest))
        .routes(routes!(interaction::list, interaction::create))
        .routes(routes!(interaction::list_types))
        .routes(routes!(interaction::discover))
        .routes(routes!(interaction::calculate_all))
        .routes(routes!(
            interaction::get,
            interaction::update,
            interaction::delete
        ))
        .routes(routes!(interaction::calculate))
        .routes(routes!(
            metric_store::get_settings,
            metric_store::put_settings
        ))
        .routes(routes!(metric_store::latest))
        .routes(routes!(metric_store::catalog))
        .routes(routes!(metric_store::values))
        .routes(routes!(metric_store::trend))
        .routes(routes!(metric_store::evaluate))
        .split_for_parts();
    dashboard::document(&mut doc);
    openapi::finish(&mut doc);
    (router.merge(dashboard::routes()), doc)
}

/// The router of every API plus `extra` routes of the layers above (the
/// metric alerts), under the same fallbacks, limits and tracing, and
/// `GET /openapi.json`, the document of them all.
pub fn router_with(state: Arc<AppState>, extra: OpenApiRouter<Arc<AppState>>) -> Router {
    let (router, doc) = routes(extra);
    let doc = Arc::new(doc.to_pretty_json().expect("the document serialises"));
    router
        .route(
            "/openapi.json",
            get(move || {
                let doc = Arc::clone(&doc);
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc.as_str().to_owned(),
                    )
                }
            }),
        )
        .fallback(|| async { ApiError::not_found("NOT_FOUND", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::bad("METHOD_NOT_ALLOWED", "this route does not take that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /health`: the server is up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "Server",
    responses((status = 200, description = "The server is up", body = openapi::Health))
)]
pub async fn health() -> axum::Json<openapi::Health> {
    axum::Json(openapi::Health {
        status: "ok".into(),
    })
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
