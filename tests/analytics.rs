//! Retention cohorts and interaction paths against hand-computed answers
//! (`fixtures/expected/analytics.json` over `fixtures/events/analytics.jsonl`)
//! and against a brute-force loop over the same rows (read straight from
//! the files, not through the engine), on the fixture and on generated
//! demo data.
//!
//! The fixture, in short. Skill `skill-r`, range 2026-01-05 (a Monday) to
//! 2026-02-04: `old` spoke before the range (no cohort); `a` is new in
//! week 01-05 and back in weeks 1 and 3 (not 2); `b` new that week, back in
//! weeks 2 and 4; `c` spoke once, in the last millisecond of that week;
//! `d` new at 01-12 00:00 exactly; `e` new at 01-19, back two weeks later;
//! `i` new in the range's last, partly observed week; `h` spoke exactly at
//! the end (outside); `f` only started a session. Skill `skill-p`, one day:
//! twelve sessions of six users, ties in both rankings, sessions of one
//! utterance, one unclassified utterance, two utterances at the same
//! instant, a session that began before the range, and six steps in one
//! session. Path percentages are of users (document 001): `ua` went from
//! LaunchRequest to GetScoreIntent in three sessions (one user, ranked
//! below two users' two sessions), `ub` both to AMAZON.HelpIntent and to
//! the session's end (counted in both rows).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use metricstore::analytics::{self, Intent, Range, Ranking};
use metricstore::storage::events::EventRow;
use serde_json::Value;

fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp_millis()
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.0051
}

// ---- the brute-force oracle ----

const WEEK: i64 = 7 * 86_400_000;
/// 2000-01-03T00:00:00Z, a Monday.
const MONDAY: i64 = 946_857_600_000;

fn week_of(t: i64) -> i64 {
    MONDAY + (t - MONDAY).div_euclid(WEEK) * WEEK
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `(cohort week, cohort size, [(week, users, percentage)])`.
type OracleCohort = (i64, i64, Vec<(i64, i64, f64)>);

fn oracle_retention(rows: &[EventRow], skill: &str, start: i64, end: i64) -> Vec<OracleCohort> {
    let utterances = rows
        .iter()
        .filter(|r| r.workspace_id == skill && r.event_type == "utterance" && r.user_id.is_some())
        // Retention counts live users: everything not in development.
        .filter(|r| r.stage.as_deref() != Some("development"));
    let mut first: HashMap<&str, i64> = HashMap::new();
    let mut active: BTreeSet<(&str, i64)> = BTreeSet::new();
    for r in utterances {
        let user = r.user_id.as_deref().unwrap();
        if r.time < end {
            let f = first.entry(user).or_insert(r.time);
            *f = (*f).min(r.time);
        }
        if start <= r.time && r.time < end {
            active.insert((user, week_of(r.time)));
        }
    }
    let mut cohorts: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for (user, t) in first {
        if t >= start {
            cohorts.entry(week_of(t)).or_default().push(user);
        }
    }
    cohorts
        .into_iter()
        .map(|(week, users)| {
            let size = users.len() as i64;
            let cells = (0..=12)
                .map(|k| (k, week + k * WEEK))
                .take_while(|(_, w)| *w < end)
                .map(|(k, w)| {
                    let n = users.iter().filter(|u| active.contains(&(**u, w))).count() as i64;
                    (k, n, round2(n as f64 * 100.0 / size as f64))
                })
                .collect();
            (week, size, cells)
        })
        .collect()
}

/// A session's steps in the range, in order, each with its user.
type Steps = Vec<(String, Option<String>)>;

/// A step before ordering: its time, name and user.
type TimedStep = (i64, String, Option<String>);

/// Each session's steps in the range, in order.
fn oracle_sessions(rows: &[EventRow], skill: &str, start: i64, end: i64) -> Vec<Steps> {
    let mut sessions: BTreeMap<&str, Vec<TimedStep>> = BTreeMap::new();
    for r in rows {
        if r.workspace_id == skill
            && r.event_type == "utterance"
            && start <= r.time
            && r.time < end
            && let Some(s) = r.session_id.as_deref()
        {
            let step = r.intent.clone().unwrap_or_else(|| "(unclassified)".into());
            sessions
                .entry(s)
                .or_default()
                .push((r.time, step, r.user_id.clone()));
        }
    }
    sessions
        .into_values()
        .map(|mut steps| {
            steps.sort();
            steps.into_iter().map(|(_, s, u)| (s, u)).collect()
        })
        .collect()
}

/// `(name, users, sessions, percentage, folded)`.
type Row = (String, i64, i64, f64, i64);

/// Ranks one `(name, user)` per session counted as the API does: by
/// distinct users, then sessions, then name; percentages of all distinct
/// users (sessions without a user are no user). Also gives that total.
fn oracle_rank(counted: &[(String, Option<String>)], limit: usize) -> (i64, Vec<Row>) {
    let everyone: BTreeSet<&str> = counted.iter().filter_map(|c| c.1.as_deref()).collect();
    let total = everyone.len() as i64;
    let mut by_name: BTreeMap<&str, (BTreeSet<&str>, i64)> = BTreeMap::new();
    for (name, user) in counted {
        let e = by_name.entry(name).or_default();
        e.1 += 1;
        if let Some(u) = user {
            e.0.insert(u);
        }
    }
    let mut all: Vec<(&str, BTreeSet<&str>, i64)> =
        by_name.into_iter().map(|(n, (u, s))| (n, u, s)).collect();
    all.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(b.0))
    });
    let pct = |n: usize| round2(n as f64 * 100.0 / total as f64);
    let mut out: Vec<Row> = all
        .iter()
        .take(limit)
        .map(|(name, users, n)| {
            (
                name.to_string(),
                users.len() as i64,
                *n,
                pct(users.len()),
                0,
            )
        })
        .collect();
    if all.len() > limit {
        let tail = &all[limit..];
        let users: BTreeSet<&str> = tail.iter().flat_map(|t| t.1.iter().copied()).collect();
        let n: i64 = tail.iter().map(|t| t.2).sum();
        out.push((
            "(other)".into(),
            users.len() as i64,
            n,
            pct(users.len()),
            tail.len() as i64,
        ));
    }
    (total, out)
}

fn oracle_next(sessions: &[Steps], intent: &str, limit: usize) -> (i64, Vec<Row>) {
    let mut counted = Vec::new();
    for s in sessions {
        if let Some(i) = s.iter().position(|x| x.0 == intent) {
            let next = s
                .get(i + 1)
                .map(|x| x.0.clone())
                .unwrap_or_else(|| "(session ended)".into());
            counted.push((next, s[i].1.clone()));
        }
    }
    oracle_rank(&counted, limit)
}

fn oracle_paths(sessions: &[Steps], limit: usize) -> (i64, Vec<Row>) {
    let counted: Vec<(String, Option<String>)> = sessions
        .iter()
        .map(|s| {
            let path: Vec<&str> = s.iter().take(5).map(|x| x.0.as_str()).collect();
            (path.join(" > "), s[0].1.clone())
        })
        .collect();
    oracle_rank(&counted, limit)
}

// ---- comparisons ----

fn check_ranked(what: &str, got: &Ranking, want: &(i64, Vec<Row>)) {
    let got_view: Vec<_> = got
        .items
        .iter()
        .map(|r| (r.name.clone(), r.users, r.sessions, r.percentage, r.folded))
        .collect();
    let (users, want) = want;
    assert_eq!(got.users, *users, "{what}: users counted");
    assert_eq!(
        got.items.len(),
        want.len(),
        "{what}: got {got_view:?}, want {want:?}"
    );
    for (i, (g, w)) in got.items.iter().zip(want).enumerate() {
        assert_eq!(g.rank, i as i64 + 1, "{what}: rank of row {i}");
        assert!(
            g.name == w.0
                && g.users == w.1
                && g.sessions == w.2
                && g.folded == w.4
                && near(g.percentage, w.3),
            "{what}: row {i}: got {g:?}, want {w:?}\nall: {got_view:?}"
        );
    }
}

async fn check_against_oracle(
    engine: &metricstore::engine::Engine,
    rows: &[EventRow],
    skill: &str,
    start: i64,
    end: i64,
) {
    let range = Range::new(start, end).unwrap();
    let got = analytics::retention(engine, skill, range, analytics::Stage::Live)
        .await
        .unwrap();
    let want = oracle_retention(rows, skill, start, end);
    let got_view: Vec<OracleCohort> = got
        .iter()
        .map(|c| {
            (
                c.week_ms,
                c.users,
                c.weeks
                    .iter()
                    .map(|w| (w.week, w.users, w.percentage))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(got_view.len(), want.len(), "{skill} cohorts");
    for (g, w) in got_view.iter().zip(&want) {
        assert_eq!(
            (g.0, g.1, g.2.len()),
            (w.0, w.1, w.2.len()),
            "{skill} cohort {g:?} vs {w:?}"
        );
        for (gc, wc) in g.2.iter().zip(&w.2) {
            assert!(
                gc.0 == wc.0 && gc.1 == wc.1 && near(gc.2, wc.2),
                "{skill} cohort {}: {gc:?} vs {wc:?}",
                g.0
            );
        }
    }

    let sessions = oracle_sessions(rows, skill, start, end);
    for intent in ["LaunchRequest", "AMAZON.HelpIntent", "GetScoreIntent"] {
        for limit in [1, 3, 10, 100] {
            let got =
                analytics::next_after(engine, skill, range, &Intent::parse(intent).unwrap(), limit)
                    .await
                    .unwrap();
            check_ranked(
                &format!("{skill} next after {intent} (limit {limit})"),
                &got,
                &oracle_next(&sessions, intent, limit),
            );
        }
    }
    for limit in [1, 5, 100] {
        let got = analytics::top_paths(engine, skill, range, limit)
            .await
            .unwrap();
        check_ranked(
            &format!("{skill} paths (limit {limit})"),
            &got,
            &oracle_paths(&sessions, limit),
        );
    }
}

// ---- tests ----

#[tokio::test]
async fn retention_matches_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), "fixtures/events/analytics.jsonl").await;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/expected/analytics.json").unwrap())
            .unwrap();
    let e = &expected["retention"];
    let range = Range::new(
        ms(e["start"].as_str().unwrap()),
        ms(e["end"].as_str().unwrap()),
    )
    .unwrap();
    let got = analytics::retention(
        &engine,
        e["skill"].as_str().unwrap(),
        range,
        analytics::Stage::Live,
    )
    .await
    .unwrap();
    let want = e["cohorts"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.week_ms, ms(w["cohortWeek"].as_str().unwrap()));
        assert_eq!(g.users, w["users"].as_i64().unwrap());
        let users: Vec<i64> = g.weeks.iter().map(|c| c.users).collect();
        let want_users: Vec<i64> = w["users_by_week"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(users, want_users, "cohort {}", w["cohortWeek"]);
        let weeks: Vec<i64> = g.weeks.iter().map(|c| c.week).collect();
        assert_eq!(weeks, (0..want_users.len() as i64).collect::<Vec<_>>());
        for (c, p) in g
            .weeks
            .iter()
            .zip(w["percentage_by_week"].as_array().unwrap())
        {
            assert!(near(c.percentage, p.as_f64().unwrap()), "{c:?} vs {p}");
        }
    }
}

#[tokio::test]
async fn paths_match_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), "fixtures/events/analytics.jsonl").await;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string("fixtures/expected/analytics.json").unwrap())
            .unwrap();
    let e = &expected["paths"];
    let skill = e["skill"].as_str().unwrap();
    let range = Range::new(
        ms(e["start"].as_str().unwrap()),
        ms(e["end"].as_str().unwrap()),
    )
    .unwrap();
    let intent = Intent::parse(e["intent"].as_str().unwrap()).unwrap();
    // `[name, users, sessions, percentage, folded]`, folded 0 if left out.
    let rows = |users: &str, key: &str| -> (i64, Vec<Row>) {
        let rows = e[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_i64().unwrap(),
                    r[2].as_i64().unwrap(),
                    r[3].as_f64().unwrap(),
                    r.get(4).and_then(Value::as_i64).unwrap_or(0),
                )
            })
            .collect();
        (e[users].as_i64().unwrap(), rows)
    };
    let got = analytics::next_after(&engine, skill, range, &intent, 10)
        .await
        .unwrap();
    check_ranked("next, limit 10", &got, &rows("next_users", "next_all"));
    let got = analytics::next_after(&engine, skill, range, &intent, 2)
        .await
        .unwrap();
    check_ranked("next, limit 2", &got, &rows("next_users", "next_limit_2"));
    let got = analytics::top_paths(&engine, skill, range, 3)
        .await
        .unwrap();
    check_ranked(
        "paths, limit 3",
        &got,
        &rows("paths_users", "paths_limit_3"),
    );
    // An intent no session has: nothing to rank, not an error.
    let none = Intent::parse("NoSuchIntent").unwrap();
    let nothing = analytics::next_after(&engine, skill, range, &none, 10)
        .await
        .unwrap();
    assert!(
        nothing.items.is_empty() && nothing.users == 0,
        "{nothing:?}"
    );
}

#[tokio::test]
async fn the_fixture_agrees_with_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::fixture_engine(dir.path(), "fixtures/events/analytics.jsonl").await;
    let rows = common::read_fixture("fixtures/events/analytics.jsonl");
    check_against_oracle(
        &engine,
        &rows,
        "skill-r",
        ms("2026-01-05T00:00:00Z"),
        ms("2026-02-04T00:00:00Z"),
    )
    .await;
    // A range that starts and ends mid-week.
    check_against_oracle(
        &engine,
        &rows,
        "skill-r",
        ms("2026-01-07T12:00:00Z"),
        ms("2026-01-28T06:00:00Z"),
    )
    .await;
    check_against_oracle(
        &engine,
        &rows,
        "skill-p",
        ms("2026-01-05T00:00:00Z"),
        ms("2026-01-06T00:00:00Z"),
    )
    .await;
    check_against_oracle(
        &engine,
        &rows,
        "skill-p",
        ms("2026-01-04T00:00:00Z"),
        ms("2026-01-07T00:00:00Z"),
    )
    .await;
}

#[tokio::test]
async fn generated_data_agrees_with_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    // 100 days ending 2026-01-10: users join and leave over about 15 weeks.
    let engine = common::demo_engine(dir.path(), 120_000, 100).await;
    let rows = common::read_events(dir.path());
    // The data is rich enough for the comparison to mean something: many
    // cohorts, twelve weeks after the first, people coming back, long
    // rankings with a tail.
    let (start, end) = (ms("2025-10-06T00:00:00Z"), ms("2026-01-11T00:00:00Z"));
    let cohorts = oracle_retention(&rows, "amzn1.ask.skill.demo-trivia", start, end);
    assert!(cohorts.len() >= 12, "{} cohorts", cohorts.len());
    assert_eq!(cohorts[0].2.len(), 13);
    assert!(
        cohorts
            .iter()
            .any(|c| c.2.iter().any(|w| w.0 > 0 && w.1 > 0))
    );
    let sessions = oracle_sessions(&rows, "amzn1.ask.skill.demo-trivia", start, end);
    assert!(
        oracle_paths(&sessions, 5)
            .1
            .last()
            .is_some_and(|r| r.4 > 100)
    );
    // Users and sessions rank differently: some user took a path in
    // several sessions.
    let (_, all) = oracle_paths(&sessions, usize::MAX);
    assert!(all.iter().any(|r| r.2 > r.1), "no user repeats a path");
    for skill in ["amzn1.ask.skill.demo-trivia", "amzn1.ask.skill.demo-home"] {
        check_against_oracle(
            &engine,
            &rows,
            skill,
            ms("2025-10-06T00:00:00Z"),
            ms("2026-01-11T00:00:00Z"),
        )
        .await;
        check_against_oracle(
            &engine,
            &rows,
            skill,
            ms("2025-11-19T13:00:00Z"),
            ms("2025-12-24T00:00:00Z"),
        )
        .await;
    }
}

#[tokio::test]
async fn the_repl_runs_the_table_functions() {
    let dir = tempfile::tempdir().unwrap();
    drop(common::fixture_engine(dir.path(), "fixtures/events/analytics.jsonl").await);
    let run = |sql: &str| {
        common::bin()
            .args([
                "sql",
                "--data",
                dir.path().to_str().unwrap(),
                "--format",
                "csv",
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    };
    let out = run(
        "SELECT name, users, sessions, folded FROM next_intents('skill-p', '2026-01-05T00:00:00Z', '2026-01-06T00:00:00Z', 'LaunchRequest', 2) ORDER BY rank",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines,
        [
            "name,users,sessions,folded",
            "AMAZON.HelpIntent,2,3,0",
            "(session ended),2,2,0",
            "(other),3,5,3"
        ]
    );
    let out = run(
        "SELECT count(*) FROM retention('skill-r', '2026-01-05T00:00:00Z', '2026-02-04T00:00:00Z')",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("13"));
    let out = run("\\df");
    let text = String::from_utf8(out.stdout).unwrap();
    for f in ["retention,table", "next_intents,table", "top_paths,table"] {
        assert!(text.contains(f), "{f} missing: {text}");
    }
    // A bad call exits non-zero and says how to call it.
    let out = run("SELECT * FROM top_paths('skill-p')");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("top_paths(skill, start, end [, limit])")
    );
}

/// Paths from raw events answer within a small memory pool: every sort
/// of the plan sees batches of the usual size and spills. (Rankings by
/// `OVER (PARTITION BY name)` windows gathered all (path, user) pairs into
/// one batch, which the next sort could not take in a pool whose share per
/// operator was smaller than that batch: refused as busy, here and on 10M
/// events with a 400 MB pool; here, a 1,356 KB batch against a 1,111 KB
/// share of a 12 MB pool.) Small batches and merge reservations keep the
/// plan's fixed needs below the pool, so that only such a batch could
/// exceed it. The pool is 13 MB: in 12 MB the new plan's own sorts were
/// refused now and then (by 8 KB), as its operators' peaks met, while the
/// old batch is still past a 13 MB pool's share (1,111 KB scaled by
/// 13/12 is 1,204 KB).
#[tokio::test]
async fn raw_paths_answer_within_a_small_memory_pool() {
    use metricstore::engine::{Engine, QueryLimits, session_config};
    let dir = tempfile::tempdir().unwrap();
    drop(common::demo_engine(dir.path(), 200_000, 3).await);
    let rows = common::read_events(dir.path());
    let mut config = session_config()
        .with_target_partitions(2)
        .with_batch_size(1024);
    config.options_mut().execution.sort_spill_reservation_bytes = 64 << 10;
    let store = metricstore::storage::Store::open(dir.path().to_str().unwrap()).unwrap();
    let engine = Engine::with_limits(
        store,
        config,
        QueryLimits {
            memory_bytes: 13 << 20,
            ..QueryLimits::default()
        },
    )
    .await
    .unwrap();
    let skill = "amzn1.ask.skill.demo-trivia";
    let (start, end) = (ms("2026-01-08T00:00:00Z"), ms("2026-01-11T00:00:00Z"));
    let range = Range::new(start, end).unwrap();
    let sessions = oracle_sessions(&rows, skill, start, end);
    let want = oracle_paths(&sessions, 10);
    // Enough distinct (path, user) pairs that one batch of them all is
    // past an operator's share of the pool.
    assert!(
        want.1.last().is_some_and(|r| r.4 > 1_000),
        "{:?}",
        want.1.last()
    );
    let got = analytics::top_paths(&engine, skill, range, 10)
        .await
        .unwrap();
    check_ranked("paths in a small pool", &got, &want);
    let intent = Intent::parse("LaunchRequest").unwrap();
    let (next, paths, _) = analytics::next_and_paths(&engine, skill, range, &intent, 10)
        .await
        .unwrap();
    check_ranked("route paths in a small pool", &paths, &want);
    check_ranked(
        "route next in a small pool",
        &next,
        &oracle_next(&sessions, "LaunchRequest", 10),
    );
}
