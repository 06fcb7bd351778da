//! The OpenAPI 3.1 document of every route, served at `GET /openapi.json`.
//!
//! Answers are described by the wire types themselves (`ToSchema` on the
//! structs the handlers serialise) and each route by the `#[utoipa::path]`
//! on its handler; the router is built from the same handlers
//! ([`utoipa_axum::router::OpenApiRouter`]), so a route cannot exist
//! without its entry. Request bodies are checked field by field by the
//! services (so that each field gets its documented error code), not
//! deserialised into a struct; the structs here describe those bodies.
//!
//! What every route may answer besides its success (the error shape, 401,
//! 429 with `Retry-After`, ...) is added to each operation in one place,
//! [`common_answers`], rather than repeated on every handler; statuses only
//! some routes give are in their handlers' `responses`.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Type};

/// Every 4xx and 5xx body: a code a program can test and a message a
/// person can read. Some 400s add fields (`field`, `errors`, `rejected`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub message: String,
    /// What went wrong, for a program (`INVALID_PARAMETER`, ...).
    pub code: String,
}

/// `POST /v2/skills/{skillId}/metrics` (document 000).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetMetricsRequest {
    /// RFC 3339 or epoch milliseconds; inclusive.
    #[schema(value_type = String, example = "2026-01-08T00:00:00Z")]
    pub start_time: String,
    /// RFC 3339 or epoch milliseconds; exclusive.
    #[schema(value_type = String, example = "2026-01-11T00:00:00Z")]
    pub end_time: String,
    /// 1 to 1000; default 100.
    #[schema(minimum = 1, maximum = 1000)]
    pub max_results_per_query: Option<u32>,
    pub next_token: Option<String>,
    /// 1 to 5 queries.
    #[schema(min_items = 1, max_items = 5)]
    pub metric_queries: Vec<MetricQuery>,
}

/// One query of a skill Metrics request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricQuery {
    #[schema(min_length = 1, max_length = 64, example = "q1")]
    pub id: String,
    #[schema(max_length = 256)]
    pub label: Option<String>,
    #[schema(example = "Alexa.Custom")]
    pub metric_namespace: String,
    #[schema(example = "UTTERANCES")]
    pub name: String,
    /// BY_15, BY_HOUR, BY_DAY, BY_WEEK or SINGLE.
    #[schema(example = "BY_DAY")]
    pub aggregation_period: String,
    /// count, avg, p50, p90 or p99, as the metric supports.
    pub stat: Option<String>,
    pub group_by: Option<String>,
    #[schema(max_items = 16)]
    pub dimensions: Option<Vec<Dimension>>,
}

/// A dimension filter of a skill Metrics query.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// `POST /api/interaction-metrics` and `PUT .../{id}` (document 003); on
/// PUT every field is optional and fields left out keep their values.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InteractionMetricRequest {
    #[schema(example = "Calls by country")]
    pub name: String,
    pub description: Option<String>,
    /// A metric type id or mnemonic (`GET /api/interaction-metrics/types`).
    #[schema(example = "count-metric-type")]
    pub metric_type_id: String,
    pub resource_type_id: Option<String>,
    pub action_id: Option<String>,
    pub origin_id: Option<String>,
    /// `interaction.KEY`, `resourceId`, ... for the types that need one.
    pub field: Option<String>,
    pub filters: Option<Vec<crate::interaction::FilterSpec>>,
    /// A window such as `24h` or `7d`.
    pub time_window: Option<String>,
    pub group_by: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// `PUT /v1/{workspace_id}/settings/metrics` (document 004): the custom
/// definitions, and built-ins (`builtin: true`) with their `active` flag.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsRequest {
    pub definitions: Vec<crate::metric_store::MetricDef>,
}

/// `POST /v1/{workspace_id}/metrics/{metric_key}/evaluate` (document 004):
/// a call (`subject_id`) or a subject and range (default: the workspace,
/// the last 24 hours).
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluateRequest {
    pub subject_id: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
    pub scope: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub service_id: Option<String>,
    pub session_id: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// The name of the bearer-token scheme in the document.
pub const BEARER: &str = "bearer";

/// Routes open to anyone (no token): everything else needs one.
fn is_open(path: &str) -> bool {
    path == "/health" || path == "/openapi.json" || super::dashboard::is_asset(path)
}

/// The operations of a path, whatever their method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn error_response(description: &str, retry_after: bool) -> Response {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            ))))
            .build(),
    );
    if retry_after {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before trying again."))
                .build(),
        );
    }
    r.build()
}

/// What any route may answer besides its success: status, description,
/// whether it carries `Retry-After`.
const COMMON: [(&str, &str, bool); 7] = [
    (
        "400",
        "The request is malformed or a value is out of range.",
        false,
    ),
    (
        "401",
        "No token, or a token this server does not know.",
        false,
    ),
    (
        "403",
        "The token does not cover this workspace, or needs the admin role.",
        false,
    ),
    ("404", "No such route, workspace, skill or resource.", false),
    ("413", "The body is larger than the route takes.", false),
    ("429", "The token's request rate is spent.", true),
    (
        "503",
        "The server is busy or a query ran out of time; retry after Retry-After seconds.",
        true,
    ),
];

/// Adds [`COMMON`] to every operation (only 404 to the open routes), and
/// the bearer token requirement to those that need a token.
pub fn common_answers(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token of METRICSTORE_TOKENS; its role (admin or viewer) and workspaces decide what it may do.",
                ))
                .build(),
        ),
    );
    components.schemas.insert(
        ErrorBody::name().into_owned(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );

    for (path, item) in doc.paths.paths.iter_mut() {
        let open = is_open(path);
        for op in operations(item) {
            for (status, description, retry) in COMMON {
                if open && status != "404" {
                    continue;
                }
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(error_response(description, retry)));
            }
            if !open && op.security.is_none() {
                op.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, [])]);
            }
        }
    }
}

/// The document before any route: what the server is and its tags.
pub fn base() -> OpenApi {
    use utoipa::openapi::InfoBuilder;
    use utoipa::openapi::tag::TagBuilder;
    let mut doc = OpenApi::new(
        InfoBuilder::new()
            .title("metricstore")
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Metrics of conversational products: the skill Metrics API (document 000), \
                 skill analytics, event ingest, the Interaction Metrics API (document 003), \
                 the Metric Store (document 004) and metric alerts. Every route but /health, \
                 /openapi.json and the dashboard needs `Authorization: Bearer TOKEN`. \
                 Answers marked with a text/csv content are CSV when asked with `Accept: text/csv`.",
            ))
            .build(),
        utoipa::openapi::Paths::new(),
    );
    doc.tags = Some(
        [
            ("Skill Metrics", "The Alexa-style skill Metrics API"),
            (
                "Skill analytics",
                "Retention, paths, sessions and intents of a skill",
            ),
            ("Events", "Ingest"),
            ("Interaction Metrics", "The Interaction Metrics API"),
            (
                "Metric Store",
                "Built-in and custom metric definitions and their values",
            ),
            ("Metric alerts", "Rules over metrics that notify webhooks"),
            ("Server", "The server itself"),
            ("Dashboard", "The embedded dashboard page"),
        ]
        .into_iter()
        .map(|(name, about)| {
            TagBuilder::new()
                .name(name)
                .description(Some(about))
                .build()
        })
        .collect(),
    );
    doc
}

/// Completes the document of every route: the answers every route may
/// give and `GET /openapi.json` itself.
pub fn finish(doc: &mut OpenApi) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder};
    doc.paths.add_path_operation(
        "/openapi.json",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .tag("Server")
            .summary(Some("This document"))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The OpenAPI 3.1 document of every route")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                            .build(),
                    )
                    .build(),
            )
            .build(),
    );
    common_answers(doc);
}

/// `X-Workspace-Id`, which the Interaction Metrics and metric alerts
/// routes read ([`crate::api::auth::Principal::workspace_from`]).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct WorkspaceHeader {
    /// The workspace; may be left out when the token covers one workspace
    /// only.
    #[serde(rename = "X-Workspace-Id")]
    #[param(example = "ws-demo")]
    pub workspace: Option<String>,
}

/// The source and subject parameters every Metric Store value route takes
/// ([`crate::api::metric_store::types::SUBJECT_PARAMS`]).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubjectParams {
    /// production, simulation or all.
    pub source: Option<String>,
    /// workspace, service or session.
    pub scope: Option<String>,
    /// workspace, service or session.
    pub entity_type: Option<String>,
    /// The subject's id.
    pub entity_id: Option<String>,
    /// A service of the workspace.
    pub service_id: Option<String>,
    /// A call or session.
    pub session_id: Option<String>,
}

/// `startTime` and `endTime` of the skill analytics routes (read as text
/// by [`crate::api::analytics::types::Params`], so that each mistake gets
/// its code).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct RangeParams {
    /// RFC 3339 or epoch milliseconds, inclusive.
    pub start_time: String,
    /// RFC 3339 or epoch milliseconds, exclusive.
    pub end_time: String,
}
