//! Wire types of the skill Metrics API's answers. The checks that turn a
//! request into engine queries are the service [`crate::skill_metrics`].

use serde::Serialize;

pub use crate::skill_metrics::{
    CheckedQuery, CheckedRequest, DEFAULT_MAX_RESULTS, MAX_DIMENSIONS, MAX_QUERIES,
    MAX_RESULTS_LIMIT, check_request,
};

/// One series (or the part of it on this page).
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Data {
    #[serde(rename = "groupedBy", skip_serializing_if = "Option::is_none")]
    pub grouped_by: Option<GroupedBy>,
    /// Bucket starts in epoch milliseconds.
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GroupedBy {
    #[serde(rename = "groupedByField")]
    pub field: String,
    #[serde(rename = "groupedByValue")]
    pub value: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryResult {
    pub data: Vec<Data>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(rename = "metricNamespace")]
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
}

/// Present only when there is a next page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaginationContext {
    #[serde(rename = "nextToken")]
    pub next_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GetMetricsResponse {
    #[serde(rename = "paginationContext", skip_serializing_if = "Option::is_none")]
    pub pagination_context: Option<PaginationContext>,
    pub results: Vec<QueryResult>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricInfo {
    pub name: String,
    #[serde(rename = "supportedDimensions")]
    pub supported_dimensions: Vec<String>,
    #[serde(
        rename = "supportedGroupByOptions",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub supported_group_by_options: Vec<String>,
    #[serde(rename = "supportedStats", skip_serializing_if = "Vec::is_empty")]
    pub supported_stats: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListMetricsResponse {
    #[serde(rename = "paginationContext", skip_serializing_if = "Option::is_none")]
    pub pagination_context: Option<PaginationContext>,
    pub metrics: Vec<MetricInfo>,
}

impl GetMetricsResponse {
    /// The answer as CSV: one row per point, with a column per groupBy
    /// field (in order of first appearance; empty where a query has no
    /// such field). The `nextToken`, if any, is the `X-Next-Token` header.
    pub fn to_table(&self) -> crate::api::csv::Table {
        use crate::api::csv::{Cell, Table};
        let mut fields: Vec<&str> = Vec::new();
        for d in self.results.iter().flat_map(|r| &r.data) {
            if let Some(g) = &d.grouped_by
                && !fields.contains(&g.field.as_str())
            {
                fields.push(&g.field);
            }
        }
        let mut header = vec!["id", "label", "metricNamespace", "name", "stat"];
        header.extend(&fields);
        header.extend(["timestamp", "value"]);
        let mut table = Table::new(header);
        for r in &self.results {
            for d in &r.data {
                for (t, v) in d.timestamps.iter().zip(&d.values) {
                    let mut row: Vec<Cell> = vec![
                        r.id.as_str().into(),
                        r.label.clone().into(),
                        r.namespace.as_str().into(),
                        r.name.as_str().into(),
                        r.stat.clone().into(),
                    ];
                    row.extend(fields.iter().map(|f| {
                        d.grouped_by
                            .as_ref()
                            .filter(|g| g.field == *f)
                            .map(|g| g.value.clone())
                            .into()
                    }));
                    row.push(Cell::Int(*t));
                    row.push(Cell::Number(*v));
                    table.push(row);
                }
            }
        }
        if let Some(p) = &self.pagination_context {
            table.headers.push((
                axum::http::HeaderName::from_static("x-next-token"),
                p.next_token.clone(),
            ));
        }
        table
    }
}
