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

mod ai_values;
mod checkpoint;
mod run;
mod static_values;

pub use crate::metric_store::{Error, LOOKBACK_MS, MAX_RANGE_DAYS, Result};
pub use run::{AI_CONVERSATIONS_PER_RUN, Options, Report, days, run};
pub use static_values::compute_day;
