//! The analyses as SQL table functions, so the REPL (and any SQL through
//! the engine) gets the same plans as the HTTP routes:
//!
//! ```sql
//! SELECT * FROM retention('skill', '2026-01-05T00:00:00Z', '2026-03-30T00:00:00Z');
//! SELECT * FROM next_intents('skill', '2026-01-05T00:00:00Z', '2026-01-12T00:00:00Z', 'LaunchRequest', 10);
//! SELECT * FROM top_paths('skill', '2026-01-05T00:00:00Z', '2026-01-12T00:00:00Z', 10);
//! ```
//!
//! Times are RFC 3339 text, timestamp literals or epoch milliseconds. Each
//! call returns a view over the compiled plan.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::logical_expr::{Expr, LogicalPlan, TableSource};

use super::{DEFAULT_INTENT, DEFAULT_LIMIT, Intent, Range};

type DfResult<T> = datafusion::error::Result<T>;

/// Registers `retention`, `next_intents` and `top_paths` over `events`.
/// Registers `retention`, `next_intents` and `top_paths` over `engine`'s
/// events table.
pub fn register(engine: &crate::engine::Engine) {
    let events = engine.events_source();
    for kind in [Kind::Retention, Kind::NextIntents, Kind::TopPaths] {
        engine.ctx.register_udtf(
            kind.name(),
            Arc::new(Analysis {
                kind,
                events: Arc::clone(&events),
            }),
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Retention,
    NextIntents,
    TopPaths,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Retention => "retention",
            Self::NextIntents => "next_intents",
            Self::TopPaths => "top_paths",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Self::Retention => "retention(skill, start, end [, stage])",
            Self::NextIntents => "next_intents(skill, start, end [, intent [, limit]])",
            Self::TopPaths => "top_paths(skill, start, end [, limit])",
        }
    }
}

struct Analysis {
    kind: Kind,
    events: Arc<dyn TableSource>,
}

impl std::fmt::Debug for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Analysis({})", self.kind.name())
    }
}

fn plan_error(kind: Kind, message: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!(
        "{}: {message}; usage: {}",
        kind.name(),
        kind.usage()
    ))
}

/// The constant value of an argument, through casts the planner adds.
fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        Expr::TryCast(c) => literal(&c.expr),
        _ => None,
    }
}

fn text(kind: Kind, e: &Expr, what: &str) -> DfResult<String> {
    match literal(e) {
        Some(ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => Ok(s.clone()),
        _ => Err(plan_error(kind, format!("{what} must be a text constant"))),
    }
}

fn millis(kind: Kind, e: &Expr, what: &str) -> DfResult<i64> {
    let bad = || {
        plan_error(
            kind,
            format!("{what} must be an RFC 3339 time, a timestamp or epoch milliseconds"),
        )
    };
    match literal(e).ok_or_else(bad)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|_| bad()),
        ScalarValue::Int64(Some(v)) => Ok(*v),
        ScalarValue::TimestampMillisecond(Some(v), _) => Ok(*v),
        ScalarValue::TimestampSecond(Some(v), _) => Ok(v.saturating_mul(1000)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Ok(v.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Ok(v.div_euclid(1_000_000)),
        _ => Err(bad()),
    }
}

fn whole(kind: Kind, e: &Expr, what: &str) -> DfResult<usize> {
    match literal(e) {
        Some(ScalarValue::Int64(Some(v))) if *v >= 0 => Ok(*v as usize),
        _ => Err(plan_error(kind, format!("{what} must be a whole number"))),
    }
}

impl Analysis {
    fn plan(&self, args: &[Expr]) -> DfResult<LogicalPlan> {
        let kind = self.kind;
        let max_args = match kind {
            Kind::Retention => 4,
            Kind::NextIntents => 5,
            Kind::TopPaths => 4,
        };
        if args.len() < 3 || args.len() > max_args {
            return Err(plan_error(kind, format!("got {} arguments", args.len())));
        }
        let skill = text(kind, &args[0], "skill")?;
        let range = Range::new(
            millis(kind, &args[1], "start")?,
            millis(kind, &args[2], "end")?,
        )
        .map_err(|e| plan_error(kind, e))?;
        let checked = |limit: Option<&Expr>| -> DfResult<usize> {
            let n = match limit {
                Some(e) => whole(kind, e, "limit")?,
                None => DEFAULT_LIMIT,
            };
            super::check_limit(n).map_err(|e| plan_error(kind, e))
        };
        let plan = match kind {
            Kind::Retention => {
                let stage = match args.get(3) {
                    Some(e) => text(kind, e, "stage")?,
                    None => "live".to_string(),
                };
                let stage = super::Stage::parse(&stage).map_err(|e| plan_error(kind, e))?;
                super::retention_plan(Arc::clone(&self.events), &skill, range, stage)
            }
            Kind::NextIntents => {
                let intent = match args.get(3) {
                    Some(e) => text(kind, e, "intent")?,
                    None => DEFAULT_INTENT.to_string(),
                };
                let intent = Intent::parse(&intent).map_err(|e| plan_error(kind, e))?;
                super::next_plan(
                    Arc::clone(&self.events),
                    &skill,
                    range,
                    &intent,
                    checked(args.get(4))?,
                )
            }
            Kind::TopPaths => super::paths_plan(
                Arc::clone(&self.events),
                &skill,
                range,
                checked(args.get(3))?,
            ),
        };
        plan.map_err(|e| match e {
            super::Error::Plan(e) => e,
            other => plan_error(kind, other),
        })
    }
}

impl TableFunctionImpl for Analysis {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let plan = self.plan(args.exprs())?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
