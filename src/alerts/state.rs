//! The state of a rule per group, and the one function that moves it.
//!
//! `ok -> pending -> firing -> ok`, plus `nodata` and `error`, with the
//! semantics of Prometheus and Grafana: the condition must hold for `for`
//! before a group fires (`0s` fires at once); a firing group whose
//! condition stops holding keeps firing for `keepFiringFor`, then
//! resolves; entering `firing` notifies `firing` and leaving it notifies
//! `resolved`. Times are the evaluation's, passed in, so the machine is
//! tested without a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::{ErrorState, NoDataState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    #[default]
    Ok,
    Pending,
    Firing,
    Nodata,
    Error,
}

impl AlertState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Nodata => "nodata",
            Self::Error => "error",
        }
    }

    /// How much a state asks for attention, to summarise a rule by its
    /// most urgent group.
    pub fn rank(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Nodata => 1,
            Self::Pending => 2,
            Self::Error => 3,
            Self::Firing => 4,
        }
    }
}

/// What one evaluation found for a group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The condition holds.
    Holds,
    /// The condition does not hold.
    Clear,
    /// No value for the group.
    NoData,
    /// The evaluation failed.
    Failed,
}

/// A group's state as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupState {
    pub dimensions: Option<serde_json::Map<String, serde_json::Value>>,
    pub state: AlertState,
    /// When the group entered its state.
    pub since_ms: i64,
    /// When the condition started to hold (pending and firing).
    pub active_ms: Option<i64>,
    /// When the group fired.
    pub fired_ms: Option<i64>,
    /// When a firing group's condition stopped holding (keep-firing).
    pub clear_since_ms: Option<i64>,
    pub value: Option<f64>,
    pub evaluated_ms: i64,
}

/// The rule's settings the machine needs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub for_ms: i64,
    pub keep_firing_ms: i64,
    pub no_data: NoDataState,
    pub error: ErrorState,
}

/// What a step notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Notice {
    Firing,
    Resolved,
}

/// Moves `prev` by one evaluation at `now`. Returns the new state and,
/// when the state changed, what it notifies (if anything).
pub fn step(
    prev: &GroupState,
    outcome: Outcome,
    value: Option<f64>,
    now: i64,
    t: Timing,
) -> (GroupState, Option<Option<Notice>>) {
    let outcome = match outcome {
        Outcome::NoData => match t.no_data {
            NoDataState::Ok => Outcome::Clear,
            NoDataState::Alerting => Outcome::Holds,
            NoDataState::Nodata => Outcome::NoData,
        },
        Outcome::Failed => match t.error {
            ErrorState::Ok => Outcome::Clear,
            ErrorState::Alerting => Outcome::Holds,
            ErrorState::Error => Outcome::Failed,
            ErrorState::Keep => {
                let mut kept = prev.clone();
                kept.evaluated_ms = now;
                return (kept, None);
            }
        },
        o => o,
    };
    let mut next = GroupState {
        dimensions: prev.dimensions.clone(),
        value,
        evaluated_ms: now,
        ..prev.clone()
    };
    match outcome {
        Outcome::Holds => {
            next.clear_since_ms = None;
            match prev.state {
                AlertState::Firing => {}
                AlertState::Pending => {
                    let since = prev.active_ms.unwrap_or(now);
                    if now - since >= t.for_ms {
                        next.state = AlertState::Firing;
                        next.fired_ms = Some(now);
                    }
                }
                _ => {
                    next.active_ms = Some(now);
                    next.fired_ms = None;
                    if t.for_ms == 0 {
                        next.state = AlertState::Firing;
                        next.fired_ms = Some(now);
                    } else {
                        next.state = AlertState::Pending;
                    }
                }
            }
        }
        Outcome::Clear => {
            if prev.state == AlertState::Firing && t.keep_firing_ms > 0 {
                let since = prev.clear_since_ms.unwrap_or(now);
                if now - since < t.keep_firing_ms {
                    next.clear_since_ms = Some(since);
                    return (next, None);
                }
            }
            next.state = AlertState::Ok;
            next.active_ms = None;
            next.clear_since_ms = None;
        }
        Outcome::NoData | Outcome::Failed => {
            next.state = if outcome == Outcome::NoData {
                AlertState::Nodata
            } else {
                AlertState::Error
            };
            next.active_ms = None;
            next.clear_since_ms = None;
        }
    }
    if next.state == prev.state {
        return (next, None);
    }
    next.since_ms = now;
    let notice = if next.state == AlertState::Firing {
        Some(Notice::Firing)
    } else if prev.state == AlertState::Firing {
        Some(Notice::Resolved)
    } else {
        None
    };
    (next, Some(notice))
}

/// The key of a group: its dimensions as canonical JSON, `""` for none.
pub fn group_key(dimensions: &Option<serde_json::Map<String, serde_json::Value>>) -> String {
    match dimensions {
        None => String::new(),
        Some(d) => {
            let sorted: BTreeMap<&String, &serde_json::Value> = d.iter().collect();
            serde_json::to_string(&sorted).expect("serialisable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        for_ms: 5_000,
        keep_firing_ms: 0,
        no_data: NoDataState::Nodata,
        error: ErrorState::Error,
    };

    fn run(t: Timing, steps: &[(Outcome, i64)]) -> Vec<(AlertState, Option<Option<Notice>>)> {
        let mut s = GroupState::default();
        steps
            .iter()
            .map(|(o, now)| {
                let (n, change) = step(&s, *o, Some(1.0), *now, t);
                s = n;
                (s.state, change)
            })
            .collect()
    }

    #[test]
    fn holds_for_then_fires_then_resolves() {
        use AlertState::*;
        use Outcome::*;
        let got = run(
            T,
            &[
                (Holds, 0),
                (Holds, 4_000),
                (Holds, 5_000),
                (Holds, 6_000),
                (Clear, 7_000),
            ],
        );
        assert_eq!(
            got,
            vec![
                (Pending, Some(None)),
                (Pending, None),
                (Firing, Some(Some(Notice::Firing))),
                (Firing, None),
                (Ok, Some(Some(Notice::Resolved))),
            ]
        );
    }

    #[test]
    fn pending_that_clears_never_notifies() {
        use Outcome::*;
        let got = run(
            T,
            &[(Holds, 0), (Clear, 1_000), (Holds, 2_000), (Holds, 6_000)],
        );
        assert_eq!(got[1], (AlertState::Ok, Some(None)));
        // The hold restarts at 2 s, so 6 s is not yet 5 s of holding.
        assert_eq!(got[3], (AlertState::Pending, None));
    }

    #[test]
    fn zero_for_fires_at_once_and_keep_firing_delays_resolution() {
        use Outcome::*;
        let t = Timing {
            for_ms: 0,
            keep_firing_ms: 3_000,
            ..T
        };
        let got = run(
            t,
            &[
                (Holds, 0),
                (Clear, 1_000),
                (Clear, 3_000),
                (Holds, 3_500),
                (Clear, 4_000),
                (Clear, 7_000),
            ],
        );
        assert_eq!(got[0], (AlertState::Firing, Some(Some(Notice::Firing))));
        assert_eq!(got[1].0, AlertState::Firing);
        assert_eq!(got[2].0, AlertState::Firing);
        assert_eq!(got[3], (AlertState::Firing, None));
        assert_eq!(got[4].0, AlertState::Firing);
        assert_eq!(got[5], (AlertState::Ok, Some(Some(Notice::Resolved))));
    }

    #[test]
    fn no_data_and_errors_follow_the_rule() {
        use Outcome::*;
        let got = run(T, &[(NoData, 0), (Failed, 1_000)]);
        assert_eq!(got[0].0, AlertState::Nodata);
        assert_eq!(got[1].0, AlertState::Error);
        let alerting = Timing {
            for_ms: 0,
            no_data: NoDataState::Alerting,
            error: ErrorState::Keep,
            ..T
        };
        let got = run(alerting, &[(NoData, 0), (Failed, 1_000), (Clear, 2_000)]);
        assert_eq!(got[0], (AlertState::Firing, Some(Some(Notice::Firing))));
        assert_eq!(got[1], (AlertState::Firing, None));
        assert_eq!(got[2], (AlertState::Ok, Some(Some(Notice::Resolved))));
        let firing_then_nodata = run(Timing { for_ms: 0, ..T }, &[(Holds, 0), (NoData, 1_000)]);
        assert_eq!(
            firing_then_nodata[1],
            (AlertState::Nodata, Some(Some(Notice::Resolved)))
        );
    }
}
