//! metricstore: an open metrics engine for conversational products.
//!
//! A metric is a definition compiled into a DataFusion plan. The layers
//! depend one way, each on those above it in this list only:
//!
//! - [`definition`]: the one model (measures, fields, filters, queries),
//!   its validation and the built-in catalogs (`queries/`);
//! - [`compile`]: definition + table schema -> `LogicalPlan`, one query or
//!   a batch of measures in one scan; no session, no I/O;
//! - [`engine`]: a `SessionContext` over the [`storage`]: the events table,
//!   partition pruning, running plans and SQL;
//! - services: [`skill_metrics`], [`metric_store`], [`interaction`], [`analytics`],
//!   [`pipeline`], [`ingest`], [`generate`], [`bench`];
//! - front ends: [`api`], [`repl`], [`cli`]; [`alerts`] above the APIs;
//!   [`server`];
//! - [`cluster`]: the same plans on an Apache Ballista scheduler and
//!   executors.
//!
//! Beside them: [`udaf`] (our aggregate functions), [`series`] (reading a
//! compiled plan's answer), [`format`] (tables, CSV, JSON for the REPL).

pub mod alerts; // metric alerts: rules, per-group state, leased evaluation, signed webhooks
pub mod analytics; // skill analytics (retention, paths) as plans and SQL table functions
pub mod api; // axum routes of every API: handlers parse, call a service, shape the answer
pub mod bench; // the metric query suite, compiled and as hand-written SQL
pub mod cli; // command-line arguments shared by the subcommands
pub mod cluster; // Apache Ballista: codecs, object stores, scheduler and executor processes
pub mod compile; // definition -> LogicalPlan: one query, or a batch in one scan
pub mod definition; // the one definition model, validation, built-in catalogs
pub mod engine; // SessionContext over the store: events table, pruning, execution
pub mod format; // rendering record batches as a table, CSV or JSON
pub mod generate; // seeded demo events
pub mod ingest; // write-ahead log, pending events, flush, recovery, compaction
pub mod interaction; // the Interaction Metrics service: stored definitions, calculate
pub mod metric_store; // the Metric Store service: settings, lowering, values, evaluate, AI extraction
pub mod pipeline; // the Metric Store batch pipeline: runs, checkpoints, static and AI values
pub mod repl; // the SQL shell and its session
pub mod series; // a compiled plan's answer as series with empty buckets filled
pub mod server; // `serve`: state, background tasks, listener
pub mod skill_metrics; // the skill Metrics API's requests checked and lowered onto the model
pub mod storage; // object store, event files, versioned catalog, stored values
pub mod udaf; // quantile, rate, ratio
