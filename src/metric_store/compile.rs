//! Metric Store definitions -> DataFusion logical plans.
//!
//! One plan per (source, level, granularity) computes every numerical and
//! boolean metric of that source in one scan: an aggregate grouped by the
//! period (`date_bin`) and the entity of the level, with two columns per
//! metric (value, sample size). Each categorical metric gets a plan grouped
//! additionally by its category. Every plan also groups by the value's
//! data source (production or simulation, [`data_source_expr`]). Values
//! come from JSON paths into
//! `attributes` (`json_get_*` calls) or, for built-ins, a SQL expression
//! parsed against the events schema; nothing is pasted into SQL text.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::functions::expr_fn as f;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableSource, cast, col, lit, when,
};
use datafusion::prelude::SessionContext;
use datafusion_functions_json::udfs as json;

use super::path::{JsonPath, Step};
use super::{Aggregation, DataSource, Granularity, MetricDef, MetricType};
use crate::compile::ts;
use crate::udaf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metric {key}: {message}")]
    Definition { key: String, message: String },
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Output columns of the plans.
pub const PERIOD: &str = "period";
pub const ENTITY: &str = "entity";
pub const SERVICE: &str = "service";
pub const CATEGORY: &str = "category";
pub const DATA_SOURCE: &str = "data_source";

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
}

/// Which events a plan reads.
#[derive(Debug, Clone)]
pub struct Selection {
    pub workspace: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub session_id: Option<String>,
    pub service_id: Option<String>,
}

/// The service of an event (calls carry it in their attributes).
pub fn service_expr() -> Expr {
    json::json_get_str_udf().call(vec![col("attributes"), lit("service_id")])
}

/// `simulation` for an event of a simulated conversation (its
/// `attributes.simulation` is `true`), `production` for every other event.
pub fn data_source_expr() -> Expr {
    let simulated = json::json_get_bool_udf().call(vec![col("attributes"), lit("simulation")]);
    when(simulated, lit(DataSource::Simulation.name()))
        .otherwise(lit(DataSource::Production.name()))
        .expect("a CASE with a branch")
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

/// The extracted value of one event, typed by the metric type (Float64,
/// Utf8 or Boolean), null where absent, out of scope, out of range, not
/// one of the categories, or of an event type the metric does not read
/// (`scanned` are the event types the plan reads).
pub fn value_expr(
    ctx: &SessionContext,
    def: &MetricDef,
    schema: &DFSchema,
    scanned: &[&str],
) -> Result<Expr> {
    let bad = |message: String| Error::Definition {
        key: def.key.clone(),
        message,
    };
    if def.extraction_mode.is_ai() {
        return Err(bad("AI metrics are not computed by a plan".into()));
    }
    // Counting needs presence, not a number: `count_distinct` of an id
    // must not turn every id into a failed cast or a null.
    let counting = def.metric_type == MetricType::Numerical
        && matches!(
            def.aggregation,
            Aggregation::Count | Aggregation::CountDistinct | Aggregation::Rate
        )
        && def.valid_range_min.is_none()
        && def.valid_range_max.is_none();
    let target = match def.metric_type {
        MetricType::Numerical => DataType::Float64,
        MetricType::Categorical => DataType::Utf8,
        MetricType::Boolean => DataType::Boolean,
    };
    let mut v = if let Some(sql) = &def.sql_expr {
        let e = ctx
            .parse_sql_expr(sql, schema)
            .map_err(|e| bad(format!("sql_expr {sql:?}: {e}")))?;
        if counting { e } else { cast(e, target) }
    } else {
        let path = def
            .extract_path
            .as_deref()
            .ok_or_else(|| bad("a static metric needs extract_path".into()))?;
        let path = JsonPath::parse(path).map_err(bad)?;
        let mut args = vec![col("attributes")];
        args.extend(path.0.iter().map(|s| match s {
            Step::Key(k) => lit(k.as_str()),
            Step::Index(i) => lit(*i),
        }));
        match def.metric_type {
            MetricType::Numerical if counting => json::json_as_text_udf().call(args),
            MetricType::Numerical => json::json_get_float_udf().call(args),
            MetricType::Categorical => json::json_as_text_udf().call(args),
            MetricType::Boolean => json::json_get_bool_udf().call(args),
        }
    };
    if def.metric_type == MetricType::Numerical
        && (def.valid_range_min.is_some() || def.valid_range_max.is_some())
    {
        let mut ok = v.clone().is_not_null();
        if let Some(lo) = def.valid_range_min {
            ok = ok.and(v.clone().gt_eq(lit(lo)));
        }
        if let Some(hi) = def.valid_range_max {
            ok = ok.and(v.clone().lt_eq(lit(hi)));
        }
        v = when(ok, v).end()?;
    }
    if def.metric_type == MetricType::Categorical
        && let Some(cats) = &def.categories
    {
        let allowed = cats.iter().map(|c| lit(c.as_str())).collect();
        v = when(v.clone().in_list(allowed, false), v).end()?;
    }
    if let Some((column, value)) = def.channel_scope.filter() {
        v = when(col(column).eq(lit(value)), v).end()?;
    }
    let own = def.event_types();
    if scanned.iter().any(|t| !own.contains(t)) {
        let types = own.iter().map(|t| lit(*t)).collect();
        v = when(col("event_type").in_list(types, false), v).end()?;
    }
    Ok(v)
}

/// The aggregate of one numerical or boolean metric over its values `v`.
/// `rate` is a count here; it is divided by the period's hours afterwards.
pub fn aggregate_expr(def: &MetricDef, v: Expr) -> Result<Expr> {
    let boolean = def.metric_type == MetricType::Boolean;
    let one_if = |cond: Expr| when(cond, lit(1i64)).end();
    let share = |cond: Expr, v: Expr| -> Result<Expr> {
        Ok(agg::avg(
            when(v.is_null(), lit(ScalarValue::Float64(None)))
                .when(cond, lit(1.0))
                .otherwise(lit(0.0))?,
        ))
    };
    Ok(match def.aggregation {
        // `v` itself is the condition, not `v IS TRUE`: DataFusion 55
        // plans a common `IS TRUE` subexpression as non-null logically but
        // nullable physically and refuses the plan.
        Aggregation::Count | Aggregation::Rate if boolean => agg::count(one_if(v)?),
        Aggregation::Count | Aggregation::Rate => agg::count(v),
        Aggregation::Ratio if boolean => share(v.clone(), v)?,
        Aggregation::Ratio => share(v.clone().not_eq(lit(0.0)), v)?,
        Aggregation::Sum => agg::sum(v),
        Aggregation::Avg => agg::avg(v),
        Aggregation::Min => agg::min(v),
        Aggregation::Max => agg::max(v),
        Aggregation::CountDistinct => agg::count_distinct(v),
        a => match a.quantile() {
            Some(q) => udaf::quantile::quantile(v, q),
            None => {
                return Err(Error::Definition {
                    key: def.key.clone(),
                    message: format!("aggregation {a:?} has no plan"),
                });
            }
        },
    })
}

/// The events a selection names: its workspace and time range, its call
/// or service if it names one, and (unless empty) the given event types.
pub fn selection_filter(sel: &Selection, event_types: &[&str]) -> Expr {
    let mut pred = col("workspace_id")
        .eq(lit(sel.workspace.as_str()))
        .and(col("time").gt_eq(ts(sel.from_ms)))
        .and(col("time").lt(ts(sel.to_ms)));
    if !event_types.is_empty() {
        let types = event_types.iter().map(|t| lit(*t)).collect();
        pred = pred.and(col("event_type").in_list(types, false));
    }
    if let Some(s) = &sel.session_id {
        pred = pred.and(col("session_id").eq(lit(s.as_str())));
    }
    if let Some(s) = &sel.service_id {
        pred = pred.and(service_expr().eq(lit(s.as_str())));
    }
    pred
}

fn base(
    table: Arc<dyn TableSource>,
    sel: &Selection,
    event_types: &[&str],
    level: Level,
) -> Result<LogicalPlanBuilder> {
    let mut pred = selection_filter(sel, event_types);
    match level {
        Level::Workspace => {}
        Level::Service => pred = pred.and(service_expr().is_not_null()),
        Level::Call => pred = pred.and(col("session_id").is_not_null()),
    }
    Ok(LogicalPlanBuilder::scan("events", table, None)?.filter(pred)?)
}

/// The period of an event: its hour or day, or (no granularity) the start
/// of the selection, which makes the whole selection one period.
fn group_exprs(level: Level, granularity: Option<Granularity>, sel: &Selection) -> Vec<Expr> {
    let period = match granularity {
        Some(g) => {
            let width = lit(ScalarValue::new_interval_mdn(0, 0, g.ms() * 1_000_000));
            f::date_bin(width, col("time"), ts(0))
        }
        None => ts(sel.from_ms),
    };
    let mut g = vec![period.alias(PERIOD)];
    match level {
        Level::Workspace => g.push(lit(ScalarValue::Utf8(None)).alias(ENTITY)),
        Level::Service => g.push(service_expr().alias(ENTITY)),
        Level::Call => g.push(col("session_id").alias(ENTITY)),
    }
    g.push(data_source_expr().alias(DATA_SOURCE));
    g
}

/// The service of the group: for a call, any service its events name.
fn service_agg(level: Level) -> Expr {
    match level {
        Level::Call => agg::max(service_expr()).alias(SERVICE),
        Level::Service => agg::max(service_expr()).alias(SERVICE),
        Level::Workspace => agg::max(lit(ScalarValue::Utf8(None))).alias(SERVICE),
    }
}

/// Column names of metric `i` in a [`numeric_plan`].
pub fn value_col(i: usize) -> String {
    format!("v{i}")
}
pub fn sample_col(i: usize) -> String {
    format!("n{i}")
}

/// Every numerical and boolean metric of `defs` (all of one source) for
/// one level and granularity, in one aggregate over the event types they
/// read: columns `period`, `entity`, `data_source`, `service`, then `v{i}`
/// (Float64) and `n{i}` (sample size) per metric.
pub fn numeric_plan(
    ctx: &SessionContext,
    table: Arc<dyn TableSource>,
    sel: &Selection,
    level: Level,
    granularity: Option<Granularity>,
    defs: &[&MetricDef],
) -> Result<LogicalPlan> {
    let scanned = event_types_of(defs.iter().copied());
    let builder = base(table, sel, &scanned, level)?;
    let schema = builder.schema().as_ref().clone();
    let mut aggs = vec![service_agg(level)];
    for (i, def) in defs.iter().enumerate() {
        let v = value_expr(ctx, def, &schema, &scanned)?;
        aggs.push(cast(aggregate_expr(def, v.clone())?, DataType::Float64).alias(value_col(i)));
        aggs.push(agg::count(v).alias(sample_col(i)));
    }
    Ok(builder
        .aggregate(group_exprs(level, granularity, sel), aggs)?
        .build()?)
}

/// One categorical metric: `period`, `entity`, `data_source`, `category`,
/// `service`, `n` (events per category).
pub fn categorical_plan(
    ctx: &SessionContext,
    table: Arc<dyn TableSource>,
    sel: &Selection,
    level: Level,
    granularity: Option<Granularity>,
    def: &MetricDef,
) -> Result<LogicalPlan> {
    let scanned = def.event_types();
    let builder = base(table, sel, &scanned, level)?;
    let schema = builder.schema().as_ref().clone();
    let v = value_expr(ctx, def, &schema, &scanned)?;
    let mut groups = group_exprs(level, granularity, sel);
    groups.push(v.clone().alias(CATEGORY));
    Ok(builder
        .filter(v.is_not_null())?
        .aggregate(
            groups,
            vec![service_agg(level), agg::count(lit(1i64)).alias("n")],
        )?
        .build()?)
}
