//! Whom a value describes ([`Level`]), which events a computation reads
//! ([`Selection`]), and the batches that compute a source's metrics for a
//! level and granularity in one scan: the levels, the data source and the
//! categories are group-bys, the subject is a filter, the granularity the
//! bucket.

use crate::compile::batch::{Batch, Grouping};
use crate::definition::{Bucket, Dimension, Field, Filter, Operator, TimeRange};

use super::{Granularity, MetricDef};

/// Whom a value describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// The whole workspace.
    Workspace,
    /// One service (`attributes.service_id`).
    Service,
    /// One conversation (`session_id`).
    Call,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Workspace, Level::Service, Level::Call];

    pub fn entity_type(self) -> &'static str {
        match self {
            Level::Workspace => "workspace",
            Level::Service => "service",
            Level::Call => "call",
        }
    }

    pub fn scope(self) -> &'static str {
        match self {
            Level::Call => "entity",
            _ => "aggregate",
        }
    }

    pub fn parse(entity_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.entity_type() == entity_type)
    }

    /// The entity of an event at this level, `None` for the workspace.
    fn entity(self) -> Option<Field> {
        match self {
            Level::Workspace => None,
            Level::Service => Some(service_field()),
            Level::Call => Some(Field::Column("session_id".into())),
        }
    }
}

/// The service of an event (calls carry it in their attributes).
pub fn service_field() -> Field {
    Field::Attribute("service_id".into())
}

/// Which events a computation reads.
#[derive(Debug, Clone)]
pub struct Selection {
    pub workspace: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub session_id: Option<String>,
    pub service_id: Option<String>,
}

impl Selection {
    pub fn range(&self) -> TimeRange {
        TimeRange {
            start_ms: self.from_ms,
            end_ms: self.to_ms,
        }
    }

    /// The subject as filters: its call, its service.
    pub fn filters(&self) -> Vec<Filter> {
        let eq = |field: Field, value: &String| Filter {
            field,
            op: Operator::Eq,
            value: value.as_str().into(),
        };
        let mut out = Vec::new();
        if let Some(s) = &self.session_id {
            out.push(eq(Field::Column("session_id".into()), s));
        }
        if let Some(s) = &self.service_id {
            out.push(eq(service_field(), s));
        }
        out
    }
}

/// The event types a set of definitions reads, without repeats.
pub fn event_types_of<'a>(defs: impl IntoIterator<Item = &'a MetricDef>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for d in defs {
        for t in d.event_types() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The columns of a level's batch: where to find the data source, the
/// entity, the service and (categorical batches) the category.
#[derive(Debug, Clone)]
pub struct Columns {
    pub data_source: String,
    pub entity: Option<String>,
    pub service: Option<String>,
    pub category: Option<String>,
}

fn bucket(granularity: Option<Granularity>) -> Bucket {
    match granularity {
        Some(Granularity::Hourly) => Bucket::ByHour,
        Some(Granularity::Daily) => Bucket::ByDay,
        None => Bucket::Single,
    }
}

/// The batch of `defs` (static, of one source; categorical ones one at a
/// time) for one level and granularity: grouped by data source, then the
/// level's entity, then (categorical) the category.
pub fn batch(
    sel: &Selection,
    level: Level,
    granularity: Option<Granularity>,
    defs: &[&MetricDef],
    category: Option<Field>,
) -> Result<(Batch, Columns), String> {
    use crate::compile::batch::{carry_col, group_col};
    let mut group_by = vec![Grouping {
        dimension: Dimension::DataSource,
        required: false,
    }];
    let mut carry = Vec::new();
    let mut columns = Columns {
        data_source: group_col(0),
        entity: None,
        service: None,
        category: None,
    };
    if let Some(entity) = level.entity() {
        columns.entity = Some(group_col(group_by.len()));
        group_by.push(Grouping {
            dimension: Dimension::Field(entity),
            required: true,
        });
        columns.service = Some(carry_col(carry.len()));
        carry.push(service_field());
    }
    if let Some(c) = category {
        columns.category = Some(group_col(group_by.len()));
        group_by.push(Grouping {
            dimension: Dimension::Field(c),
            required: true,
        });
    }
    let mut filters = sel.filters();
    let mut measures = defs
        .iter()
        .map(|d| d.measure())
        .collect::<Result<Vec<_>, _>>()?;
    if columns.category.is_some() {
        // A categorical metric's groups are those of its values only: its
        // selection filters the events read.
        for m in &mut measures {
            if let crate::definition::Measure::Aggregate { events, .. } = m {
                filters.append(&mut events.filters);
            }
        }
    }
    Ok((
        Batch {
            workspace_id: sel.workspace.clone(),
            range: sel.range(),
            filters,
            bucket: bucket(granularity),
            group_by,
            carry,
            measures,
            sample_sizes: true,
        },
        columns,
    ))
}
