//! The evaluator inside `serve`: every rule once per evaluation interval,
//! across every server sharing the store.
//!
//! A cycle of one rule: take the rule's lease (a create-only put of its
//! state; a server that loses the race, or finds the lease held or the
//! rule evaluated less than an interval ago, skips it); evaluate; commit
//! the new group states together with the transitions they cause (the
//! outbox) in one put that only succeeds while the lease is still ours;
//! archive the transitions in the history; send the due deliveries; record
//! their results and release the lease in one last put. A server that dies
//! after the commit leaves the transitions in the outbox, and whoever next
//! takes the lease delivers them, with the same notification ids.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Config;
use super::evaluate::{apply, evaluate};
use super::notify::{self, Delivery, Transition};
use super::rule::{AlertRule, WorkspaceRules};
use super::state::Timing;
use super::store::{self, Index, Lease, RuleState};
use crate::api::AppState;
use crate::storage::catalog::UpdateError;

/// How often the evaluator looks for due rules.
const TICK: Duration = Duration::from_millis(100);
/// How often it re-reads the rules.
const RELOAD_MS: i64 = 1_000;
/// How long a lease lasts: longer than one cycle (an evaluation and a few
/// deliveries of at most [`notify::TIMEOUT`] each). A delivery starts only
/// if it ends before the lease does (see [`SEND_MARGIN_MS`]), so another
/// server taking over an expired lease never sends what this one is
/// sending.
pub const LEASE_MS: i64 = 30_000;
/// Time kept free at the end of a lease for recording what was sent.
const SEND_MARGIN_MS: i64 = 5_000;
/// Deliveries attempted per cycle; the rest wait for the next one.
const SENDS_PER_CYCLE: usize = 4;
/// Rules evaluated at once (deliveries do not count: a slow receiver
/// never holds up other rules' evaluations).
const CONCURRENT_RULES: usize = 4;

/// Why a cycle did not run.
#[derive(Debug)]
enum Skip {
    /// Another server holds the lease until then.
    Busy(i64),
    /// Nothing to do before then.
    NotDue(i64),
    /// The lease was lost (it expired and another server took it).
    Lost,
}

/// The wall clock, in epoch milliseconds: evaluation times, `for`,
/// leases and back-off are real time even when the data's "now" is pinned.
pub fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One server's evaluator.
#[derive(Debug)]
pub struct Evaluator {
    state: Arc<AppState>,
    config: Config,
    /// When each rule (by workspace, id and version) is next worth a look.
    due: Mutex<HashMap<(String, uuid::Uuid, String), i64>>,
    running: Mutex<HashSet<(String, uuid::Uuid)>>,
    permits: tokio::sync::Semaphore,
}

/// Starts the evaluator as a background task.
pub fn spawn(state: Arc<AppState>, config: Config) -> tokio::task::JoinHandle<()> {
    let evaluator = Arc::new(Evaluator {
        state,
        config,
        due: Mutex::default(),
        running: Mutex::default(),
        permits: tokio::sync::Semaphore::new(CONCURRENT_RULES),
    });
    tokio::spawn(async move { evaluator.run().await })
}

fn timing(rule: &AlertRule) -> Timing {
    Timing {
        for_ms: rule.for_ms(),
        keep_firing_ms: rule.keep_firing_ms(),
        no_data: rule.no_data_state,
        error: rule.error_state,
    }
}

/// The next time a rule's state asks for a cycle.
fn next_due(rule: &AlertRule, st: &RuleState) -> i64 {
    let eval = if rule.enabled {
        st.last_evaluated_ms.map_or(0, |t| t + rule.interval_ms())
    } else {
        i64::MAX
    };
    let delivery = st
        .outbox
        .iter()
        .map(|t| {
            if t.delivered() {
                0
            } else {
                t.deliveries
                    .iter()
                    .filter(|d| !d.done())
                    .map(|d| d.next_attempt_ms)
                    .min()
                    .unwrap_or(0)
            }
        })
        .min()
        .unwrap_or(i64::MAX);
    eval.min(delivery)
}

impl Evaluator {
    async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rules: Vec<(String, AlertRule)> = Vec::new();
        let mut loaded_ms: Option<i64> = None;
        loop {
            tick.tick().await;
            let now = wall_ms();
            if loaded_ms.is_none_or(|t| now - t >= RELOAD_MS) {
                match self.load_rules().await {
                    Ok(r) => {
                        rules = r;
                        loaded_ms = Some(now);
                        let live: HashSet<_> = rules
                            .iter()
                            .map(|(ws, r)| (ws.clone(), r.id, r.updated_at.clone()))
                            .collect();
                        self.due
                            .lock()
                            .expect("not poisoned")
                            .retain(|k, _| live.contains(k));
                    }
                    Err(e) => tracing::error!(error = %e, "loading alert rules failed"),
                }
            }
            for (ws, rule) in &rules {
                let key = (ws.clone(), rule.id, rule.updated_at.clone());
                let due = self
                    .due
                    .lock()
                    .expect("not poisoned")
                    .get(&key)
                    .copied()
                    .unwrap_or(0);
                if due > now {
                    continue;
                }
                if !self
                    .running
                    .lock()
                    .expect("not poisoned")
                    .insert((ws.clone(), rule.id))
                {
                    continue;
                }
                let (this, ws, rule) = (Arc::clone(&self), ws.clone(), rule.clone());
                tokio::spawn(async move {
                    let next = this.cycle(&ws, &rule).await;
                    this.due
                        .lock()
                        .expect("not poisoned")
                        .insert((ws.clone(), rule.id, rule.updated_at.clone()), next);
                    this.running
                        .lock()
                        .expect("not poisoned")
                        .remove(&(ws, rule.id));
                });
            }
        }
    }

    async fn load_rules(&self) -> Result<Vec<(String, AlertRule)>, crate::storage::Error> {
        let store = &self.state.engine.store;
        let (_, index) = store::index(store)
            .load::<Index>(store::index_key())
            .await?;
        let mut out = Vec::new();
        for ws in index.workspaces {
            let (_, doc) = store::rules(store).load::<WorkspaceRules>(&ws).await?;
            out.extend(doc.rules.into_iter().map(|r| (ws.clone(), r)));
        }
        Ok(out)
    }

    /// One cycle of one rule; returns when the rule is next worth a look.
    async fn cycle(&self, ws: &str, rule: &AlertRule) -> i64 {
        match self.try_cycle(ws, rule).await {
            Ok(next) => next,
            Err(UpdateError::Rejected(Skip::Busy(until))) => until,
            Err(UpdateError::Rejected(Skip::NotDue(next))) => next,
            Err(UpdateError::Rejected(Skip::Lost)) => {
                tracing::warn!(workspace = ws, rule_id = %rule.id, "alert lease lost during a cycle; its results were dropped");
                wall_ms() + TICK.as_millis() as i64
            }
            Err(UpdateError::Storage(e)) => {
                tracing::error!(workspace = ws, rule_id = %rule.id, error = %e, "alert cycle failed");
                wall_ms() + 1_000
            }
        }
    }

    async fn try_cycle(&self, ws: &str, rule: &AlertRule) -> Result<i64, UpdateError<Skip>> {
        let store = &self.state.engine.store;
        let states = store::states(store);
        let key = store::state_key(ws, rule.id);
        let node = self.config.node_id.clone();
        let token = uuid::Uuid::new_v4();
        let now = wall_ms();

        // 1. The lease.
        let evaluate_now = states
            .update(&key, |st: &mut RuleState| {
                if let Some(l) = &st.lease
                    && l.until_ms > now
                    && l.owner != node
                {
                    return Err(Skip::Busy(l.until_ms));
                }
                let next = next_due(rule, st);
                if next > now {
                    return Err(Skip::NotDue(next));
                }
                st.lease = Some(Lease {
                    owner: node.clone(),
                    token,
                    until_ms: now + LEASE_MS,
                });
                Ok(rule.enabled
                    && st
                        .last_evaluated_ms
                        .is_none_or(|t| t + rule.interval_ms() <= now))
            })
            .await?;

        // 2. Evaluate and commit.
        let ours = |st: &RuleState| st.lease.as_ref().is_some_and(|l| l.token == token);
        let mut snapshot = if evaluate_now {
            let started = std::time::Instant::now();
            let result = {
                let _permit = self.permits.acquire().await.expect("never closed");
                evaluate(&self.state, ws, rule, self.state.clock.now_ms()).await
            };
            tracing::debug!(workspace = ws, rule_id = %rule.id, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "alert rule evaluated");
            let silenced = rule.silenced_until_ms().is_some_and(|t| t > now);
            states
                .update(&key, |st: &mut RuleState| {
                    if !ours(st) {
                        return Err(Skip::Lost);
                    }
                    let (groups, changes) = apply(&st.groups, &result, now, timing(rule));
                    st.groups = groups;
                    st.last_evaluated_ms = Some(now);
                    st.last_error = result.as_ref().err().cloned();
                    for c in changes {
                        st.seq += 1;
                        let deliveries = match c.notice {
                            Some(_) if !silenced => rule
                                .channels
                                .iter()
                                .map(|ch| Delivery {
                                    url: ch.url.clone(),
                                    secret: ch.secret.clone(),
                                    attempts: 0,
                                    next_attempt_ms: now,
                                    delivered_ms: None,
                                    last_error: None,
                                    given_up: false,
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
                        st.outbox.push(Transition {
                            notification_id: uuid::Uuid::new_v4(),
                            seq: st.seq,
                            workspace_id: ws.to_string(),
                            rule_id: rule.id,
                            rule_name: rule.name.clone(),
                            rule_description: rule.description.clone(),
                            condition: rule.condition.clone(),
                            group: c.to.dimensions.clone(),
                            previous_state: c.from,
                            state: c.to.state,
                            notice: c.notice,
                            value: c.to.value,
                            threshold: c
                                .eval
                                .as_ref()
                                .and_then(|e| e.threshold(rule))
                                .or(rule.threshold()),
                            at_ms: now,
                            active_ms: c.to.active_ms,
                            fired_ms: c.to.fired_ms,
                            silenced: silenced && c.notice.is_some(),
                            deliveries,
                        });
                    }
                    if st.outbox.is_empty() {
                        st.lease = None;
                    }
                    Ok(st.clone())
                })
                .await?
        } else {
            states.load::<RuleState>(&key).await?.1
        };
        if snapshot.outbox.is_empty() {
            return Ok(next_due(rule, &snapshot));
        }

        // 3. Archive, deliver, record, release. Each receiver gets its
        // notifications in order: one still owed (waiting out a back-off)
        // holds back the later ones to the same URL, so a `resolved` never
        // overtakes its `firing`.
        let lease_ends = now + LEASE_MS;
        let send_by = lease_ends - notify::TIMEOUT.as_millis() as i64 - SEND_MARGIN_MS;
        let mut owed: HashSet<String> = HashSet::new();
        let mut sends = 0;
        for t in &mut snapshot.outbox {
            let (id, at_ms, body) = (t.notification_id, t.at_ms, t.payload());
            for d in &mut t.deliveries {
                if d.done() {
                    continue;
                }
                if owed.contains(&d.url)
                    || d.next_attempt_ms > now
                    || sends >= SENDS_PER_CYCLE
                    || wall_ms() > send_by
                {
                    owed.insert(d.url.clone());
                    continue;
                }
                sends += 1;
                d.attempts += 1;
                match notify::send(&self.config.allow, &d.url, &d.secret, id, &body).await {
                    Ok(()) => {
                        d.delivered_ms = Some(wall_ms());
                        d.last_error = None;
                    }
                    Err(e) => {
                        tracing::warn!(workspace = ws, rule_id = %rule.id, notification_id = %id, attempt = d.attempts, error = %e, "webhook delivery failed");
                        let at = wall_ms();
                        d.last_error = Some(e);
                        d.next_attempt_ms = at + notify::backoff_ms(d.attempts);
                        d.given_up = at - at_ms >= notify::GIVE_UP_AFTER_MS;
                        if !d.given_up {
                            owed.insert(d.url.clone());
                        }
                    }
                }
            }
            if let Err(e) = store::write_history(store, t).await {
                tracing::error!(error = %e, "writing alert history failed");
                return Err(UpdateError::Storage(e));
            }
        }
        let results: HashMap<uuid::Uuid, Vec<Delivery>> = snapshot
            .outbox
            .iter()
            .map(|t| (t.notification_id, t.deliveries.clone()))
            .collect();
        let after = states
            .update(&key, |st: &mut RuleState| {
                if !ours(st) {
                    return Err(Skip::Lost);
                }
                for t in &mut st.outbox {
                    if let Some(d) = results.get(&t.notification_id) {
                        t.deliveries = d.clone();
                    }
                }
                // Archived above; delivered (or given up) ones are done.
                st.outbox
                    .retain(|t| !(results.contains_key(&t.notification_id) && t.delivered()));
                st.lease = None;
                Ok(st.clone())
            })
            .await?;
        Ok(next_due(rule, &after))
    }
}
