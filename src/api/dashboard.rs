//! The dashboard: a static page at `GET /` and its assets, embedded in the
//! binary so the server needs no files and the page no network beyond the
//! server. The page itself holds no data: it calls the HTTP API with the
//! bearer token the user types in, so serving it needs no token.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page may load scripts, styles and data only from this server (and
/// the `blob:` URLs it makes for CSV downloads).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self' blob:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

static ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../assets/dashboard/index.html"),
    },
    Asset {
        path: "/assets/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/dashboard/dashboard.js"),
    },
    Asset {
        path: "/assets/dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/dashboard/dashboard.css"),
    },
    Asset {
        path: "/assets/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/assets/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../assets/vendor/uplot/uPlot.min.css"),
    },
];

fn respond(asset: &'static Asset) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

/// `GET /` and `GET /assets/...`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { respond(asset) }))
    })
}

/// Whether `path` is one of the dashboard's files (open to anyone).
pub fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The assets' entries in the OpenAPI document (they are not handlers with
/// a `#[utoipa::path]`, being one closure per embedded file).
pub fn document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, ResponseBuilder, Type};
    for asset in &ASSETS {
        let media = asset.content_type.split(';').next().unwrap_or_default();
        let op = OperationBuilder::new()
            .tag("Dashboard")
            .summary(Some(format!("The dashboard's {}", asset.path)))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The embedded file")
                    .content(
                        media,
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    )
                    .build(),
            );
        doc.paths
            .add_path_operation(asset.path, vec![HttpMethod::Get], op.build());
    }
}
