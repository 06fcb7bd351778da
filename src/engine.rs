//! The engine: a DataFusion `SessionContext` over a [`Store`], with the
//! `events` table and the project's functions registered. It runs plans
//! and SQL and knows nothing of the front ends: the services register
//! what they add (the Metric Store's values table, the analytics table
//! functions, the ingest's unpublished rows).
//!
//! The events table ([`events_table`]) is a `ListingTable` whose `date`
//! partitions are pruned from predicates on `time` ([`prune`]), so a query
//! (compiled or typed in the REPL) over one day lists and opens only that
//! day's files.

pub mod columns;
pub mod events_table;
pub mod prune;
pub mod rollup;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableSource, col, lit};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use events_table::{EventsTable, Unpublished};
pub use rollup::{AnswerPath, Rollups};

use crate::compile::{self, Compiled};
use crate::definition::Query;
use crate::series::{self, Series};
use crate::storage::events::{self, EVENTS_DIR};
use crate::storage::{self, Store};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error("{}", describe_datafusion(.0))]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Compile(#[from] compile::Error),
    #[error("bad event file {path}: {reason}")]
    BadFile { path: String, reason: String },
    #[error("reading a result: column {0} missing or of the wrong type")]
    Column(String),
    /// The server is at its limit of queries at once, or a query needed
    /// more memory than the pool could give (spilling included): try again.
    #[error("the server is busy: {0}; retry shortly")]
    Busy(String),
    #[error("the query ran longer than {} s and was stopped; narrow the range or the grouping", .0.as_secs())]
    Timeout(std::time::Duration),
    /// Refused before it ran: its answer would exceed the result budget.
    #[error(
        "this query would compute about {points} points ({buckets} buckets x about {groups} groups), \
         more than this server's budget of {budget}; use a coarser period, a shorter range or a filter"
    )]
    TooLarge {
        points: u64,
        buckets: u64,
        groups: u64,
        budget: u64,
    },
}

/// What one server lets its queries use: memory (a pool that DataFusion's
/// sorts and aggregates spill from when full), time, and how many run at
/// once (the rest wait a little, then are refused as busy).
#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub memory_bytes: usize,
    pub timeout: std::time::Duration,
    pub max_concurrent: usize,
    /// Metric queries of one workspace at once, so one tenant's dashboards
    /// leave turns for the others.
    pub max_per_tenant: usize,
    /// How long a query waits for a turn before it is refused.
    pub queue_wait: std::time::Duration,
    /// The most points (buckets x groups) a metric query may compute,
    /// checked before it runs ([`Engine::check_budget`]).
    pub max_result_points: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 4 << 30,
            timeout: std::time::Duration::from_secs(120),
            max_concurrent: 16,
            max_per_tenant: 8,
            queue_wait: std::time::Duration::from_secs(10),
            max_result_points: 2_000_000,
        }
    }
}

impl QueryLimits {
    /// `METRICSTORE_MEMORY_LIMIT_MB` (default 4096),
    /// `METRICSTORE_QUERY_TIMEOUT_S` (120), `METRICSTORE_MAX_QUERIES` (16),
    /// `METRICSTORE_MAX_QUERIES_PER_TENANT` (half of the server's, at
    /// least 1).
    pub fn from_env() -> Self {
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let d = Self::default();
        Self {
            memory_bytes: num("METRICSTORE_MEMORY_LIMIT_MB")
                .map_or(d.memory_bytes, |mb| (mb as usize).saturating_mul(1 << 20)),
            timeout: num("METRICSTORE_QUERY_TIMEOUT_S")
                .map_or(d.timeout, std::time::Duration::from_secs),
            max_concurrent: num("METRICSTORE_MAX_QUERIES").map_or(d.max_concurrent, |n| n as usize),
            max_per_tenant: num("METRICSTORE_MAX_QUERIES_PER_TENANT").map_or_else(
                || {
                    num("METRICSTORE_MAX_QUERIES")
                        .map_or(d.max_per_tenant, |n| (n as usize / 2).max(1))
                },
                |n| n as usize,
            ),
            queue_wait: d.queue_wait,
            max_result_points: num("METRICSTORE_MAX_RESULT_POINTS").unwrap_or(d.max_result_points),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Strips DataFusion's nesting of context wrappers down to what a person
/// needs, keeping the innermost message (which names the file for I/O and
/// Parquet errors raised while reading a given file).
fn describe_datafusion(e: &DataFusionError) -> String {
    e.to_string()
}

/// Groups a query may have without its count being estimated before it
/// runs (see [`Engine::check_budget`]).
pub const FREE_GROUPS: u64 = 1_000;

/// A session over one data location.
#[derive(Clone)]
pub struct Engine {
    pub ctx: SessionContext,
    /// In-process context for plans over rollup states when `ctx` sends
    /// plans to a cluster: a rollup answer reads a few kilobytes of states
    /// plus the raw tail, and its distinct counts number ids with the
    /// server's own dictionary, which executors do not hold.
    local: Option<SessionContext>,
    /// In-process context with one partition for plans over rollup
    /// states: they read thousands of rows, and splitting them costs more
    /// (a repartition, and partial states encoded and decoded again) than
    /// a second core gives; a request's queries run side by side anyway.
    states: SessionContext,
    pub store: Store,
    events: Arc<EventsTable>,
    limits: QueryLimits,
    turns: Arc<tokio::sync::Semaphore>,
    /// Turns of each workspace's metric queries (see
    /// [`QueryLimits::max_per_tenant`]).
    tenants: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    /// Rollups that answer compiled queries when they cover them (shared
    /// by clones).
    rollups: Arc<std::sync::RwLock<Option<Arc<Rollups>>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store.display)
            .finish_non_exhaustive()
    }
}

/// The session configuration every context of the project uses.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
        );
    let opts = config.options_mut();
    // Row-level filter pushdown measured 1.7x slower on the demo data (a
    // day-bucketed count over 10M events: 1.54 s against 0.91 s); row
    // groups and pages are still pruned by statistics.
    opts.execution.parquet.pushdown_filters = false;
    // Timestamps print and compare in UTC everywhere.
    opts.execution.time_zone = Some("+00:00".to_string());
    config
}

impl Engine {
    /// Opens a session over `store` with the `events` table registered.
    pub async fn new(store: Store) -> Result<Self> {
        Self::with_config(store, session_config()).await
    }

    /// As [`Engine::new`], with a given session configuration (tests pin
    /// `target_partitions` for stable plans).
    pub async fn with_config(store: Store, config: SessionConfig) -> Result<Self> {
        Self::with_limits(store, config, QueryLimits::from_env()).await
    }

    /// As [`Engine::with_config`], with given query limits.
    pub async fn with_limits(
        store: Store,
        config: SessionConfig,
        limits: QueryLimits,
    ) -> Result<Self> {
        let ctx = local_context(config, &limits)?;
        Self::with_context_and_limits(store, ctx, limits).await
    }

    /// As [`Engine::new`], over a context built elsewhere (e.g. one whose
    /// plans run on a cluster): registers the store, the project's
    /// functions and tables in it.
    pub async fn with_context(store: Store, ctx: SessionContext) -> Result<Self> {
        let limits = QueryLimits::from_env();
        let local = local_context(session_config(), &limits)?;
        let mut engine = Self::with_context_and_limits(store, ctx, limits).await?;
        engine.register(&local)?;
        engine.states = one_partition(&local);
        engine.local = Some(local);
        Ok(engine)
    }

    /// Registers the store, the project's functions and the `events`
    /// table in `ctx`.
    fn register(&self, ctx: &SessionContext) -> Result<()> {
        ctx.register_object_store(&self.store.base_url, Arc::clone(&self.store.object_store));
        crate::udaf::register_all(ctx)?;
        ctx.register_table("events", Arc::clone(&self.events) as _)?;
        Ok(())
    }

    async fn with_context_and_limits(
        store: Store,
        ctx: SessionContext,
        limits: QueryLimits,
    ) -> Result<Self> {
        let events = Arc::new(EventsTable::try_new(&store, events::schema())?);
        let turns = Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent));
        let engine = Self {
            states: one_partition(&ctx),
            ctx,
            local: None,
            store,
            events,
            limits,
            turns,
            tenants: Arc::default(),
            rollups: Arc::default(),
        };
        engine.register(&engine.ctx)?;
        Ok(engine)
    }

    /// Runs a SQL statement and collects the result.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        self.execute(plan).await
    }

    /// Turns a failure to read the data into an error naming the file at
    /// fault. DataFusion's Parquet and cast errors do not say which file
    /// they came from, so on such an error (only then: it costs a footer
    /// read per file) the event files are checked one by one.
    async fn diagnose<T>(&self, result: Result<T, DataFusionError>) -> Result<T> {
        let e = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let data_error = matches!(
            e.find_root(),
            DataFusionError::ParquetError(_)
                | DataFusionError::ArrowError(..)
                | DataFusionError::External(_)
        );
        if data_error && let Some((path, reason)) = self.find_bad_file().await {
            return Err(Error::BadFile { path, reason });
        }
        Err(e.into())
    }

    /// The first event file that is not Parquet or does not fit the
    /// events schema, with the reason.
    pub async fn find_bad_file(&self) -> Option<(String, String)> {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let files = self.store.list(EVENTS_DIR).await.ok()?;
        for meta in files
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
        {
            let shown = meta.location.to_string();
            // The whole file: this runs only after a failure, and keeps the
            // check to the plain synchronous reader.
            let bytes = match self.store.get_opt(&meta.location).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => return Some((shown, format!("cannot be read ({e})"))),
            };
            let schema = match ParquetRecordBatchReaderBuilder::try_new(bytes) {
                Ok(b) => Arc::clone(b.schema()),
                Err(e) => return Some((shown, format!("not a readable Parquet file ({e})"))),
            };
            if let Some(reason) = events::schema_mismatch(&schema) {
                return Some((shown, reason));
            }
        }
        None
    }

    /// The `events` table as a plan source for the compiler.
    pub fn events_source(&self) -> Arc<dyn TableSource> {
        provider_as_source(Arc::clone(&self.events) as _)
    }

    /// Makes rows not yet in files part of the `events` table.
    pub fn attach_unpublished(&self, rows: Arc<dyn Unpublished>) {
        self.events.attach(rows);
    }

    /// Compiles a metric query and returns its plan and how to read it.
    pub fn compile(&self, query: &Query) -> Result<Compiled> {
        Ok(compile::compile(query, self.events_source())?)
    }

    /// Compiles and runs a metric query, returning one series per group.
    pub async fn run(&self, query: &Query) -> Result<Vec<Series>> {
        Ok(self.run_traced(query).await?.0)
    }

    /// Lets `rollups` answer the queries they cover (`None`: raw only).
    pub fn attach_rollups(&self, rollups: Option<Arc<Rollups>>) {
        *self.rollups.write().expect("not poisoned") = rollups;
    }

    pub fn rollups(&self) -> Option<Arc<Rollups>> {
        self.rollups.read().expect("not poisoned").clone()
    }

    /// The plan that answers `query`, and which path it takes: a rollup
    /// merged with the raw tail when one covers the query, else the raw
    /// plan.
    pub async fn plan_traced(&self, query: &Query) -> Result<(Compiled, AnswerPath)> {
        if let Some(rollups) = self.rollups() {
            match rollups.plan(self, query).await {
                Ok(Some(compiled)) => return Ok((compiled, AnswerPath::Rollup)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "rollup plan failed; answering raw"),
            }
        }
        Ok((self.compile(query)?, AnswerPath::Raw))
    }

    /// A turn among `workspace`'s metric queries: waits as a query waits
    /// for a server turn, then refuses as busy.
    async fn tenant_turn(&self, workspace: &str) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let turns = {
            let mut tenants = self.tenants.lock().expect("not poisoned");
            // Forget idle workspaces now and then, so the map holds the
            // busy ones only.
            if tenants.len() > 1_000 {
                let max = self.limits.max_per_tenant;
                tenants.retain(|_, t| t.available_permits() < max);
            }
            Arc::clone(tenants.entry(workspace.to_string()).or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.limits.max_per_tenant.max(1),
                ))
            }))
        };
        tokio::time::timeout(self.limits.queue_wait, turns.acquire_owned())
            .await
            .map_err(|_| {
                Error::Busy(format!(
                    "{} queries of this workspace are running",
                    self.limits.max_per_tenant
                ))
            })
            .map(|permit| permit.expect("the semaphore is never closed"))
    }

    /// Which path would answer `query`, with its logical and physical
    /// plans (as the REPL's `\explain` shows them); runs nothing.
    pub async fn explain(&self, query: &Query) -> Result<(AnswerPath, String, String)> {
        let (compiled, path) = self.plan_traced(query).await?;
        let ctx = match path {
            AnswerPath::Rollup => &self.states,
            AnswerPath::Raw => &self.ctx,
        };
        let state = ctx.state();
        let optimized = state.optimize(&compiled.plan)?;
        let physical = state.create_physical_plan(&optimized).await?;
        Ok((
            path,
            optimized.display_indent().to_string(),
            datafusion::physical_plan::displayable(physical.as_ref())
                .indent(true)
                .to_string(),
        ))
    }

    /// As [`Engine::run`], saying which path answered. A rollup answer that
    /// fails to read (a part or tail file removed under it) is answered raw.
    pub async fn run_traced(&self, query: &Query) -> Result<(Vec<Series>, AnswerPath)> {
        let (sparse, path) = self.run_sparse(query).await?;
        Ok((sparse.filled(), path))
    }

    /// As [`Engine::run_traced`], with gaps not filled yet (a page of the
    /// answer is filled by [`series::Sparse::page`]).
    pub async fn run_sparse(&self, query: &Query) -> Result<(series::Sparse, AnswerPath)> {
        let _tenant = self.tenant_turn(&query.workspace_id).await?;
        self.check_budget(query).await?;
        let (compiled, path) = self.plan_traced(query).await?;
        if path == AnswerPath::Rollup {
            match self.execute_states(compiled.plan.clone()).await {
                Ok(batches) => return Ok((series::collect_sparse(&compiled, &batches)?, path)),
                Err(e @ (Error::Busy(_) | Error::Timeout(_))) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "rollup answer failed; answering raw"),
            }
        }
        let compiled = self.compile(query)?;
        let batches = self.execute(compiled.plan.clone()).await?;
        Ok((
            series::collect_sparse(&compiled, &batches)?,
            AnswerPath::Raw,
        ))
    }

    /// Refuses, before it runs, a query whose answer would hold more than
    /// [`QueryLimits::max_result_points`] points: its buckets times its
    /// groups. Buckets are known from the range; groups are estimated
    /// (`approx_distinct` of each group-by dimension over the query's
    /// events, multiplied) only when the buckets leave room for fewer than
    /// [`FREE_GROUPS`] groups, so common queries pay nothing for the check.
    pub async fn check_budget(&self, query: &Query) -> Result<()> {
        let budget = self.limits.max_result_points;
        let buckets = query.bucket.width_ms().map_or(1, |w| {
            let first = query
                .bucket
                .floor(query.range.start_ms, query.range.start_ms);
            ((query.range.end_ms - first).max(0) + w - 1).div_euclid(w) as u64
        });
        let refuse = |groups: u64| Error::TooLarge {
            points: buckets.saturating_mul(groups),
            buckets,
            groups,
            budget,
        };
        if buckets > budget {
            return Err(refuse(1));
        }
        if query.group_by.is_empty() || buckets.saturating_mul(FREE_GROUPS) <= budget {
            return Ok(());
        }
        let predicate =
            compile::events_predicate(&query.workspace_id, query.range, &[], &query.filters)?;
        let counts: Vec<Expr> = query
            .group_by
            .iter()
            .enumerate()
            .map(|(i, d)| {
                datafusion::functions_aggregate::expr_fn::approx_distinct(
                    compile::expr::dimension_expr(d),
                )
                .alias(format!("g{i}"))
            })
            .collect();
        let plan = LogicalPlanBuilder::scan("events", self.events_source(), None)?
            .filter(predicate)?
            .aggregate(Vec::<Expr>::new(), counts)?
            .build()?;
        let batches = self.execute(plan).await?;
        let mut groups: u64 = 1;
        if let Some(b) = batches.iter().find(|b| b.num_rows() > 0) {
            for c in b.columns() {
                let c = datafusion::arrow::compute::cast(c, &DataType::UInt64)
                    .map_err(DataFusionError::from)?;
                let n = c
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                    .map_or(1, |a| a.value(0));
                // Events without the field form one more group.
                groups = groups.saturating_mul(n + 1);
            }
        }
        if buckets.saturating_mul(groups) > budget {
            return Err(refuse(groups));
        }
        Ok(())
    }

    /// The distinct top-level keys of `attributes` in a workspace's events
    /// of `event_type`, optionally narrowed by resource type and action.
    pub async fn attribute_keys(
        &self,
        workspace: &str,
        event_type: &str,
        resource_type: Option<&str>,
        action: Option<&str>,
    ) -> Result<Vec<String>> {
        use datafusion::arrow::array::{Array, AsArray};
        let mut predicate = col("workspace_id")
            .eq(lit(workspace))
            .and(col("event_type").eq(lit(event_type)));
        if let Some(r) = resource_type {
            predicate = predicate.and(col("resource_type").eq(lit(r)));
        }
        if let Some(a) = action {
            predicate = predicate.and(col("action").eq(lit(a)));
        }
        let keys =
            datafusion_functions_json::udfs::json_object_keys_udf().call(vec![col("attributes")]);
        let batches = self
            .ctx
            .table("events")
            .await?
            .filter(predicate)?
            .select(vec![keys.alias("k")])?
            .unnest_columns(&["k"])?
            .distinct()?
            .collect()
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let a = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
                .map_err(DataFusionError::from)?;
            let a = a.as_string::<i32>();
            out.extend(
                (0..a.len())
                    .filter(|i| a.is_valid(*i))
                    .map(|i| a.value(i).to_string()),
            );
        }
        out.sort();
        Ok(out)
    }

    /// Whether any event names `workspace` (one row is enough).
    pub async fn workspace_exists(&self, workspace: &str) -> Result<bool> {
        let batches = self
            .ctx
            .table("events")
            .await?
            .filter(col("workspace_id").eq(lit(workspace)))?
            .select_columns(&["workspace_id"])?
            .limit(0, Some(1))?
            .collect()
            .await?;
        Ok(batches.iter().any(|b| b.num_rows() > 0))
    }

    /// Executes a logical plan and collects the result.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        self.execute_on(&self.ctx, plan).await
    }

    /// As [`Engine::execute`], in this process even when other plans go to
    /// a cluster: for plans over rollup states and their raw tail.
    pub async fn execute_local(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        self.execute_on(self.local.as_ref().unwrap_or(&self.ctx), plan)
            .await
    }

    /// As [`Engine::execute_local`], on one partition: for answers over
    /// rollup states.
    pub async fn execute_states(&self, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
        self.execute_on(&self.states, plan).await
    }

    async fn execute_on(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<Vec<RecordBatch>> {
        let _turn = tokio::time::timeout(self.limits.queue_wait, self.turns.acquire())
            .await
            .map_err(|_| {
                Error::Busy(format!(
                    "{} queries are running",
                    self.limits.max_concurrent
                ))
            })?
            .expect("the semaphore is never closed");
        match tokio::time::timeout(self.limits.timeout, self.execute_now(ctx, plan)).await {
            Err(_) => Err(Error::Timeout(self.limits.timeout)),
            Ok(Err(Error::DataFusion(e)))
                if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) =>
            {
                Err(Error::Busy(format!(
                    "the query needs more memory than is free ({e})"
                )))
            }
            Ok(other) => other,
        }
    }

    async fn execute_now(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
    ) -> Result<Vec<RecordBatch>> {
        let mut result = async {
            ctx.execute_logical_plan(plan.clone())
                .await?
                .collect()
                .await
        }
        .await;
        if result.as_ref().is_err_and(file_vanished) {
            result = async { ctx.execute_logical_plan(plan).await?.collect().await }.await;
        }
        self.diagnose(result).await
    }
}

/// A context sharing `ctx`'s tables, functions and runtime, planning for
/// one partition, without file statistics (reading every file's footer
/// statistics for the planner cost a tenth of a rollup answer; row groups
/// are still pruned by their statistics when a file is read).
fn one_partition(ctx: &SessionContext) -> SessionContext {
    let state = ctx.state();
    let mut config = state.config().clone().with_target_partitions(1);
    config.options_mut().execution.collect_statistics = false;
    // Rollup parts are cut into small row groups already; their page
    // indexes cost a second read per part and pruned nothing more.
    config.options_mut().execution.parquet.enable_page_index = false;
    SessionContext::new_with_state(
        datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build(),
    )
}

/// An in-process context: listings are not cached (files arrive by
/// ingest and other writers and go by compaction) and memory is bounded by
/// `limits`.
fn local_context(config: SessionConfig, limits: &QueryLimits) -> Result<SessionContext> {
    let cache = datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
        .with_list_files_cache_limit(0);
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_cache_manager(cache)
        .with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::FairSpillPool::new(limits.memory_bytes),
        ))
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// The Parquet files under `dir` as a table with Hive-style `partitions`
/// (text) and an explicit schema (so an empty directory is a table too).
pub fn parquet_table(
    store: &Store,
    dir: &str,
    partitions: &[&str],
    schema: SchemaRef,
    sort_order: Vec<Vec<datafusion::logical_expr::SortExpr>>,
) -> Result<ListingTable> {
    let url = ListingTableUrl::parse(store.dir_url(dir))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partitions
                .iter()
                .map(|p| (p.to_string(), DataType::Utf8))
                .collect(),
        )
        .with_file_sort_order(sort_order);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(ListingTable::try_new(config)?)
}

/// Whether a query failed because a file it had listed was removed before
/// it was read: compaction replaces small files while holding the publish
/// lock, which readers hold only while planning. Such a query is run again
/// (once): it then lists the compacted file instead, so it neither fails
/// nor counts a row twice.
fn file_vanished(e: &DataFusionError) -> bool {
    matches!(e.find_root(), DataFusionError::ObjectStore(inner) if matches!(inner.as_ref(), object_store::Error::NotFound { .. }))
        || e.to_string().contains("No such file or directory")
}
