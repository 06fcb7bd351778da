//! What the HTTP server does differently when its plans run on a cluster:
//! it logs which requests sent plans there (and how many), answers a
//! request the cluster could not serve with a 503 and `Retry-After`
//! (see [`super::is_unavailable`]), and never lets a request wait for the
//! cluster longer than a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::session::JOBS;
use crate::api::error::ApiError;

/// How long a client is told to wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The answer to a request the cluster could not serve.
pub fn unavailable() -> ApiError {
    ApiError::Unavailable {
        message: "the query cluster could not run this request (an executor or the \
                  scheduler failed or is unreachable); retry shortly"
            .to_string(),
        retry_after: RETRY_AFTER,
    }
}

/// Wraps `router` for a server whose plans run on the cluster at
/// `scheduler`; requests that take longer than `deadline` get a 503.
pub fn layer(router: axum::Router, scheduler: String, deadline: Duration) -> axum::Router {
    crate::api::error::classify_unavailable(|detail| {
        crate::cluster::is_unavailable(detail).then(unavailable)
    });
    let scheduler: Arc<str> = scheduler.into();
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let scheduler = std::sync::Arc::clone(&scheduler);
            async move {
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                let jobs = Arc::new(AtomicUsize::new(0));
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    deadline,
                    JOBS.scope(std::sync::Arc::clone(&jobs), next.run(req)),
                )
                .await;
                let plans = jobs.load(Ordering::Relaxed);
                let response = match outcome {
                    Ok(response) => response,
                    Err(_) => {
                        tracing::error!(
                            %method, %path, %scheduler, plans,
                            seconds = deadline.as_secs(),
                            "request took longer than the cluster deadline"
                        );
                        unavailable().into_response()
                    }
                };
                if plans > 0 {
                    tracing::info!(
                        %method, %path, %scheduler, plans,
                        status = response.status().as_u16(),
                        ms = started.elapsed().as_millis() as u64,
                        "request ran on the cluster"
                    );
                }
                Ok::<Response, std::convert::Infallible>(response)
            }
        },
    ))
}
