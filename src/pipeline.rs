//! The Metric Store batch pipeline: computes every active metric of every
//! workspace per period and per entity and stores the values as Parquet
//! (`storage::values`).
//!
//! The unit of work is one (workspace, day): its static metrics are
//! computed from that day's events (read once into memory, then one
//! aggregate per source and level) and written as one file that replaces
//! the previous one. So re-running a range replaces, never duplicates; a
//! run killed half-way leaves whole days, old or new; and a checkpoint of
//! finished days lets the next run of the same range resume where it
//! stopped. AI metrics are a second phase: the 500 most recent
//! conversations of the last 24 hours not yet valued, per metric and run,
//! within a request budget.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{TableSource, col, lit};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::compile::batch::{sample_col, value_col};
use crate::compile::{self, BUCKET, dimension_expr, events_predicate, ts};
use crate::definition::Dimension;
use crate::engine::Engine;
use crate::engine::columns::{self, floats, ints, strings};
use crate::metric_store::extract::Error as AiError;
use crate::metric_store::extract::{self, Ai, Answer, Budget};
use crate::metric_store::level::{self, Level, Selection};
use crate::metric_store::{
    Aggregation, DataSource, Granularity, MetricDef, MetricType, Settings, Source, wire,
};
use crate::storage::catalog::Catalog;
use crate::storage::events::{DAY_MS, day_start_millis};
use crate::storage::values::{self, STATIC_FILE, ValueRow};
use crate::storage::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Compile(#[from] compile::Error),
    #[error("{0}")]
    Definition(String),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Range(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The column of a conversation's data source.
const DATA_SOURCE: &str = "data_source";

/// How far back a scheduled run (no range given) looks, and the window AI
/// metrics are computed over.
pub const LOOKBACK_MS: i64 = 24 * 3_600_000;
/// Conversations per AI metric per run.
pub const AI_CONVERSATIONS_PER_RUN: usize = 500;
/// Days one backfill may span.
pub const MAX_RANGE_DAYS: i64 = 3660;
const SETTINGS_KIND: &str = "metric-store-settings";
const CHECKPOINT: &str = "metrics/pipeline/checkpoint.json";

/// The settings catalog of the Metric Store.
pub fn settings_catalog(store: &Store) -> Catalog {
    Catalog::new(store.clone(), SETTINGS_KIND)
}

pub async fn load_settings(store: &Store, workspace: &str) -> Result<Settings> {
    Ok(settings_catalog(store).load::<Settings>(workspace).await?.1)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub now_ms: i64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub workspaces: usize,
    pub days_computed: usize,
    pub days_resumed: usize,
    pub values_written: usize,
    pub ai_requests: usize,
    pub ai_values: usize,
    pub ai_dropped: usize,
    pub ai_failed: usize,
    /// Metrics not computed, with the reason.
    pub skipped: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    from: String,
    to: String,
    done: BTreeSet<String>,
    finished: bool,
}

fn day_of_ms(ms: i64) -> NaiveDate {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The days a run covers: the given range, or the days the last 24 hours
/// touch.
pub fn days(opts: &Options) -> Result<Vec<NaiveDate>> {
    let (from, to) = match (opts.from, opts.to) {
        (None, None) => (day_of_ms(opts.now_ms - LOOKBACK_MS), day_of_ms(opts.now_ms)),
        (Some(f), None) => (f, day_of_ms(opts.now_ms).max(f)),
        (None, Some(t)) => (t, t),
        (Some(f), Some(t)) => (f, t),
    };
    if to < from {
        return Err(Error::Range(format!("--to {to} is before --from {from}")));
    }
    let n = (to - from).num_days();
    if n >= MAX_RANGE_DAYS {
        return Err(Error::Range(format!(
            "{} days from {from} to {to}; one run covers at most {MAX_RANGE_DAYS}",
            n + 1
        )));
    }
    Ok((0..=n)
        .map(|i| from + chrono::Days::new(i as u64))
        .collect())
}

fn all_event_types() -> Vec<&'static str> {
    Source::ALL
        .iter()
        .flat_map(|s| s.event_types().iter().copied())
        .collect()
}

async fn workspaces(engine: &Engine, from_ms: i64, to_ms: i64) -> Result<Vec<String>> {
    let types = all_event_types().into_iter().map(lit).collect();
    let batches = engine
        .ctx
        .table("events")
        .await?
        .filter(
            col("time")
                .gt_eq(ts(from_ms))
                .and(col("time").lt(ts(to_ms)))
                .and(col("event_type").in_list(types, false)),
        )?
        .aggregate(vec![col("workspace_id")], vec![])?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(strings(b, "workspace_id")?.into_iter().flatten());
    }
    out.sort();
    Ok(out)
}

/// Runs the pipeline once.
pub async fn run(engine: &Engine, ai: &Ai, opts: &Options) -> Result<Report> {
    let days = days(opts)?;
    let (first, last) = (days[0], *days.last().expect("non-empty"));
    let mut report = Report {
        from: first.to_string(),
        to: last.to_string(),
        ..Default::default()
    };
    let store = &engine.store;
    let cp_path = store.path(CHECKPOINT);
    let mut checkpoint = match store.get_opt(&cp_path).await? {
        Some(bytes) => serde_json::from_slice::<Checkpoint>(&bytes).unwrap_or_default(),
        None => Checkpoint::default(),
    };
    let resuming =
        !checkpoint.finished && checkpoint.from == report.from && checkpoint.to == report.to;
    if !resuming {
        checkpoint = Checkpoint {
            from: report.from.clone(),
            to: report.to.clone(),
            ..Default::default()
        };
    } else if !checkpoint.done.is_empty() {
        tracing::info!(
            done = checkpoint.done.len(),
            "resuming an unfinished pipeline run"
        );
    }
    let range_from = day_start_millis(first);
    let range_to = day_start_millis(last) + DAY_MS;
    let workspaces = workspaces(engine, range_from, range_to).await?;
    report.workspaces = workspaces.len();
    // Each workspace's active definitions, split: static ones per day,
    // AI ones per conversation afterwards.
    let mut units = Vec::new();
    let mut ai_defs = Vec::new();
    for ws in &workspaces {
        let (ai_metrics, static_metrics): (Vec<MetricDef>, Vec<MetricDef>) =
            load_settings(store, ws)
                .await?
                .all()
                .into_iter()
                .filter(|d| d.active)
                .partition(|d| d.extraction_mode.is_ai());
        ai_defs.push((ws, ai_metrics));
        let defs = Arc::new(static_metrics);
        for day in &days {
            if checkpoint.done.contains(&format!("{ws}|{day}")) {
                report.days_resumed += 1;
            } else {
                units.push((ws.clone(), *day, defs.clone()));
            }
        }
    }
    // A day's plans read one in-memory partition, so two days at once
    // keep two cores busy. Results are checkpointed as they land.
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let mut done = futures::stream::iter(units.into_iter().map(|(ws, day, defs)| async move {
        let n = compute_and_store_day(engine, &ws, day, &defs, opts.now_ms).await?;
        Ok::<_, Error>((format!("{ws}|{day}"), n))
    }))
    .buffer_unordered(parallel);
    while let Some(result) = done.next().await {
        let (mark, n) = result?;
        report.values_written += n;
        report.days_computed += 1;
        checkpoint.done.insert(mark);
        store
            .put_durable(&cp_path, serde_json::to_vec(&checkpoint).expect("json"))
            .await?;
    }
    let budget = Budget::new(ai.budget);
    let window = (
        (opts.now_ms - LOOKBACK_MS).max(range_from),
        opts.now_ms.min(range_to),
    );
    for (ws, defs) in ai_defs {
        for def in defs {
            if let Some(e) = ai.unavailable(&def) {
                let why = format!("{ws}/{}: {e}", def.key);
                tracing::warn!(reason = %why, "AI metric skipped");
                report.skipped.push(why);
                continue;
            }
            if window.0 >= window.1 {
                let why = format!(
                    "{ws}/{}: the range lies outside the last 24 hours, where AI metrics are computed",
                    def.key
                );
                tracing::info!(reason = %why, "AI metric skipped");
                report.skipped.push(why);
                continue;
            }
            run_ai_metric(
                engine,
                ai,
                &budget,
                ws,
                &def,
                window,
                opts.now_ms,
                &mut report,
            )
            .await?;
        }
    }
    report.ai_requests = budget.used();
    checkpoint.finished = true;
    store
        .put_durable(&cp_path, serde_json::to_vec(&checkpoint).expect("json"))
        .await?;
    tracing::info!(?report, "pipeline run finished");
    Ok(report)
}

/// Computes one (workspace, day) and replaces its values file; returns
/// the number of values.
async fn compute_and_store_day(
    engine: &Engine,
    ws: &str,
    day: NaiveDate,
    defs: &[MetricDef],
    now_ms: i64,
) -> Result<usize> {
    let store = &engine.store;
    let rows = compute_day(engine, ws, day, defs, now_ms).await?;
    if !rows.is_empty() {
        values::write_file(store, ws, &day.to_string(), STATIC_FILE, &rows).await?;
    } else {
        // No events: a file from an earlier run (events since removed)
        // must not survive.
        store
            .delete_if_exists(&values::file_path(store, ws, &day.to_string(), STATIC_FILE))
            .await?;
    }
    Ok(rows.len())
}

/// The events of a selection that any source or definition reads, in
/// memory.
async fn day_table(
    engine: &Engine,
    sel: &Selection,
    defs: &[MetricDef],
) -> Result<Arc<dyn TableSource>> {
    let mut types: Vec<&str> = all_event_types();
    for t in level::event_types_of(defs) {
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let df = engine.ctx.table("events").await?.filter(events_predicate(
        &sel.workspace,
        sel.range(),
        &types,
        &sel.filters(),
    )?)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = engine.execute(df.logical_plan().clone()).await?;
    let table = MemTable::try_new(schema, vec![batches])?;
    Ok(provider_as_source(Arc::new(table)))
}

/// Every static metric of `defs` for one workspace and day: daily values
/// per workspace, service and call, and hourly workspace values for
/// hourly metrics.
pub async fn compute_day(
    engine: &Engine,
    ws: &str,
    day: NaiveDate,
    defs: &[MetricDef],
    now_ms: i64,
) -> Result<Vec<ValueRow>> {
    let from_ms = day_start_millis(day);
    let sel = Selection {
        workspace: ws.to_string(),
        from_ms,
        to_ms: from_ms + DAY_MS,
        session_id: None,
        service_id: None,
    };
    let table = day_table(engine, &sel, defs).await?;
    let mut rows = Vec::new();
    for source in Source::ALL {
        let of_source: Vec<&MetricDef> = defs.iter().filter(|d| d.source == source).collect();
        if of_source.is_empty() {
            continue;
        }
        let mut runs: Vec<(Level, Granularity, Vec<&MetricDef>)> = Level::ALL
            .iter()
            .map(|l| (*l, Granularity::Daily, of_source.clone()))
            .collect();
        let hourly: Vec<&MetricDef> = of_source
            .iter()
            .copied()
            .filter(|d| d.period_granularity == Granularity::Hourly)
            .collect();
        if !hourly.is_empty() {
            runs.push((Level::Workspace, Granularity::Hourly, hourly));
        }
        for (level, gran, defs) in runs {
            let spec = Spec {
                ws,
                level,
                granularity: Some(gran),
                sel: &sel,
                now_ms,
            };
            rows.extend(compute(engine, table.clone(), &spec, &defs).await?);
        }
    }
    Ok(rows)
}

/// One computation: which level, which periods.
pub struct Spec<'a> {
    pub ws: &'a str,
    pub level: Level,
    pub granularity: Option<Granularity>,
    pub sel: &'a Selection,
    pub now_ms: i64,
}

impl Spec<'_> {
    fn period_ms(&self) -> i64 {
        self.granularity
            .map(Granularity::ms)
            .unwrap_or(self.sel.to_ms - self.sel.from_ms)
    }

    fn row(
        &self,
        def: &MetricDef,
        period: i64,
        entity: Option<String>,
        service: Option<String>,
        source: Option<&str>,
    ) -> ValueRow {
        let granularity = self.granularity.map(Granularity::name).unwrap_or("range");
        let period = (granularity, period, period + self.period_ms());
        let mut row = value_row(
            self.ws,
            def,
            period,
            self.level,
            entity,
            service,
            self.now_ms,
        );
        if let Some(s) = source {
            row.source = s.to_string();
        }
        row
    }
}

/// A row of `def` for one period (`granularity`, start, end) and subject,
/// without a value yet. `entity` is the service or call of the level; a
/// call's row also names its `service`.
fn value_row(
    ws: &str,
    def: &MetricDef,
    (granularity, start, end): (&str, i64, i64),
    level: Level,
    entity: Option<String>,
    service: Option<String>,
    now_ms: i64,
) -> ValueRow {
    let (entity_id, service_id, session_id) = match level {
        Level::Workspace => (ws.to_string(), None, None),
        Level::Service => (entity.clone().unwrap_or_default(), entity, None),
        Level::Call => (entity.clone().unwrap_or_default(), service, entity),
    };
    ValueRow {
        workspace_id: ws.to_string(),
        metric_key: def.key.clone(),
        source: DataSource::Production.name().to_string(),
        granularity: granularity.to_string(),
        period_start: start,
        period_end: end,
        scope: level.scope().to_string(),
        entity_type: level.entity_type().to_string(),
        entity_id,
        service_id,
        session_id,
        category: None,
        value: None,
        sample_size: 0,
        computed_at: now_ms,
    }
}

/// Values of `defs` (static, all of one source) for one level over
/// `table` (the events table or a day in memory).
pub async fn compute(
    engine: &Engine,
    table: Arc<dyn TableSource>,
    spec: &Spec<'_>,
    defs: &[&MetricDef],
) -> Result<Vec<ValueRow>> {
    let mut rows = Vec::new();
    if defs.is_empty() {
        return Ok(rows);
    }
    let numeric: Vec<&MetricDef> = defs
        .iter()
        .copied()
        .filter(|d| d.metric_type != MetricType::Categorical)
        .collect();
    if !numeric.is_empty() {
        let (batch, cols) = level::batch(spec.sel, spec.level, spec.granularity, &numeric, None)
            .map_err(Error::Definition)?;
        let plan = compile::compile_batch(&batch, table.clone())?.plan;
        let batches = engine.execute(plan).await?;
        let whole = spec.granularity.is_none() || spec.granularity == Some(Granularity::Daily);
        if spec.level == Level::Workspace && whole && batches.iter().all(|b| b.num_rows() == 0) {
            // A day without events of the source: counts are 0, the rest
            // have no value (as SQL aggregates over no rows).
            for def in &numeric {
                let mut row = spec.row(def, spec.sel.from_ms, None, None, None);
                if matches!(
                    def.aggregation,
                    Aggregation::Count | Aggregation::Rate | Aggregation::CountDistinct
                ) {
                    row.value = Some(0.0);
                }
                rows.push(row);
            }
        }
        for b in batches {
            let periods = times(&b, BUCKET)?;
            let entities = maybe_strings(&b, cols.entity.as_deref())?;
            let services = maybe_strings(&b, cols.service.as_deref())?;
            let sources = strings(&b, &cols.data_source)?;
            for (i, def) in numeric.iter().enumerate() {
                let v = floats(&b, &value_col(i))?;
                let n = ints(&b, &sample_col(i))?;
                for r in 0..b.num_rows() {
                    if n[r] == Some(0) && spec.level != Level::Workspace {
                        continue;
                    }
                    let mut row = spec.row(
                        def,
                        periods[r],
                        entities[r].clone(),
                        services[r].clone(),
                        sources[r].as_deref(),
                    );
                    row.value = v[r];
                    row.sample_size = n[r].unwrap_or(0);
                    rows.push(row);
                }
            }
        }
    }
    for def in defs
        .iter()
        .filter(|d| d.metric_type == MetricType::Categorical)
    {
        let category = def.field().map_err(Error::Definition)?;
        let (batch, cols) = level::batch(
            spec.sel,
            spec.level,
            spec.granularity,
            &[def],
            Some(category),
        )
        .map_err(Error::Definition)?;
        let plan = compile::compile_batch(&batch, table.clone())?.plan;
        type GroupKey = (i64, Option<String>, Option<String>);
        let mut groups: BTreeMap<GroupKey, CategoryGroup> = BTreeMap::new();
        for b in engine.execute(plan).await? {
            let periods = times(&b, BUCKET)?;
            let entities = maybe_strings(&b, cols.entity.as_deref())?;
            let services = maybe_strings(&b, cols.service.as_deref())?;
            let sources = strings(&b, &cols.data_source)?;
            let cats = maybe_strings(&b, cols.category.as_deref())?;
            let n = ints(&b, &sample_col(0))?;
            for r in 0..b.num_rows() {
                let g = groups
                    .entry((periods[r], entities[r].clone(), sources[r].clone()))
                    .or_insert_with(|| (services[r].clone(), Vec::new()));
                if let Some(c) = &cats[r] {
                    g.1.push((c.clone(), n[r].unwrap_or(0)));
                }
            }
        }
        if groups.is_empty() && spec.level == Level::Workspace {
            // A period without events still has a (zero) count.
            let mut row = spec.row(def, spec.sel.from_ms, None, None, None);
            if spec.granularity.is_none() || spec.granularity == Some(Granularity::Daily) {
                row.value = Some(0.0);
                rows.push(row);
            }
        }
        for ((period, entity, source), (service, cats)) in groups {
            rows.extend(category_rows(
                spec.row(def, period, entity, service, source.as_deref()),
                def,
                &cats,
            ));
        }
    }
    Ok(rows)
}

/// The service of a (period, entity) group and its (category, count)s.
type CategoryGroup = (Option<String>, Vec<(String, i64)>);

/// The rows of a categorical value: one per category, and one without a
/// category holding the metric's value (all events, or the number of
/// distinct categories).
fn category_rows(base: ValueRow, def: &MetricDef, cats: &[(String, i64)]) -> Vec<ValueRow> {
    let total: i64 = cats.iter().map(|c| c.1).sum();
    let mut out = vec![ValueRow {
        value: Some(match def.aggregation {
            Aggregation::CountDistinct => cats.len() as f64,
            _ => total as f64,
        }),
        sample_size: total,
        ..base.clone()
    }];
    for (c, n) in cats {
        out.push(ValueRow {
            category: Some(c.clone()),
            value: Some(*n as f64),
            sample_size: *n,
            ..base.clone()
        });
    }
    out
}

/// A text column, or nulls when the plan has no such column (the
/// workspace level has no entity).
fn maybe_strings(b: &RecordBatch, name: Option<&str>) -> Result<Vec<Option<String>>> {
    match name {
        Some(n) => Ok(strings(b, n)?),
        None => Ok(vec![None; b.num_rows()]),
    }
}

/// Epoch milliseconds of a timestamp column (never null in our plans).
fn times(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    Ok(columns::millis(b, name)?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// One conversation as an AI model reads it.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub session_id: String,
    pub last_ms: i64,
    pub service_id: Option<String>,
    /// Whether any event of the conversation is simulated.
    pub source: DataSource,
    pub text: String,
}

/// At most this much conversation text goes to a model.
const MAX_CONVERSATION_CHARS: usize = 16_000;

/// The `limit` most recent conversations (sessions) of a source in a
/// window, or the one given, with their events as text.
pub async fn conversations(
    engine: &Engine,
    ws: &str,
    def: &MetricDef,
    window: (i64, i64),
    only: Option<&str>,
    exclude: &HashSet<String>,
    limit: usize,
) -> Result<Vec<Conversation>> {
    let sel = Selection {
        workspace: ws.to_string(),
        from_ms: window.0,
        to_ms: window.1,
        session_id: only.map(str::to_string),
        service_id: None,
    };
    let mut pred = events_predicate(ws, sel.range(), &def.event_types(), &sel.filters())?
        .and(col("session_id").is_not_null());
    if let Some((column, value)) = def.channel_scope.filter() {
        pred = pred.and(col(column).eq(lit(value)));
    }
    let df = engine.ctx.table("events").await?.filter(pred.clone())?;
    let recent = df
        .clone()
        .aggregate(
            vec![col("session_id")],
            vec![
                agg::max(col("time")).alias("last"),
                // "simulation" sorts after "production".
                agg::max(dimension_expr(&Dimension::DataSource)).alias(DATA_SOURCE),
            ],
        )?
        .sort(vec![
            col("last").sort(false, false),
            col("session_id").sort(true, false),
        ])?;
    let batches = engine.execute(recent.logical_plan().clone()).await?;
    let mut picked: Vec<(String, i64)> = Vec::new();
    let mut sources: HashMap<String, DataSource> = HashMap::new();
    for b in &batches {
        let ids = strings(b, "session_id")?;
        let last = times(b, "last")?;
        let src = strings(b, DATA_SOURCE)?;
        for ((id, t), s) in ids.into_iter().zip(last).zip(src) {
            if let Some(id) = id
                && !exclude.contains(&id)
                && picked.len() < limit
            {
                sources.insert(
                    id.clone(),
                    DataSource::of_stored(s.as_deref().unwrap_or("")),
                );
                picked.push((id, t));
            }
        }
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<_> = picked.iter().map(|(id, _)| lit(id.as_str())).collect();
    let rows = df
        .filter(col("session_id").in_list(ids, false))?
        .select(vec![
            col("session_id"),
            col("time"),
            col("event_type"),
            col("attributes"),
            dimension_expr(&Dimension::Field(level::service_field())).alias("service"),
        ])?
        .sort(vec![col("time").sort(true, false)])?;
    let batches = engine.execute(rows.logical_plan().clone()).await?;
    let mut text: HashMap<String, (Option<String>, String)> = HashMap::new();
    for b in &batches {
        let ids = strings(b, "session_id")?;
        let t = times(b, "time")?;
        let et = strings(b, "event_type")?;
        let attrs = strings(b, "attributes")?;
        let svc = strings(b, "service")?;
        for r in 0..b.num_rows() {
            let Some(id) = &ids[r] else { continue };
            let e = text.entry(id.clone()).or_default();
            if e.0.is_none() {
                e.0 = svc[r].clone();
            }
            if e.1.len() < MAX_CONVERSATION_CHARS {
                let when = Utc
                    .timestamp_millis_opt(t[r])
                    .single()
                    .map(|d| d.format("%H:%M:%S").to_string())
                    .unwrap_or_default();
                e.1.push_str(&format!(
                    "[{when}] {} {}\n",
                    et[r].as_deref().unwrap_or(""),
                    attrs[r].as_deref().unwrap_or("{}")
                ));
            }
        }
    }
    Ok(picked
        .into_iter()
        .map(|(id, last_ms)| {
            let (service_id, text) = text.remove(&id).unwrap_or_default();
            Conversation {
                source: sources.get(&id).copied().unwrap_or(DataSource::Production),
                session_id: id,
                last_ms,
                service_id,
                text: text.chars().take(MAX_CONVERSATION_CHARS).collect(),
            }
        })
        .collect())
}

fn period_of(ms: i64, g: Granularity) -> i64 {
    ms.div_euclid(g.ms()) * g.ms()
}

/// The entity rows of one AI answer.
pub fn answer_rows(
    ws: &str,
    def: &MetricDef,
    conv: &Conversation,
    answer: &Answer,
    now_ms: i64,
) -> Vec<ValueRow> {
    let g = def.period_granularity;
    let period = period_of(conv.last_ms, g);
    let mut base = value_row(
        ws,
        def,
        (g.name(), period, period + g.ms()),
        Level::Call,
        Some(conv.session_id.clone()),
        conv.service_id.clone(),
        now_ms,
    );
    base.source = conv.source.name().to_string();
    match answer {
        Answer::Number(v) => vec![ValueRow {
            value: Some(*v),
            sample_size: 1,
            ..base
        }],
        Answer::Bool(b) => vec![ValueRow {
            value: Some(if *b { 1.0 } else { 0.0 }),
            sample_size: 1,
            ..base
        }],
        Answer::Labels(labels) => {
            let cats: Vec<(String, i64)> = labels.iter().map(|l| (l.clone(), 1)).collect();
            category_rows(base, def, &cats)
        }
        // A dropped answer is kept as a valueless row, so the
        // conversation is not asked again next run.
        Answer::Dropped(_) => vec![base],
    }
}

/// Aggregates per-conversation AI values (entity rows) into workspace and
/// service values per period, the same way plans aggregate static ones.
pub fn aggregate_ai(ws: &str, def: &MetricDef, entity: &[ValueRow], now_ms: i64) -> Vec<ValueRow> {
    // Hourly metrics get daily aggregates too (trends are daily).
    let mut grans = vec![def.period_granularity];
    if def.period_granularity == Granularity::Hourly {
        grans.push(Granularity::Daily);
    }
    type Key = (Granularity, i64, DataSource, Level, Option<String>);
    let mut groups: BTreeMap<Key, Vec<&ValueRow>> = BTreeMap::new();
    for r in entity.iter().filter(|r| r.entity_type == "call") {
        let source = DataSource::of_stored(&r.source);
        for g in &grans {
            let period = period_of(r.period_start, *g);
            groups
                .entry((*g, period, source, Level::Workspace, None))
                .or_default()
                .push(r);
            if let Some(s) = &r.service_id {
                groups
                    .entry((*g, period, source, Level::Service, Some(s.clone())))
                    .or_default()
                    .push(r);
            }
        }
    }
    let mut out = Vec::new();
    for ((g, period, source, level, service), rows) in groups {
        let mut base = value_row(
            ws,
            def,
            (g.name(), period, period + g.ms()),
            level,
            service,
            None,
            now_ms,
        );
        base.source = source.name().to_string();
        if def.metric_type == MetricType::Categorical {
            let mut cats: BTreeMap<String, i64> = BTreeMap::new();
            for r in &rows {
                if let Some(c) = &r.category {
                    *cats.entry(c.clone()).or_default() += 1;
                }
            }
            let cats: Vec<(String, i64)> = cats.into_iter().collect();
            out.extend(category_rows(base, def, &cats));
            continue;
        }
        let vals: Vec<f64> = rows
            .iter()
            .filter(|r| r.category.is_none())
            .filter_map(|r| r.value)
            .collect();
        let n = vals.len() as i64;
        let value = fold(def, &vals, g.ms() as f64 / 3_600_000.0);
        out.push(ValueRow {
            value,
            sample_size: n,
            ..base
        });
    }
    out
}

/// An aggregation over values in memory (AI values; the oracle of tests
/// uses its own loop).
fn fold(def: &MetricDef, vals: &[f64], hours: f64) -> Option<f64> {
    let boolean = def.metric_type == MetricType::Boolean;
    let n = vals.len() as f64;
    match def.aggregation {
        Aggregation::Count | Aggregation::Rate => {
            let c = if boolean {
                vals.iter().filter(|v| **v != 0.0).count()
            } else {
                vals.len()
            } as f64;
            Some(if def.aggregation == Aggregation::Rate {
                c / hours
            } else {
                c
            })
        }
        Aggregation::Sum => (!vals.is_empty()).then(|| vals.iter().sum()),
        Aggregation::Avg => (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / n),
        Aggregation::Min => vals.iter().copied().reduce(f64::min),
        Aggregation::Max => vals.iter().copied().reduce(f64::max),
        Aggregation::CountDistinct => {
            let set: BTreeSet<u64> = vals.iter().map(|v| v.to_bits()).collect();
            Some(set.len() as f64)
        }
        Aggregation::Ratio => {
            (!vals.is_empty()).then(|| vals.iter().filter(|v| **v != 0.0).count() as f64 / n)
        }
        a => a.quantile().and_then(|q| {
            let mut v = vals.to_vec();
            crate::udaf::quantile::quantile_of(&mut v, q)
        }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_ai_metric(
    engine: &Engine,
    ai: &Ai,
    budget: &Budget,
    ws: &str,
    def: &MetricDef,
    window: (i64, i64),
    now_ms: i64,
    report: &mut Report,
) -> Result<()> {
    let store = &engine.store;
    let file = values::ai_file(&def.key);
    // What earlier runs valued, per day of the window.
    let mut by_day: BTreeMap<String, Vec<ValueRow>> = BTreeMap::new();
    let mut d = day_of_ms(window.0);
    while day_start_millis(d) < window.1 {
        let rows = values::read_file(store, ws, &d.to_string(), &file).await?;
        by_day.insert(d.to_string(), rows);
        d = d + chrono::Days::new(1);
    }
    let done: HashSet<String> = by_day
        .values()
        .flatten()
        .filter_map(|r| r.session_id.clone())
        .collect();
    let convs = conversations(
        engine,
        ws,
        def,
        window,
        None,
        &done,
        AI_CONVERSATIONS_PER_RUN,
    )
    .await?;
    if convs.is_empty() {
        return Ok(());
    }
    let answers: Vec<(Conversation, Result<Answer, extract::Error>)> =
        futures::stream::iter(convs.into_iter().map(|c| async move {
            let a = extract::extract(ai, budget, def, &c.text).await;
            (c, a)
        }))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut new_rows: BTreeMap<String, Vec<ValueRow>> = BTreeMap::new();
    for (conv, answer) in answers {
        match answer {
            Ok(a) => {
                if let Answer::Dropped(why) = &a {
                    tracing::info!(metric = %def.key, session = %conv.session_id, reason = %why, "AI answer dropped");
                    report.ai_dropped += 1;
                } else {
                    report.ai_values += 1;
                }
                let day = day_of_ms(conv.last_ms).to_string();
                new_rows
                    .entry(day)
                    .or_default()
                    .extend(answer_rows(ws, def, &conv, &a, now_ms));
            }
            Err(extract::Error::Budget(n)) => {
                report.ai_failed += 1;
                tracing::warn!(metric = %def.key, budget = n, "AI budget spent; the rest waits for the next run");
            }
            Err(e) => {
                report.ai_failed += 1;
                tracing::warn!(metric = %def.key, session = %conv.session_id, error = %e, "AI extraction failed; retried next run");
            }
        }
    }
    for (day, fresh) in new_rows {
        let mut entity: Vec<ValueRow> = by_day
            .remove(&day)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.entity_type == "call")
            .collect();
        entity.extend(fresh);
        let mut all = aggregate_ai(ws, def, &entity, now_ms);
        all.extend(entity);
        report.values_written += all.len();
        values::write_file(store, ws, &day, &file, &all).await?;
    }
    Ok(())
}

/// A value computed on demand (`evaluate`), not stored.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub value: Option<f64>,
    pub categories: Option<BTreeMap<String, f64>>,
    pub sample_size: i64,
    /// Production or simulation: the events the value came from.
    pub source: DataSource,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// No such subject, or no conversation summary for it.
    #[error("{0}")]
    NotFound(String),
    /// The metric cannot be evaluated for this subject on demand.
    #[error("{0}")]
    NotEvaluable(String),
    /// The server has no AI endpoint (or no model for the tier).
    #[error("{0}")]
    NotConfigured(String),
    /// The AI endpoint failed.
    #[error("{0}")]
    Upstream(String),
    /// The query failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Computes one metric for one subject over a range, without storing it.
/// Without a subject, the value is the workspace's production value.
pub async fn evaluate(
    engine: &Engine,
    ai: &Ai,
    def: &MetricDef,
    level: Level,
    sel: &Selection,
    now_ms: i64,
) -> Result<Evaluation, EvaluateError> {
    if def.extraction_mode.is_ai() {
        require_subject(engine, sel).await?;
        let Some(session) = &sel.session_id else {
            return Err(EvaluateError::NotEvaluable(format!(
                "{} is an AI metric ({}): it is evaluated per conversation; give a subject_id",
                def.key,
                wire(def.extraction_mode)
            )));
        };
        let convs = conversations(
            engine,
            &sel.workspace,
            def,
            (sel.from_ms, sel.to_ms),
            Some(session),
            &HashSet::new(),
            1,
        )
        .await?;
        let Some(conv) = convs.into_iter().next() else {
            return Err(EvaluateError::NotFound(format!(
                "call {session:?} has no conversation summary ({} events of {}) in the range",
                def.event_types().join(", "),
                def.source.name()
            )));
        };
        if let Some(e) = ai.unavailable(def) {
            return Err(EvaluateError::NotConfigured(format!(
                "{} is an AI metric and {e}",
                def.key
            )));
        }
        let budget = Budget::new(1);
        let answer = extract::extract(ai, &budget, def, &conv.text)
            .await
            .map_err(|e| match e {
                AiError::NotConfigured | AiError::NoModel(_) => {
                    EvaluateError::NotConfigured(format!("{}: {e}", def.key))
                }
                other => EvaluateError::Upstream(format!("{}: {other}", def.key)),
            })?;
        let rows = answer_rows(&sel.workspace, def, &conv, &answer, now_ms);
        return Ok(summarise(def, &rows, conv.source, (sel.from_ms, sel.to_ms)));
    }
    let spec = Spec {
        ws: &sel.workspace,
        level,
        granularity: None,
        sel,
        now_ms,
    };
    // The selection names the subject, so every row is its own: of one
    // source, or (a call with simulated and real events) production's.
    let rows = compute(engine, engine.events_source(), &spec, &[def]).await?;
    let has = |s: DataSource| {
        rows.iter()
            .any(|r| r.category.is_none() && DataSource::of_stored(&r.source) == s)
    };
    let source =
        if level == Level::Call && !has(DataSource::Production) && has(DataSource::Simulation) {
            DataSource::Simulation
        } else {
            DataSource::Production
        };
    let rows: Vec<ValueRow> = rows
        .into_iter()
        .filter(|r| DataSource::of_stored(&r.source) == source)
        .collect();
    let evaluation = summarise(def, &rows, source, (sel.from_ms, sel.to_ms));
    if evaluation.sample_size == 0 {
        // No value: tell an unknown subject from one without such events.
        require_subject(engine, sel).await?;
    }
    Ok(evaluation)
}

/// A 404 unless some event of the workspace in the range names the
/// selection's subject.
async fn require_subject(engine: &Engine, sel: &Selection) -> Result<(), EvaluateError> {
    let df = engine
        .ctx
        .table("events")
        .await
        .map_err(|e| Error::from(crate::engine::Error::from(e)))?
        .filter(
            events_predicate(&sel.workspace, sel.range(), &[], &sel.filters())
                .map_err(Error::from)?,
        )
        .and_then(|df| df.limit(0, Some(1)))
        .map_err(Error::from)?;
    let found = engine
        .execute(df.logical_plan().clone())
        .await
        .map_err(Error::from)?
        .iter()
        .any(|b| b.num_rows() > 0);
    if found {
        return Ok(());
    }
    let who = match (&sel.session_id, &sel.service_id) {
        (Some(s), _) => format!("call {s:?}"),
        (None, Some(s)) => format!("service {s:?}"),
        _ => format!("workspace {:?}", sel.workspace),
    };
    Err(EvaluateError::NotFound(format!(
        "no events for {who} between the given dates"
    )))
}

/// The value of `rows` (one subject), its period the rows' own or else
/// `range`.
fn summarise(
    def: &MetricDef,
    rows: &[ValueRow],
    source: DataSource,
    range: (i64, i64),
) -> Evaluation {
    let head = rows.iter().find(|r| r.category.is_none());
    let categories = (def.metric_type == MetricType::Categorical).then(|| {
        rows.iter()
            .filter_map(|r| Some((r.category.clone()?, r.value.unwrap_or(0.0))))
            .collect()
    });
    Evaluation {
        value: head.and_then(|r| r.value),
        categories,
        sample_size: head.map(|r| r.sample_size).unwrap_or(0),
        source,
        period_start: head.map(|r| r.period_start).unwrap_or(range.0),
        period_end: head.map(|r| r.period_end).unwrap_or(range.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ai_values_aggregate_per_period_level_and_day() {
        let mut def = crate::metric_store::check_settings(&serde_json::json!({"definitions": [{
            "key": "ai_score", "name": "AI score", "metric_type": "numerical",
            "source": "call_intelligence", "event_types": ["call_intelligence.row"],
            "extraction_mode": "ai_query", "ai_query_prompt": "Score it", "model_tier": "fast",
            "aggregation": "avg", "period_granularity": "hourly"
        }]}))
        .unwrap()
        .custom
        .remove(0);
        let day = 1_767_830_400_000;
        let conv = |id: &str, hour: i64, svc: &str| Conversation {
            session_id: id.into(),
            last_ms: day + hour * 3_600_000 + 60_000,
            service_id: Some(svc.into()),
            source: DataSource::Production,
            text: String::new(),
        };
        let mut entity = Vec::new();
        for (c, v) in [
            (conv("a", 1, "s1"), 1.0),
            (conv("b", 1, "s1"), 2.0),
            (conv("c", 5, "s2"), 6.0),
        ] {
            entity.extend(answer_rows("ws", &def, &c, &Answer::Number(v), 0));
        }
        entity.extend(answer_rows(
            "ws",
            &def,
            &conv("d", 5, "s2"),
            &Answer::Dropped("x".into()),
            0,
        ));
        // A simulated conversation is aggregated apart from the real ones.
        let simulated = Conversation {
            source: DataSource::Simulation,
            ..conv("e", 1, "s1")
        };
        entity.extend(answer_rows("ws", &def, &simulated, &Answer::Number(9.0), 0));
        assert!(entity.iter().all(|r| r.granularity == "hourly"));
        let agg = aggregate_ai("ws", &def, &entity, 0);
        let find_in = |source: &str, g: &str, level: &str, id: &str, start: i64| {
            agg.iter()
                .find(|r| {
                    r.source == source
                        && r.granularity == g
                        && r.entity_type == level
                        && r.entity_id == id
                        && r.period_start == start
                })
                .map(|r| (r.value, r.sample_size))
        };
        let find =
            |g: &str, level: &str, id: &str, start: i64| find_in("production", g, level, id, start);
        assert_eq!(
            find_in("simulation", "daily", "workspace", "ws", day),
            Some((Some(9.0), 1))
        );
        assert_eq!(
            find_in("simulation", "daily", "service", "s1", day),
            Some((Some(9.0), 1))
        );
        assert_eq!(
            find("hourly", "workspace", "ws", day + 3_600_000),
            Some((Some(1.5), 2))
        );
        assert_eq!(
            find("hourly", "workspace", "ws", day + 5 * 3_600_000),
            Some((Some(6.0), 1))
        );
        assert_eq!(find("daily", "workspace", "ws", day), Some((Some(3.0), 3)));
        assert_eq!(find("daily", "service", "s1", day), Some((Some(1.5), 2)));
        assert_eq!(find("daily", "service", "s2", day), Some((Some(6.0), 1)));
        def.period_granularity = Granularity::Daily;
        assert!(aggregate_ai("ws", &def, &[], 0).is_empty());
    }
}
