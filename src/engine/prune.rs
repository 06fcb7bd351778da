//! Partition pruning of the `events` table: `date` predicates derived
//! from predicates on `time`, so a query over one day lists and opens only
//! that day's files.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, col, lit};

use crate::storage::events::{self, DATE_COLUMN};

/// Partition predicates on `date` implied by a predicate on `time`.
///
/// `date` holds the UTC day of `time` as `YYYY-MM-DD`, which orders like the
/// day itself, so `time >= t` implies `date >= day(t)` and `time < t`
/// implies `date <= day(t)`.
pub fn date_bounds_of(filter: &Expr) -> Vec<Expr> {
    let mut out = Vec::new();
    collect_date_bounds(filter, &mut out);
    out
}

fn collect_date_bounds(filter: &Expr, out: &mut Vec<Expr>) {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            collect_date_bounds(left, out);
            collect_date_bounds(right, out);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, op, value) = match (
                time_column(left),
                time_literal(right),
                time_column(right),
                time_literal(left),
            ) {
                (true, Some(v), _, _) => (true, *op, v),
                (_, _, true, Some(v)) => match op.swap() {
                    Some(op) => (true, op, v),
                    None => return,
                },
                _ => return,
            };
            if !column {
                return;
            }
            let (ms, exact) = value;
            let day = |ms: i64| lit(events::date_of_millis(ms));
            match op {
                // `time > t` is `time >= t + 1ms` when t is whole milliseconds.
                Operator::Gt if exact => {
                    out.push(col(DATE_COLUMN).gt_eq(day(ms.saturating_add(1))))
                }
                Operator::Gt | Operator::GtEq => out.push(col(DATE_COLUMN).gt_eq(day(ms))),
                // `time < midnight` must not reach into the day that starts there.
                Operator::Lt if exact => {
                    out.push(col(DATE_COLUMN).lt_eq(day(ms.saturating_sub(1))))
                }
                Operator::Lt | Operator::LtEq => out.push(col(DATE_COLUMN).lt_eq(day(ms))),
                Operator::Eq => out.push(col(DATE_COLUMN).eq(day(ms))),
                _ => {}
            }
        }
        Expr::Between(b) if !b.negated && time_column(&b.expr) => {
            if let (Some(lo), Some(hi)) = (time_literal(&b.low), time_literal(&b.high)) {
                out.push(col(DATE_COLUMN).gt_eq(lit(events::date_of_millis(lo.0))));
                out.push(col(DATE_COLUMN).lt_eq(lit(events::date_of_millis(hi.0))));
            }
        }
        _ => {}
    }
}

fn time_column(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == "time",
        Expr::Cast(c) => time_column(&c.expr),
        _ => false,
    }
}

/// The epoch milliseconds of a timestamp literal (any unit), rounded down,
/// and whether that was exact (no sub-millisecond part).
fn time_literal(e: &Expr) -> Option<(i64, bool)> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampMillisecond(Some(v), _) => Some((*v, true)),
            ScalarValue::TimestampSecond(Some(v), _) => Some((v.saturating_mul(1000), true)),
            ScalarValue::TimestampMicrosecond(Some(v), _) => {
                Some((v.div_euclid(1000), v % 1000 == 0))
            }
            ScalarValue::TimestampNanosecond(Some(v), _) => {
                Some((v.div_euclid(1_000_000), v % 1_000_000 == 0))
            }
            _ => None,
        },
        Expr::Cast(c) => time_literal(&c.expr),
        _ => None,
    }
}
