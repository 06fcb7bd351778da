//! The Interaction API's calculations as CSV.

use serde_json::Value as Json;

use crate::interaction::{CalculateAll, Calculation, ResultRow};

/// One metric's calculation as the CSV form reads it.
#[derive(Clone, Copy)]
struct TableRows<'a> {
    id: &'a uuid::Uuid,
    name: &'a str,
    kind: &'a str,
    calculated_at: &'a str,
    results: &'a [ResultRow],
}

/// Calculations as CSV: one row per result, a column per dimension (in
/// order of first appearance, empty where a result lacks it).
fn calculations_table<'a>(
    metrics: impl Iterator<Item = TableRows<'a>> + Clone,
) -> crate::api::csv::Table {
    use crate::api::csv::{Cell, Table};
    let mut dims: Vec<&str> = Vec::new();
    for m in metrics.clone() {
        for key in m
            .results
            .iter()
            .flat_map(|r| r.dimensions.iter().flat_map(|d| d.keys()))
        {
            if !dims.contains(&key.as_str()) {
                dims.push(key);
            }
        }
    }
    let mut header = vec!["metricId", "metricName", "metricType", "calculatedAt"];
    header.extend(&dims);
    header.push("value");
    let mut table = Table::new(header);
    for m in metrics {
        for r in m.results {
            let mut row: Vec<Cell> = vec![
                m.id.to_string().into(),
                m.name.into(),
                m.kind.into(),
                m.calculated_at.into(),
            ];
            row.extend(
                dims.iter()
                    .map(|k| match r.dimensions.as_ref().and_then(|d| d.get(*k)) {
                        None | Some(Json::Null) => Cell::Empty,
                        Some(Json::String(s)) => Cell::Text(s.clone()),
                        Some(other) => Cell::Text(other.to_string()),
                    }),
            );
            row.push(r.value.into());
            table.push(row);
        }
    }
    table
}

/// Calculations as CSV.
pub(super) trait ToTable {
    fn to_table(&self) -> crate::api::csv::Table;
}

impl ToTable for Calculation {
    fn to_table(&self) -> crate::api::csv::Table {
        calculations_table(std::iter::once(TableRows {
            id: &self.metric_id,
            name: &self.metric_name,
            kind: &self.metric_type,
            calculated_at: &self.calculated_at,
            results: &self.results,
        }))
    }
}

impl ToTable for CalculateAll {
    fn to_table(&self) -> crate::api::csv::Table {
        calculations_table(self.results.iter().map(|m| TableRows {
            id: &m.metric_id,
            name: &m.metric_name,
            kind: &m.metric_type,
            calculated_at: &m.calculated_at,
            results: &m.results,
        }))
    }
}
