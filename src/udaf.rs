//! Aggregate functions that DataFusion's built-ins don't give us, registered
//! once ([`register_all`]) for the compiler, the REPL and the server.
//!
//! - [`quantile`]: the exact continuous quantile (linear interpolation, as
//!   `percentile_cont`), because the t-digest sketches miss the 1% bound that
//!   `METRICS.md` sets. Its partial state is the list of values, so partial
//!   states merge exactly.
//! - [`rate`]: count per time unit over a window.
//! - [`ratio`]: `sum(numerator) / sum(denominator)` as one aggregate, so a
//!   ratio's parts are merged, never averaged.
//! - [`sketch`] and [`idset`]: mergeable states of quantiles (a DDSketch
//!   with a relative-error bound) and of distinct ids (roaring bitmaps over
//!   a dictionary), which rollups store.
//! - [`steps`]: a session's utterances with their times, mergeable, which
//!   the rollups keep per session and day for paths.

pub mod idset;
pub mod quantile;
pub mod rate;
pub mod ratio;
pub mod sketch;
pub mod steps;

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::prelude::SessionContext;

pub use quantile::{quantile, quantile_udaf};
pub use rate::{rate, rate_udaf};
pub use ratio::{ratio, ratio_udaf};

/// Registers every function of the project (our UDAFs and the JSON functions
/// over `attributes`) in `ctx`.
/// The project's aggregate functions that every process knows by name
/// (`idset_state` over raw ids needs a server's dictionary and is made
/// where one is, see `engine::rollup`).
pub fn aggregates() -> Vec<Arc<datafusion::logical_expr::AggregateUDF>> {
    vec![
        quantile_udaf(),
        rate_udaf(),
        ratio_udaf(),
        sketch::sketch_state_udaf(),
        sketch::sketch_quantile_udaf(),
        idset::idset_count_udaf(),
        steps::steps_state_udaf(),
    ]
}

pub fn register_all(ctx: &SessionContext) -> Result<()> {
    for udaf in aggregates() {
        ctx.register_udaf(udaf.as_ref().clone());
    }
    // The context shares its state across clones, so registering through
    // a clone registers in `ctx` (functions, `->` operators and rewrites).
    datafusion_functions_json::register_all(&mut ctx.clone())
}

/// The value of a constant argument (`quantile(x, 0.9)`), as `f64`.
pub(crate) fn constant_f64(
    function: &str,
    exprs: &[Arc<dyn PhysicalExpr>],
    index: usize,
) -> Result<f64> {
    let not_constant = || {
        DataFusionError::Plan(format!(
            "{function}: argument {} must be a numeric constant",
            index + 1
        ))
    };
    let literal = exprs
        .get(index)
        .and_then(|e| e.downcast_ref::<Literal>())
        .ok_or_else(not_constant)?;
    match literal
        .value()
        .cast_to(&datafusion::arrow::datatypes::DataType::Float64)?
    {
        ScalarValue::Float64(Some(v)) if v.is_finite() => Ok(v),
        _ => Err(not_constant()),
    }
}
