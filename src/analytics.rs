//! Skill analytics over raw `utterance` events: weekly retention cohorts
//! and interaction paths. Each answer is one DataFusion plan built with
//! `LogicalPlanBuilder` and `Expr` (no SQL text) against the `events`
//! source, so the HTTP routes, the REPL's table functions
//! ([`functions`]) and the tests run the very same plan.
//!
//! Meanings (also in README.md):
//!
//! - **Retention.** A user's cohort is the week (Monday 00:00 UTC) of their
//!   first utterance to the skill, looking back over all events before
//!   `end`; only users whose first utterance falls in `[start, end)` form
//!   cohorts (users seen before `start` are not new). Week 0 is the cohort
//!   week itself, so it is always 100%. Week `k` (1 to 12) counts the
//!   cohort's users with any utterance in the week starting `k` weeks after
//!   the cohort week, whatever they did in the weeks between. Weeks that
//!   start at or after `end` are not observed and not returned; the last
//!   returned week may be partly observed.
//! - **Paths.** A session's steps are its utterances in `[start, end)`,
//!   ordered by time then step name, each named by its intent or
//!   `(unclassified)`. "Next after X" looks at the first X of each session
//!   that has one: the step after it, or `(session ended)`. "Top paths" are
//!   each session's first five steps joined by ` > `. Percentages are of
//!   users, as the console document defines them ("the percentage of users
//!   who invoked a particular intent after the LaunchRequest"): a name's
//!   distinct users over the distinct users of all sessions counted, so a
//!   user who went two ways counts in both rows and the rows may add up to
//!   more than 100%. Sessions without a user count as sessions, never as
//!   users. Rankings sort by users descending, then sessions descending,
//!   then name ascending; past `limit` rows, the tail is one `(other)` row
//!   (its users counted once each) that says how many names it folds.
//!
//! About 820 lines: the retention and paths plans share their range,
//! stage and step expressions, kept together.

pub mod functions;
mod sessions;
pub mod summary;

pub use summary::Stage;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, JoinType, ScalarValue};
use datafusion::functions::expr_fn as f;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::functions_window::expr_fn as win;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableSource, cast, col, lit, when,
};

use crate::compile::ts;
use crate::definition::WEEK_ORIGIN_MS;
use crate::engine::{self, Engine, columns};

pub use crate::storage::events::DAY_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Weeks after the cohort week that retention reports (week 0 is extra).
pub const RETENTION_WEEKS: i64 = 12;
/// The longest range either analysis accepts: a year and a day.
pub const MAX_RANGE_MS: i64 = 366 * DAY_MS;
/// The last millisecond of year 9999: times past it cannot be weeks.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
/// Steps of a top path.
pub const PATH_STEPS: i64 = 5;
pub const DEFAULT_INTENT: &str = "LaunchRequest";
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;
/// The name of the row that holds the ranking's tail.
pub const OTHER: &str = "(other)";
/// The "next step" of a session in which nothing follows.
pub const SESSION_ENDED: &str = "(session ended)";
/// The step name of an utterance without an intent.
pub const UNCLASSIFIED: &str = "(unclassified)";
/// How the steps of a path are joined.
pub const PATH_SEPARATOR: &str = " > ";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mistake in the request: the code names which one.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("building plan: {0}")]
    Plan(#[from] DataFusionError),
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid(code: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        code,
        message: message.into(),
    }
}

/// A checked time range, `start <= time < end` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Range {
    /// Checks that the range is not empty, not reversed and at most
    /// [`MAX_RANGE_MS`] long (bigger ranges would scan years of events
    /// for one request).
    pub fn new(start_ms: i64, end_ms: i64) -> Result<Self> {
        for t in [start_ms, end_ms] {
            if !(0..=MAX_TIME_MS).contains(&t) {
                return Err(invalid(
                    "INVALID_TIME",
                    format!("{t} is outside 1970-01-01 to 9999-12-31 (epoch milliseconds)"),
                ));
            }
        }
        if start_ms >= end_ms {
            return Err(invalid(
                "INVALID_TIME_RANGE",
                "startTime must be before endTime",
            ));
        }
        if end_ms - start_ms > MAX_RANGE_MS {
            return Err(invalid(
                "INVALID_TIME_RANGE",
                format!("the range may span at most {} days", MAX_RANGE_MS / DAY_MS),
            ));
        }
        Ok(Self { start_ms, end_ms })
    }
}

/// An intent name as Alexa spells them: letters, digits, `_` and `.`
/// (`AMAZON.HelpIntent`), 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent(String);

impl Intent {
    pub fn parse(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 200
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(invalid(
                "INVALID_INTENT",
                format!(
                    "intent {s:?} is not an intent name (1 to 200 letters, digits, '_' or '.')"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many ranked rows to return before folding the rest into `(other)`.
pub fn check_limit(limit: usize) -> Result<usize> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid(
            "INVALID_LIMIT",
            format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
        ))
    }
}

/// The Monday-aligned week start of a timestamp expression.
fn week_of(e: Expr) -> Expr {
    let width = lit(ScalarValue::new_interval_mdn(0, 0, WEEK_MS * 1_000_000));
    f::date_bin(width, e, ts(WEEK_ORIGIN_MS))
}

/// A timestamp expression as epoch milliseconds.
fn millis(e: Expr) -> Expr {
    cast(
        cast(e, DataType::Timestamp(TimeUnit::Millisecond, None)),
        DataType::Int64,
    )
}

/// The skill's utterances before `end` (and from `start`, if given), of
/// one stage or all.
fn utterances(
    source: &Arc<dyn TableSource>,
    skill: &str,
    start_ms: Option<i64>,
    end_ms: i64,
    stage: Stage,
) -> Result<LogicalPlanBuilder> {
    let mut predicate = col("workspace_id")
        .eq(lit(skill))
        .and(col("event_type").eq(lit("utterance")))
        .and(col("time").lt(ts(end_ms)));
    if let Some(s) = start_ms {
        predicate = predicate.and(col("time").gt_eq(ts(s)));
    }
    if let Some(f) = stage.filter() {
        predicate = predicate.and(
            crate::compile::filter_expr(&f, "stage")
                .map_err(|e| DataFusionError::Plan(format!("stage filter: {e}")))?,
        );
    }
    Ok(LogicalPlanBuilder::scan("events", Arc::clone(source), None)?.filter(predicate)?)
}

/// The retention plan. Columns: `cohort_week` (timestamp), `cohort_users`,
/// `week` (0 to 12), `users`, `percentage` (of the cohort, 2 decimals);
/// one row per cohort and observed week, sorted by cohort then week.
pub fn retention_plan(
    source: Arc<dyn TableSource>,
    skill: &str,
    range: Range,
    stage: Stage,
) -> Result<LogicalPlan> {
    // Each user's first utterance ever (before `end`); new users only.
    let cohorts = utterances(&source, skill, None, range.end_ms, stage)?
        .filter(col("user_id").is_not_null())?
        .aggregate(
            vec![col("user_id")],
            vec![agg::min(col("time")).alias("first_time")],
        )?
        .filter(col("first_time").gt_eq(ts(range.start_ms)))?
        .project(vec![
            col("user_id").alias("c_user"),
            week_of(col("first_time")).alias("cohort_week"),
        ])?
        .build()?;
    let sizes = LogicalPlanBuilder::from(cohorts.clone())
        .aggregate(
            vec![col("cohort_week")],
            vec![agg::count(lit(1i64)).alias("cohort_users")],
        )?
        .build()?;
    // The weeks each user was active in the range.
    let activity = utterances(&source, skill, Some(range.start_ms), range.end_ms, stage)?
        .filter(col("user_id").is_not_null())?
        .project(vec![
            col("user_id").alias("a_user"),
            week_of(col("time")).alias("active_week"),
        ])?
        .distinct()?
        .build()?;
    let counts = LogicalPlanBuilder::from(cohorts)
        .join(
            activity,
            JoinType::Inner,
            (vec!["c_user"], vec!["a_user"]),
            None,
        )?
        .project(vec![
            col("cohort_week").alias("k_cohort"),
            ((millis(col("active_week")) - millis(col("cohort_week"))) / lit(WEEK_MS))
                .alias("k_week"),
        ])?
        .filter(col("k_week").lt_eq(lit(RETENTION_WEEKS)))?
        .aggregate(
            vec![col("k_cohort"), col("k_week")],
            vec![agg::count(lit(1i64)).alias("k_users")],
        )?
        .build()?;
    // Every cohort with every observed week, 0 where nobody came back.
    let weeks = LogicalPlanBuilder::values(
        (0..=RETENTION_WEEKS)
            .map(|w| vec![lit(w)])
            .collect::<Vec<_>>(),
    )?
    .project(vec![col("column1").alias("week")])?
    .build()?;
    let users = f::coalesce(vec![col("k_users"), lit(0i64)]);
    let plan = LogicalPlanBuilder::from(sizes)
        .cross_join(weeks)?
        .filter((millis(col("cohort_week")) + col("week") * lit(WEEK_MS)).lt(lit(range.end_ms)))?
        .join(
            counts,
            JoinType::Left,
            (vec!["cohort_week", "week"], vec!["k_cohort", "k_week"]),
            None,
        )?
        .project(vec![
            col("cohort_week"),
            col("cohort_users"),
            col("week"),
            users.clone().alias("users"),
            percentage(users, col("cohort_users")).alias("percentage"),
        ])?
        .sort(vec![
            col("cohort_week").sort(true, true),
            col("week").sort(true, true),
        ])?
        .build()?;
    Ok(plan)
}

/// `part * 100 / whole`, rounded to 2 decimals.
fn percentage(part: Expr, whole: Expr) -> Expr {
    let p = cast(part, DataType::Float64) * lit(100.0) / cast(whole, DataType::Float64);
    f::round(vec![p, lit(2i64)])
}

/// The skill's utterances in the range as steps of their sessions, in one
/// global order (session, time, step name) with, per row: its `user`,
/// `ord` (the position in that order), `prev` (the session of the row
/// before) and the session and step of the next four rows (`s1`..`s4`,
/// `l1`..`l4`).
/// A row starts its session when `prev` differs; the step `k` rows on is
/// in the same session when `s{k}` equals `session`.
///
/// One unpartitioned window instead of `PARTITION BY session`: with one
/// partition per session (hundreds of thousands), DataFusion's streaming
/// window spent most of its time on partition bookkeeping; this form was
/// 2.5x faster on 10M generated events (see README).
fn steps(source: Arc<dyn TableSource>, skill: &str, range: Range) -> Result<LogicalPlanBuilder> {
    let order = || {
        vec![
            col("session").sort(true, false),
            col("t").sort(true, false),
            col("step").sort(true, false),
        ]
    };
    let mut windows = vec![
        win::row_number().order_by(order()).build()?.alias("ord"),
        win::lag(col("session"), Some(1), None)
            .order_by(order())
            .build()?
            .alias("prev"),
    ];
    for k in 1..PATH_STEPS {
        windows.push(
            win::lead(col("session"), Some(k), None)
                .order_by(order())
                .build()?
                .alias(format!("s{k}")),
        );
        windows.push(
            win::lead(col("step"), Some(k), None)
                .order_by(order())
                .build()?
                .alias(format!("l{k}")),
        );
    }
    Ok(utterances(
        &source,
        skill,
        Some(range.start_ms),
        range.end_ms,
        Stage::All,
    )?
    .filter(col("session_id").is_not_null())?
    .project(vec![
        col("session_id").alias("session"),
        col("time").alias("t"),
        f::coalesce(vec![col("intent"), lit(UNCLASSIFIED)]).alias("step"),
        col("user_id").alias("user"),
    ])?
    .window(windows)?)
}

/// The step `k` rows on if it is in the same session, else NULL.
fn step_after(k: i64) -> Result<Expr> {
    Ok(when(
        col(format!("s{k}")).eq(col("session")),
        col(format!("l{k}")),
    )
    .end()?)
}

/// The rows of [`steps`] that either ranking reads, and only the columns
/// it reads: each session's first row, with its `path` (its first five
/// steps), and, with `intent`, every row of that step, with the step
/// `after` it. About a third of the steps' rows and a third of their
/// columns, so the paths route holds this, not the steps, in memory.
fn heads(steps: LogicalPlanBuilder, intent: Option<&Intent>) -> Result<LogicalPlanBuilder> {
    let start = col("prev").is_null().or(col("prev").not_eq(col("session")));
    let mut parts = vec![col("step")];
    for k in 1..PATH_STEPS {
        parts.push(step_after(k)?);
    }
    let keep = match intent {
        Some(intent) => start.clone().or(col("step").eq(lit(intent.as_str()))),
        None => start.clone(),
    };
    Ok(steps.filter(keep)?.project(vec![
        col("session"),
        col("ord"),
        col("step"),
        col("user"),
        when(start, f::concat_ws(lit(PATH_SEPARATOR), parts))
            .end()?
            .alias("path"),
        step_after(1)?.alias("after"),
    ])?)
}

/// What sessions do next after their first `intent`. Columns as
/// [`ranked`].
pub fn next_plan(
    source: Arc<dyn TableSource>,
    skill: &str,
    range: Range,
    intent: &Intent,
    limit: usize,
) -> Result<LogicalPlan> {
    let heads = || heads(steps(Arc::clone(&source), skill, range)?, Some(intent));
    ranked(|| next_from(heads()?, intent), limit)
}

/// The (name, user) rows of "next after `intent`" from the rows of
/// [`heads`] (a plan or a table of them).
fn next_from(heads: LogicalPlanBuilder, intent: &Intent) -> Result<LogicalPlanBuilder> {
    // Among the rows of `intent`, in the same order, the first of each
    // session is the one whose predecessor is of another session.
    let previous = win::lag(col("session"), Some(1), None)
        .order_by(vec![col("ord").sort(true, false)])
        .build()?
        .alias("prev_same");
    Ok(heads
        .filter(col("step").eq(lit(intent.as_str())))?
        .window(vec![previous])?
        .filter(
            col("prev_same")
                .is_null()
                .or(col("prev_same").not_eq(col("session"))),
        )?
        .project(vec![
            f::coalesce(vec![col("after"), lit(SESSION_ENDED)]).alias("name"),
            col("user"),
        ])?)
}

/// The most common first five steps of sessions. Columns as [`ranked`].
pub fn paths_plan(
    source: Arc<dyn TableSource>,
    skill: &str,
    range: Range,
    limit: usize,
) -> Result<LogicalPlan> {
    let heads = || heads(steps(Arc::clone(&source), skill, range)?, None);
    ranked(|| paths_from(heads()?), limit)
}

/// The (name, user) rows of top paths from the rows of [`heads`].
fn paths_from(heads: LogicalPlanBuilder) -> Result<LogicalPlanBuilder> {
    Ok(heads
        .filter(col("path").is_not_null())?
        .project(vec![col("path").alias("name"), col("user")])?)
}

/// Ranks `(name, user)` rows, one per session counted: columns `rank`
/// (1..=limit, then limit + 1 for `(other)`), `name`, `users` (distinct
/// users), `sessions`, `percentage` (of `total_users`, the distinct users
/// of all rows, 2 decimals), `folded` (names folded into the row: 0, or
/// the tail's size for `(other)`) and `total_users`, sorted by rank.
///
/// `rows` is called twice: once for the counts per name, once to place
/// each (name, user) pair in its row (a join on name), because DataFusion
/// plans share no subplans. Windows over every pair (`sum(..) OVER
/// (PARTITION BY name)`) would read the rows once, but such a window
/// gathers its whole input into one batch, which the next sort then had
/// to take in one piece: with a 400 MB pool it was refused on 10M events
/// (the batch alone was past the sort's share). Aggregates, the join and
/// the sorts here see batches of the usual size and spill when memory is
/// short.
fn ranked(rows: impl Fn() -> Result<LogicalPlanBuilder>, limit: usize) -> Result<LogicalPlan> {
    use datafusion::logical_expr::GroupingSet;
    let limit = limit as i64;
    // One row per name and user (NULL: the sessions without a user), so
    // that a user's count is a row count within a name.
    let pairs = || -> Result<LogicalPlanBuilder> {
        Ok(rows()?.aggregate(
            vec![col("name"), col("user")],
            vec![agg::count(lit(1i64)).alias("s")],
        )?)
    };
    let position = win::row_number()
        .order_by(vec![
            col("u").sort(false, false),
            col("n").sort(false, false),
            col("name").sort(true, false),
        ])
        .build()?
        .alias("position");
    let names = pairs()?
        .aggregate(
            vec![col("name")],
            vec![
                agg::sum(col("s")).alias("n"),
                agg::count(col("user")).alias("u"),
            ],
        )?
        .window(vec![position])?
        .project(vec![col("name").alias("ranked"), col("position")])?
        .build()?;
    let head = col("position").lt_eq(lit(limit));
    // The empty grouping set counts every row's user once: the total.
    let sets = Expr::GroupingSet(GroupingSet::GroupingSets(vec![
        vec![col("rank"), col("shown")],
        vec![],
    ]));
    let whole = col("rank").is_null();
    let total = Expr::from(WindowFunction::new(
        datafusion::functions_aggregate::min_max::max_udaf(),
        vec![when(whole.clone(), col("users")).end()?],
    ))
    .alias("total_users");
    Ok(pairs()?
        .join(names, JoinType::Inner, (vec!["name"], vec!["ranked"]), None)?
        .project(vec![
            when(head.clone(), col("position"))
                .otherwise(lit(limit + 1))?
                .alias("rank"),
            when(head, col("name"))
                .otherwise(lit(OTHER))?
                .alias("shown"),
            col("name"),
            col("user"),
            col("s"),
        ])?
        .aggregate(
            vec![sets],
            vec![
                agg::count_distinct(col("user")).alias("users"),
                agg::sum(col("s")).alias("sessions"),
                agg::count_distinct(col("name")).alias("items"),
            ],
        )?
        // A dozen rows at most: one window over them all is cheap.
        .window(vec![total])?
        .filter(col("rank").is_not_null())?
        .project(vec![
            cast(col("rank"), DataType::Int64).alias("rank"),
            col("shown").alias("name"),
            cast(col("users"), DataType::Int64).alias("users"),
            cast(col("sessions"), DataType::Int64).alias("sessions"),
            percentage(col("users"), col("total_users")).alias("percentage"),
            when(col("rank").gt(lit(limit)), col("items"))
                .otherwise(lit(0i64))?
                .alias("folded"),
            cast(col("total_users"), DataType::Int64).alias("total_users"),
        ])?
        .sort(vec![col("rank").sort(true, false)])?
        .build()?)
}

/// One cohort's retention.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cohort {
    /// The cohort week's Monday, epoch milliseconds.
    pub week_ms: i64,
    pub users: i64,
    /// Weeks 0.. in order, up to the last observed one.
    pub weeks: Vec<RetentionCell>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RetentionCell {
    pub week: i64,
    pub users: i64,
    pub percentage: f64,
}

/// One row of a ranking.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Ranked {
    pub rank: i64,
    pub name: String,
    /// Distinct users, the numerator of `percentage`.
    pub users: i64,
    pub sessions: i64,
    pub percentage: f64,
    pub folded: i64,
}

/// A ranking and its denominator.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Distinct users of all sessions counted (not the sum of the rows':
    /// a user can be in several).
    pub users: i64,
    pub items: Vec<Ranked>,
}

/// What retention reads: the activity rollup plus the raw events it does
/// not cover when the range is on day bounds (one row per user and day
/// instead of every utterance), else the events; and whether it is the
/// rollup (whose plans run in this process, see [`Engine::execute_local`]).
async fn retention_source(
    engine: &Engine,
    skill: &str,
    range: Range,
) -> (Arc<dyn TableSource>, bool) {
    let on_days = |ms: i64| ms.rem_euclid(crate::storage::events::DAY_MS) == 0;
    if let Some(rollups) = engine.rollups()
        && on_days(range.start_ms)
        && on_days(range.end_ms)
    {
        match rollups.activity_source(engine, skill, range.end_ms).await {
            Ok(Some(source)) => return (source, true),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "activity rollup unavailable; retention reads events")
            }
        }
    }
    (engine.events_source(), false)
}

/// Retention cohorts of `skill` over `range`.
pub async fn retention(
    engine: &Engine,
    skill: &str,
    range: Range,
    stage: Stage,
) -> Result<Vec<Cohort>> {
    let (source, from_rollup) = retention_source(engine, skill, range).await;
    let plan = retention_plan(source, skill, range, stage)?;
    let batches = if from_rollup {
        engine.execute_local(plan).await?
    } else {
        engine.execute(plan).await?
    };
    let mut rows = Vec::new();
    for b in &batches {
        let week_ms = zeroed(columns::millis(b, "cohort_week"))?;
        let size = zeroed(columns::ints(b, "cohort_users"))?;
        let week = zeroed(columns::ints(b, "week"))?;
        let users = zeroed(columns::ints(b, "users"))?;
        let pct = zeroed(columns::floats(b, "percentage"))?;
        for i in 0..b.num_rows() {
            rows.push((week_ms[i], size[i], week[i], users[i], pct[i]));
        }
    }
    // The plan sorts; sorting again here costs nothing at this size and
    // keeps the grouping below right whatever the physical plan does.
    rows.sort_by_key(|r| (r.0, r.2));
    let mut out: Vec<Cohort> = Vec::new();
    for (week_ms, size, week, users, percentage) in rows {
        let cell = RetentionCell {
            week,
            users,
            percentage,
        };
        match out.last_mut() {
            Some(c) if c.week_ms == week_ms => c.weeks.push(cell),
            _ => out.push(Cohort {
                week_ms,
                users: size,
                weeks: vec![cell],
            }),
        }
    }
    Ok(out)
}

/// Next steps after the first `intent` of each session, ranked by users.
pub async fn next_after(
    engine: &Engine,
    skill: &str,
    range: Range,
    intent: &Intent,
    limit: usize,
) -> Result<Ranking> {
    let plan = next_plan(engine.events_source(), skill, range, intent, limit)?;
    read_ranked(&engine.execute(plan).await?)
}

/// The top first-five-step paths of sessions, ranked by users.
pub async fn top_paths(
    engine: &Engine,
    skill: &str,
    range: Range,
    limit: usize,
) -> Result<Ranking> {
    let plan = paths_plan(engine.events_source(), skill, range, limit)?;
    read_ranked(&engine.execute(plan).await?)
}

/// Both rankings of the paths route, and which path answered: the steps
/// rollup (one merged state per session) where it covers a day of the
/// range, else one execution of the steps window over the events (the
/// costly part), whose [`heads`] both rankings read from memory.
pub async fn next_and_paths(
    engine: &Engine,
    skill: &str,
    range: Range,
    intent: &Intent,
    limit: usize,
) -> Result<(Ranking, Ranking, engine::AnswerPath)> {
    if let Some((next, paths)) = from_sessions(engine, skill, range, intent, limit).await? {
        return Ok((next, paths, engine::AnswerPath::Rollup));
    }
    let plan = heads(steps(engine.events_source(), skill, range)?, Some(intent))?.build()?;
    let logical = std::sync::Arc::new(plan.schema().as_arrow().clone());
    let batches = engine.execute(plan).await?;
    // The executed schema may differ from the logical one in nullability.
    let schema = batches.first().map(|b| b.schema()).unwrap_or(logical);
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
    let source = datafusion::datasource::provider_as_source(Arc::new(table));
    let scan = || -> Result<LogicalPlanBuilder> {
        Ok(LogicalPlanBuilder::scan(
            "heads",
            Arc::clone(&source),
            None,
        )?)
    };
    let next = ranked(|| next_from(scan()?, intent), limit)?;
    let paths = ranked(|| paths_from(scan()?), limit)?;
    let (next, paths) = futures::try_join!(engine.execute(next), engine.execute(paths))?;
    Ok((
        read_ranked(&next)?,
        read_ranked(&paths)?,
        engine::AnswerPath::Raw,
    ))
}

/// [`next_and_paths`] from the steps rollup, `None` when no rollup
/// covers a day of the range. Each session's states are decoded once, here:
/// its steps in the range, ordered as [`steps`] orders them, give its path
/// (the first five, with the user of the first) and what followed its
/// first `intent` (with that step's user); the rankings are then counted
/// in memory ([`sessions::rank`]), as the raw path's plan counts them.
async fn from_sessions(
    engine: &Engine,
    skill: &str,
    range: Range,
    intent: &Intent,
    limit: usize,
) -> Result<Option<(Ranking, Ranking)>> {
    use datafusion::arrow::array::AsArray;
    let Some(rollups) = engine.rollups() else {
        return Ok(None);
    };
    let window = crate::definition::TimeRange {
        start_ms: range.start_ms,
        end_ms: range.end_ms,
    };
    let rows = match rollups.session_steps(engine, skill, window).await {
        Ok(Some(rows)) => rows,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "steps rollup unavailable; paths read events");
            return Ok(None);
        }
    };
    let mut batches = rows.parts;
    if let Some(tail) = rows.tail {
        batches.extend(engine.execute_local(tail).await?);
    }
    // Each session's rows are merged by `sessions::rank` rather than by a
    // group-by: most sessions have one row, taken as it is, and a
    // DataFusion aggregate over the binary states (partial and final, each
    // state copied in and out) was half the route's time on 10M events.
    let mut cast = Vec::new();
    for b in &batches {
        let text = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(DataFusionError::from)?;
        let states = datafusion::arrow::compute::cast(b.column(1), &DataType::Binary)
            .map_err(DataFusionError::from)?;
        cast.push((text, states));
    }
    let rows: Vec<sessions::Rows> = cast
        .iter()
        .map(|(ids, states)| sessions::Rows {
            ids: ids.as_string::<i32>(),
            states: states.as_binary::<i32>(),
        })
        .collect();
    let threads = engine.ctx.copied_config().target_partitions();
    Ok(Some(sessions::rank(&rows, range, intent, limit, threads)?))
}

fn read_ranked(batches: &[RecordBatch]) -> Result<Ranking> {
    let mut out = Vec::new();
    // Every row carries the total; no row, no user.
    let mut total = 0;
    for b in batches {
        let rank = zeroed(columns::ints(b, "rank"))?;
        let users = zeroed(columns::ints(b, "users"))?;
        let sessions = zeroed(columns::ints(b, "sessions"))?;
        let total_users = zeroed(columns::ints(b, "total_users"))?;
        let pct = zeroed(columns::floats(b, "percentage"))?;
        let folded = zeroed(columns::ints(b, "folded"))?;
        let name = zeroed(columns::strings(b, "name"))?;
        for i in 0..b.num_rows() {
            out.push(Ranked {
                rank: rank[i],
                name: name[i].clone(),
                users: users[i],
                sessions: sessions[i],
                percentage: pct[i],
                folded: folded[i],
            });
            total = total_users[i];
        }
    }
    // As in `retention`: the order is the plan's, checked here.
    out.sort_by_key(|r| r.rank);
    Ok(Ranking {
        users: total,
        items: out,
    })
}

/// A column as `i64`s (timestamps as epoch milliseconds); nulls read as 0.
/// A result column with nulls read as 0 (counts and percentages of
/// empty groups).
fn zeroed<T: Default>(values: engine::Result<Vec<Option<T>>>) -> Result<Vec<T>> {
    Ok(values?.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests;
