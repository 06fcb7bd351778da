//! `metricstore generate`: seeded, realistic demo events in the layout of
//! `EVENTS.md`, one zstd Parquet file per UTC day (row groups per
//! workspace, sorted by time).
//!
//! Each day is generated independently from `(seed, day)`, so days run in
//! parallel and the same seed always gives the same rows. Users are drawn
//! from a Zipf distribution per workspace and each has a join and a leave
//! day, so cohorts and retention look like a real product's.
//!
//! Longer than most files on purpose: the weights, distributions and
//! event shapes of every namespace are tuned together (their shares are
//! checked by the tests), and reading them side by side is how they stay
//! consistent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMillisecondArray,
};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Zipf};

use crate::storage::{self, Store, events};

/// The demo Alexa-style skills (their ids are the `workspace_id`s).
pub const SKILLS: [&str; 4] = [
    "amzn1.ask.skill.demo-trivia",
    "amzn1.ask.skill.demo-weather",
    "amzn1.ask.skill.demo-recipes",
    "amzn1.ask.skill.demo-home",
];
/// The demo workspaces of interaction events and call summaries.
pub const WORKSPACES: [&str; 2] = ["ws-demo", "ws-acme"];

/// Intents of the demo skills; the first is how most sessions open.
pub const INTENTS: [&str; 20] = [
    "LaunchRequest",
    "AMAZON.HelpIntent",
    "AMAZON.StopIntent",
    "AMAZON.CancelIntent",
    "AMAZON.FallbackIntent",
    "AMAZON.YesIntent",
    "AMAZON.NoIntent",
    "AMAZON.RepeatIntent",
    "GetWeatherIntent",
    "PlayTriviaIntent",
    "AnswerIntent",
    "GetScoreIntent",
    "RecipeSearchIntent",
    "NextStepIntent",
    "SetTimerIntent",
    "PlayMusicIntent",
    "TurnOnIntent",
    "TurnOffIntent",
    "OrderStatusIntent",
    "SmallTalkIntent",
];
const LOCALES: [&str; 6] = ["en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "es-ES"];
const LOCALE_WEIGHTS: [u32; 6] = [50, 15, 12, 8, 7, 8];

/// The marketplace of a locale (`Alexa.Marketplace`): the Americas buy on
/// the US store, everyone else on the European one.
fn marketplace(locale: &str) -> &'static str {
    match locale.rsplit('-').next() {
        Some("US" | "CA" | "MX" | "BR") => "USAmazon",
        _ => "EUAmazon",
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub rows: u64,
    pub days: u32,
    pub seed: u64,
    /// The last day generated (inclusive).
    pub end: NaiveDate,
}

#[derive(Debug)]
pub struct Report {
    pub rows: u64,
    pub files: usize,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--days must be at least 1")]
    NoDays,
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error("generator task failed: {0}")]
    Task(String),
}

/// Generates `opts.rows` events over `opts.days` days ending on `opts.end`.
pub async fn generate(store: &Store, opts: &Options) -> Result<Report, Error> {
    if opts.days == 0 {
        return Err(Error::NoDays);
    }
    let started = Instant::now();
    let first = opts.end - chrono::Days::new(u64::from(opts.days) - 1);
    let per_day = opts.rows / u64::from(opts.days);
    let extra = opts.rows % u64::from(opts.days);
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let jobs = (0..opts.days).map(|d| {
        let rows = per_day + u64::from(u64::from(d) < extra);
        let date = first + chrono::Days::new(u64::from(d));
        let seed = opts.seed;
        let first_day = first;
        let store = store.clone();
        async move {
            if rows == 0 {
                return Ok::<_, Error>(0usize);
            }
            let bytes = tokio::task::spawn_blocking(move || {
                let batch = DayGenerator::new(seed, date, first_day).run(rows as usize);
                events::encode_parquet(&[batch])
            })
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
            let path = store.path(&format!(
                "{}/{}={}/demo-{seed}.parquet",
                events::EVENTS_DIR,
                events::DATE_COLUMN,
                date.format("%Y-%m-%d")
            ));
            store
                .object_store
                .put(&path, bytes.into())
                .await
                .map_err(|source| storage::Error::Io {
                    action: "writing",
                    path: path.to_string(),
                    source,
                })?;
            Ok(1)
        }
    });
    let mut files = 0;
    let mut results = futures::stream::iter(jobs).buffer_unordered(parallel);
    while let Some(r) = results.next().await {
        files += r?;
    }
    Ok(Report {
        rows: opts.rows,
        files,
        elapsed: started.elapsed(),
    })
}

/// SplitMix64: a fixed, well-mixed hash for per-user traits, so a user's
/// locale and join day are the same on every day's generator.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T], weights: &[u32]) -> &'a T {
    let total: u32 = weights.iter().sum();
    let mut r = rng.random_range(0..total);
    for (item, w) in items.iter().zip(weights) {
        if r < *w {
            return item;
        }
        r -= w;
    }
    &items[items.len() - 1]
}

/// Column builders for one day's events.
struct Columns {
    time: Vec<i64>,
    workspace_id: StringBuilder,
    event_type: StringBuilder,
    user_id: StringBuilder,
    session_id: StringBuilder,
    stage: StringBuilder,
    locale: StringBuilder,
    channel: StringBuilder,
    direction: StringBuilder,
    intent: StringBuilder,
    outcome: StringBuilder,
    latency_ms: Float64Builder,
    resource_type: StringBuilder,
    resource_id: StringBuilder,
    action: StringBuilder,
    origin: StringBuilder,
    attributes: StringBuilder,
}

/// One event, borrowed, as the generator assembles it.
#[derive(Default, Clone, Copy)]
struct Event<'a> {
    time: i64,
    workspace_id: &'a str,
    event_type: &'a str,
    user_id: Option<&'a str>,
    session_id: Option<&'a str>,
    stage: Option<&'a str>,
    locale: Option<&'a str>,
    channel: Option<&'a str>,
    direction: Option<&'a str>,
    intent: Option<&'a str>,
    outcome: Option<&'a str>,
    latency_ms: Option<f64>,
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
    action: Option<&'a str>,
    origin: Option<&'a str>,
    attributes: Option<&'a str>,
}

impl Columns {
    fn new(capacity: usize) -> Self {
        let s = || StringBuilder::with_capacity(capacity, capacity * 8);
        Self {
            time: Vec::with_capacity(capacity),
            workspace_id: s(),
            event_type: s(),
            user_id: s(),
            session_id: s(),
            stage: s(),
            locale: s(),
            channel: s(),
            direction: s(),
            intent: s(),
            outcome: s(),
            latency_ms: Float64Builder::with_capacity(capacity),
            resource_type: s(),
            resource_id: s(),
            action: s(),
            origin: s(),
            attributes: s(),
        }
    }

    fn len(&self) -> usize {
        self.time.len()
    }

    fn push(&mut self, e: &Event) {
        self.time.push(e.time);
        self.workspace_id.append_value(e.workspace_id);
        self.event_type.append_value(e.event_type);
        self.user_id.append_option(e.user_id);
        self.session_id.append_option(e.session_id);
        self.stage.append_option(e.stage);
        self.locale.append_option(e.locale);
        self.channel.append_option(e.channel);
        self.direction.append_option(e.direction);
        self.intent.append_option(e.intent);
        self.outcome.append_option(e.outcome);
        self.latency_ms.append_option(e.latency_ms);
        self.resource_type.append_option(e.resource_type);
        self.resource_id.append_option(e.resource_id);
        self.action.append_option(e.action);
        self.origin.append_option(e.origin);
        self.attributes.append_option(e.attributes);
    }

    fn finish(mut self, rows: usize) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMillisecondArray::from(std::mem::take(&mut self.time))
                    .with_timezone("UTC"),
            ),
            Arc::new(self.workspace_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.locale.finish()),
            Arc::new(self.channel.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.intent.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.resource_type.finish()),
            Arc::new(self.resource_id.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.origin.finish()),
            Arc::new(self.attributes.finish()),
        ];
        RecordBatch::try_new(events::schema(), columns)
            .expect("generator columns match the events schema")
            .slice(0, rows)
    }
}

struct DayGenerator {
    rng: StdRng,
    day: i64,
    day_start: i64,
    first_day: i64,
    counter: u64,
    user_zipf: Zipf<f64>,
    gap: Exp<f64>,
}

const DAY_MS: i64 = 86_400_000;
const USERS_PER_WORKSPACE: u64 = 20_000;

impl DayGenerator {
    fn new(seed: u64, date: NaiveDate, first: NaiveDate) -> Self {
        let day = date
            .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
            .num_days();
        let first_day = first
            .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
            .num_days();
        Self {
            rng: StdRng::seed_from_u64(mix(seed ^ mix(day as u64))),
            day,
            day_start: day * DAY_MS,
            first_day,
            counter: 0,
            user_zipf: Zipf::new(USERS_PER_WORKSPACE as f64, 1.05).expect("valid zipf"),
            gap: Exp::new(1.0 / 9_000.0).expect("valid rate"),
        }
    }

    fn run(mut self, rows: usize) -> RecordBatch {
        let mut cols = Columns::new(rows + 64);
        while cols.len() < rows {
            // Weights per unit; a skill session is about seven rows (its
            // utterances with their quality and turn-error evaluations)
            // and a call about five (its summary and the events around
            // it), so rows split about 64% skill sessions, 10% other skill
            // events, 17% interactions and 9% calls.
            match self.rng.random_range(0..38) {
                0..10 => self.skill_session(&mut cols),
                10..16 => self.skill_side_event(&mut cols),
                16..36 => self.interaction(&mut cols),
                _ => self.call_summary(&mut cols),
            }
        }
        cols.finish(rows)
    }

    /// A time of day with a daytime peak, leaving `room` ms before midnight.
    fn time_of_day(&mut self, room: i64) -> i64 {
        loop {
            let t = self.rng.random_range(0..DAY_MS - room);
            let hour = t as f64 / 3_600_000.0;
            let weight = 0.25 + 0.75 * (std::f64::consts::PI * (hour - 4.0) / 24.0).sin().powi(2);
            if self.rng.random::<f64>() < weight {
                return self.day_start + t;
            }
        }
    }

    /// A Zipf-ranked user who has joined and not yet left by today.
    fn user(&mut self, workspace: usize) -> u64 {
        let mut rank = 1;
        for _ in 0..8 {
            rank = self.user_zipf.sample(&mut self.rng) as u64;
            let h = mix(rank ^ ((workspace as u64) << 40));
            // Heavy users are there from the start; the tail joins over time.
            let join = if rank <= 200 {
                self.first_day - 1
            } else {
                self.first_day + (h % 40) as i64 - 5
            };
            let stays = 7 + (mix(h) % 60) as i64;
            if join <= self.day
                && self.day < join + stays.max(if rank <= 2000 { 10_000 } else { 0 })
            {
                break;
            }
        }
        rank
    }

    fn next_id(&mut self) -> u64 {
        self.counter += 1;
        (self.day as u64) * 10_000_000 + self.counter
    }

    fn skill_session(&mut self, cols: &mut Columns) {
        let skill_i = *pick(&mut self.rng, &[0usize, 1, 2, 3], &[45, 25, 20, 10]);
        let skill = SKILLS[skill_i];
        let rank = self.user(skill_i);
        let user = format!("amzn1.ask.account.{skill_i}{rank:06}");
        let session = format!("amzn1.echo-api.session.{}", self.next_id());
        let h = mix(rank ^ 0xA11CE ^ (skill_i as u64));
        let locale = LOCALES[{
            let mut r = (h % 100) as u32;
            let mut i = 0;
            while r >= LOCALE_WEIGHTS[i] {
                r -= LOCALE_WEIGHTS[i];
                i += 1;
            }
            i
        }];
        let marketplace = marketplace(locale);
        let stage = if h.is_multiple_of(10) {
            "development"
        } else {
            "live"
        };
        let mut t = self.time_of_day(40 * 60_000);
        // How the session opened (Alexa.SkillInvocations).
        let invocation = *pick(
            &mut self.rng,
            &[
                "DIRECT_INVOCATIONS",
                "ONE_SHOT_INVOCATIONS",
                "NAME_FREE_INVOCATIONS",
                "ROUTINES_INVOCATIONS",
                "QUICK_LINKS_INVOCATIONS",
                "SKILL_CONNECTION_INVOCATIONS",
            ],
            &[52, 28, 10, 5, 3, 2],
        );
        let one_shot = invocation != "DIRECT_INVOCATIONS";
        // New: users of the tail within their first days.
        let user_type = if rank > 200 && mix(h ^ self.day as u64).is_multiple_of(6) {
            "NEW"
        } else {
            "RETURNING"
        };
        let frequent = self.rng.random_range(0..100) < 60;
        let base = Event {
            workspace_id: skill,
            user_id: Some(&user),
            session_id: Some(&session),
            stage: Some(stage),
            locale: Some(locale),
            channel: Some("voice"),
            direction: Some("inbound"),
            ..Default::default()
        };
        let start_attrs = format!(
            r#"{{"invocation_type":"{invocation}","Alexa.SkillInvocations.TrafficType":"{user_type}","frequent_utterance":{frequent},"Alexa.Marketplace":"{marketplace}"}}"#
        );
        cols.push(&Event {
            time: t,
            event_type: "session.started",
            attributes: Some(&start_attrs),
            ..base
        });
        let utterances = 1 + (self.rng.random::<f64>().ln() / 0.72f64.ln()) as usize % 12;
        let mut intent = if one_shot {
            8 + skill_i * 2 + self.rng.random_range(0..4)
        } else {
            0
        };
        let mut last = intent;
        let mut failed_any = false;
        // The estimated-turn-error model covers high-traffic locales only.
        let ete_locale = matches!(locale, "en-US" | "en-GB" | "de-DE");
        for n in 0..utterances {
            t += 400 + self.gap.sample(&mut self.rng) as i64;
            let failure_pct = match INTENTS[intent] {
                "AMAZON.FallbackIntent" => 45,
                "SmallTalkIntent" => 18,
                _ => 4,
            };
            let failed = self.rng.random_range(0..100) < failure_pct;
            failed_any |= failed;
            let classified = !(failed && self.rng.random_range(0..2) == 0);
            let base_ms = 120.0 + 25.0 * intent as f64;
            let latency = LogNormal::new(base_ms.ln(), 0.55)
                .expect("valid")
                .sample(&mut self.rng);
            let slu = ["HIGH", "HIGH", "HIGH", "MEDIUM", "LOW"][self.rng.random_range(0..5)];
            let turn_error = failed || (slu == "LOW" && self.rng.random_range(0..3) == 0);
            let endpoint = if latency > 2500.0 {
                "timeout"
            } else if failed && self.rng.random_range(0..4) == 0 {
                "error"
            } else {
                "ok"
            };
            let attrs = format!(
                r#"{{"Alexa.SluConfidence":"{slu}","turn_error":{turn_error},"endpoint_status":"{endpoint}","turn":{n},"Alexa.Marketplace":"{marketplace}"}}"#
            );
            let turn = Event {
                time: t,
                intent: classified.then_some(INTENTS[intent]),
                ..base
            };
            cols.push(&Event {
                event_type: "utterance",
                outcome: Some(if failed { "failed" } else { "success" }),
                latency_ms: Some((latency * 10.0).round() / 10.0),
                attributes: Some(&attrs),
                ..turn
            });
            let frequent_turn = self.rng.random_range(0..100) < 55;
            if ete_locale && self.rng.random_range(0..100) < 40 {
                let p_fail: f64 = if turn_error {
                    0.45 + 0.5 * self.rng.random::<f64>()
                } else {
                    0.3 * self.rng.random::<f64>().powi(2)
                };
                let baseline = 0.08 + 0.04 * self.rng.random::<f64>();
                let outcome = match self.rng.random_range(0..100) {
                    0..12 => String::new(),
                    _ if p_fail >= 0.5 => {
                        r#","Alexa.EstimatedTurnError.PredictionOutcome":"FAILURE""#.to_string()
                    }
                    _ => r#","Alexa.EstimatedTurnError.PredictionOutcome":"SUCCESS""#.to_string(),
                };
                let ete = format!(
                    r#"{{"Alexa.EstimatedTurnError.InvocationType":"{invocation}","Alexa.EstimatedTurnError.UserType":"{user_type}","frequent_utterance":{frequent_turn},"failure_probability":{:.4},"baseline_failure_probability":{:.4},"Alexa.Marketplace":"{marketplace}"{outcome}}}"#,
                    p_fail, baseline
                );
                cols.push(&Event {
                    event_type: "turn_error.evaluation",
                    attributes: Some(&ete),
                    ..turn
                });
            }
            if self.rng.random_range(0..100) < 35 {
                let evaluated = self.rng.random_range(0..100) < 85;
                let last_turn = n + 1 == utterances;
                let defect = match self.rng.random_range(0..100) {
                    _ if !evaluated => None,
                    _ if failed && !classified => Some("unhandled"),
                    0..5 => Some("barge_in"),
                    5..11 => Some("rephrase"),
                    11..16 if last_turn => Some("termination"),
                    _ => None,
                };
                let defect = defect.map_or("null".to_string(), |d| format!("\"{d}\""));
                let baseline = 7.0 + 3.0 * self.rng.random::<f64>();
                let quality = format!(
                    r#"{{"evaluated":{evaluated},"defect":{defect},"frequent_utterance":{frequent_turn},"Alexa.SkillQuality.InvocationType":"{invocation}","Alexa.SkillQuality.UserType":"{user_type}","baseline_friction_rate":{baseline:.2},"Alexa.Marketplace":"{marketplace}"}}"#
                );
                cols.push(&Event {
                    event_type: "skill_quality.turn",
                    attributes: Some(&quality),
                    ..turn
                });
            }
            last = intent;
            intent = self.next_intent(skill_i, intent);
        }
        if self.rng.random_range(0..100) < 3 {
            return; // lost session: started, never ended
        }
        t += 500 + self.gap.sample(&mut self.rng) as i64;
        let outcome = if matches!(INTENTS[last], "AMAZON.StopIntent" | "AMAZON.CancelIntent") {
            "user_ended"
        } else {
            let error_weight = if failed_any { 20 } else { 5 };
            *pick(
                &mut self.rng,
                &["skill_ended", "user_ended", "no_response", "error"],
                &[45, 25, 22, error_weight],
            )
        };
        let end_attrs = format!(r#"{{"Alexa.Marketplace":"{marketplace}"}}"#);
        cols.push(&Event {
            time: t.min(self.day_start + DAY_MS - 1),
            event_type: "session.ended",
            outcome: Some(outcome),
            attributes: Some(&end_attrs),
            ..base
        });
    }

    fn next_intent(&mut self, skill_i: usize, current: usize) -> usize {
        let main = 8 + skill_i * 2;
        match self.rng.random_range(0..100) {
            0..45 => main + self.rng.random_range(0..3),
            45..55 if current != 0 => current,
            55..65 => 2 + self.rng.random_range(0..2),
            65..72 => 4,
            _ => 1 + self.rng.random_range(0..INTENTS.len() - 1),
        }
    }

    /// Events of the other Alexa-style namespaces (see `queries/README.md`).
    fn skill_side_event(&mut self, cols: &mut Columns) {
        let skill_i = self.rng.random_range(0..SKILLS.len());
        let rank = self.user(skill_i);
        let user = format!("amzn1.ask.account.{skill_i}{rank:06}");
        let locale = LOCALES[(mix(rank) % 6) as usize];
        let marketplace = marketplace(locale);
        let mut t = self.time_of_day(10 * 60_000);
        let base = Event {
            time: t,
            workspace_id: SKILLS[skill_i],
            user_id: Some(&user),
            stage: Some("live"),
            locale: Some(locale),
            channel: Some("voice"),
            ..Default::default()
        };
        match self.rng.random_range(0..100) {
            // A smart home utterance, turned into a directive.
            0..22 => {
                let ns = [
                    "Alexa.PowerController",
                    "Alexa.BrightnessController",
                    "Alexa.ThermostatController",
                    "Alexa.LockController",
                ][self.rng.random_range(0..4)];
                let ok = self.rng.random_range(0..100) >= 6;
                let lat = LogNormal::new(300f64.ln(), 0.5)
                    .expect("valid")
                    .sample(&mut self.rng);
                let attrs = format!(
                    r#"{{"Alexa.DirectiveNamespace":"{ns}","Alexa.Marketplace":"{marketplace}"}}"#
                );
                cols.push(&Event {
                    event_type: "smarthome.utterance",
                    outcome: Some(if ok { "success" } else { "failed" }),
                    latency_ms: Some(lat.round()),
                    attributes: Some(&attrs),
                    ..base
                });
            }
            // Account linking: an initiation, completed about 70% of the time.
            22..36 => {
                let flow = *pick(
                    &mut self.rng,
                    &[
                        "alexa_app",
                        "alexa_app_to_app",
                        "app_to_app",
                        "lwa_fallback",
                    ],
                    &[45, 20, 25, 10],
                );
                let completes =
                    self.rng.random_range(0..100) < if flow == "lwa_fallback" { 55 } else { 72 };
                for status in ["INITIATED", "COMPLETED"] {
                    if status == "COMPLETED" {
                        if !completes {
                            break;
                        }
                        t += 20_000 + self.rng.random_range(0..120_000);
                    }
                    let attrs = format!(
                        r#"{{"Alexa.AccountActivationEvents.Status":"{status}","linking_flow":"{flow}","Alexa.Marketplace":"{marketplace}"}}"#
                    );
                    cols.push(&Event {
                        time: t,
                        event_type: "account.linking",
                        attributes: Some(&attrs),
                        ..base
                    });
                }
            }
            // A music request and, unless it met friction, its play queue.
            36..62 => {
                let friction = self.rng.random_range(0..100) < 11;
                let content = *pick(
                    &mut self.rng,
                    &[
                        "Top Hits Station",
                        "Chill Evening Playlist",
                        "Classic Rock Radio",
                        "Jazz Essentials",
                        "Morning News Briefing",
                        "Kids Sing-Along",
                        "Focus Piano",
                        "Workout Mix",
                    ],
                    &[30, 18, 14, 10, 9, 8, 6, 5],
                );
                let attrs = format!(
                    r#"{{"media_content":"{content}","Alexa.Marketplace":"{marketplace}"}}"#
                );
                cols.push(&Event {
                    event_type: "music.request",
                    outcome: Some(if friction { "friction" } else { "success" }),
                    attributes: Some(&attrs),
                    ..base
                });
                if !friction {
                    let ok = self.rng.random_range(0..100) >= 5;
                    let duration = if ok {
                        LogNormal::new(540f64.ln(), 0.9)
                            .expect("valid")
                            .sample(&mut self.rng)
                            .min(4.0 * 3600.0)
                    } else {
                        self.rng.random_range(0.0..5.0)
                    };
                    let queue = format!(
                        r#"{{"media_content":"{content}","duration_s":{duration:.1},"Alexa.Marketplace":"{marketplace}"}}"#
                    );
                    cols.push(&Event {
                        time: t + 1500,
                        event_type: "music.play_queue",
                        outcome: Some(if ok { "success" } else { "failed" }),
                        attributes: Some(&queue),
                        ..base
                    });
                }
            }
            // Enablements and disablements.
            62..78 => {
                let enabled = self.rng.random_range(0..100) < 75;
                let source =
                    ["search", "voice", "skill_store", "link"][self.rng.random_range(0..4)];
                let attrs = format!(
                    r#"{{"Alexa.EnablementSource":"{source}","Alexa.Marketplace":"{marketplace}"}}"#
                );
                cols.push(&Event {
                    event_type: if enabled {
                        "skill.enabled"
                    } else {
                        "skill.disabled"
                    },
                    outcome: Some("success"),
                    attributes: Some(&attrs),
                    ..base
                });
            }
            // An automation offer, its steps, and runs once accepted.
            _ => {
                let template = *pick(
                    &mut self.rng,
                    &[
                        "tmpl-morning-briefing",
                        "tmpl-bedtime-story",
                        "tmpl-weekly-recipe",
                        "tmpl-rain-alert",
                    ],
                    &[40, 25, 20, 15],
                );
                let sent = self.rng.random_range(0..100) < 85;
                let accepted = sent && self.rng.random_range(0..100) < 38;
                let mut steps = vec!["OFFER_INITIATED_BY_SKILL"];
                if sent {
                    steps.push("OFFER_SENT_TO_CUSTOMER");
                    steps.push(if accepted {
                        "OFFER_ACCEPTED_BY_CUSTOMER"
                    } else {
                        "OFFER_NOT_ACCEPTED_BY_CUSTOMER"
                    });
                }
                for step in steps {
                    let attrs = format!(
                        r#"{{"Alexa.Automation.Origination":"{step}","Alexa.Automation.TemplateId":"{template}","Alexa.Marketplace":"{marketplace}"}}"#
                    );
                    cols.push(&Event {
                        time: t,
                        event_type: "automation.origination",
                        attributes: Some(&attrs),
                        ..base
                    });
                    t += 2_000 + self.rng.random_range(0..20_000);
                }
                if accepted {
                    for _ in 0..self.rng.random_range(1..4) {
                        t += self.rng.random_range(60_000..300_000);
                        let attrs = format!(
                            r#"{{"Alexa.Automation.Execution":"AUTOMATION_EXECUTED","Alexa.Automation.TemplateId":"{template}","Alexa.Marketplace":"{marketplace}"}}"#
                        );
                        let lat = LogNormal::new(450f64.ln(), 0.4)
                            .expect("valid")
                            .sample(&mut self.rng);
                        cols.push(&Event {
                            time: t.min(self.day_start + DAY_MS - 1),
                            event_type: "automation.execution",
                            outcome: Some("success"),
                            latency_ms: Some(lat.round()),
                            attributes: Some(&attrs),
                            ..base
                        });
                    }
                }
            }
        }
    }

    fn interaction(&mut self, cols: &mut Columns) {
        let ws_i = usize::from(self.rng.random_range(0..100) >= 70);
        let rank = self.user(10 + ws_i);
        let user = format!("cust-{ws_i}{rank:05}");
        let country = ["US", "GB", "DE", "FR", "BR", "IN", "JP"][(mix(rank ^ 7) % 7) as usize];
        let origin = *pick(
            &mut self.rng,
            &["web", "ios", "android", "api"],
            &[45, 25, 22, 8],
        );
        let t = self.time_of_day(0);
        let (resource_type, action, attrs) = match self.rng.random_range(0..100) {
            0..30 => {
                let attempts = 1 + (self.rng.random::<f64>().ln() / 0.5f64.ln()) as u32;
                (
                    "customer",
                    "login-success",
                    format!(
                        r#"{{"country":"{country}","attempts":{attempts},"device":"{origin}"}}"#
                    ),
                )
            }
            30..42 => {
                let attempts = 1 + self.rng.random_range(0..6);
                (
                    "customer",
                    "login-fail",
                    format!(
                        r#"{{"country":"{country}","attempts":{attempts},"reason":"bad_password"}}"#
                    ),
                )
            }
            42..60 => {
                let amount = (LogNormal::new(45f64.ln(), 0.7)
                    .expect("valid")
                    .sample(&mut self.rng)
                    * 100.0)
                    .round()
                    / 100.0;
                let items = 1 + self.rng.random_range(0..5);
                (
                    "order",
                    "order-placed",
                    format!(
                        r#"{{"country":"{country}","amount":{amount},"currency":"USD","items":{items}}}"#
                    ),
                )
            }
            60..64 => (
                "order",
                "order-cancelled",
                format!(r#"{{"country":"{country}","reason":"changed_mind"}}"#),
            ),
            64..80 => {
                let campaign = ["welcome", "promo", "digest"][self.rng.random_range(0..3)];
                (
                    "email",
                    "email-sent",
                    format!(r#"{{"campaign":"{campaign}","country":"{country}"}}"#),
                )
            }
            80..84 => {
                let bounce = ["hard", "soft"][self.rng.random_range(0..2)];
                (
                    "email",
                    "email-bounced",
                    format!(r#"{{"bounce_type":"{bounce}","country":"{country}"}}"#),
                )
            }
            _ => {
                let page =
                    ["/", "/pricing", "/docs", "/cart", "/checkout"][self.rng.random_range(0..5)];
                let ms = self.rng.random_range(200..4000);
                (
                    "page",
                    "page-view",
                    format!(r#"{{"path":"{page}","load_ms":{ms},"country":"{country}"}}"#),
                )
            }
        };
        let resource_id = format!(
            "{resource_type}-{}",
            if resource_type == "customer" {
                rank
            } else {
                self.next_id()
            }
        );
        cols.push(&Event {
            time: t,
            workspace_id: WORKSPACES[ws_i],
            event_type: "interaction",
            user_id: Some(&user),
            channel: Some(if origin == "api" { "text" } else { "surface" }),
            resource_type: Some(resource_type),
            resource_id: Some(&resource_id),
            action: Some(action),
            origin: Some(origin),
            attributes: Some(&attrs),
            ..Default::default()
        });
    }

    /// The Metric Store sources around one call: emotions detected,
    /// back-end connector calls, a voice judge's verdict (voice calls),
    /// business events and visual-surface events (text calls).
    #[allow(clippy::too_many_arguments)]
    fn call_companions(
        &mut self,
        cols: &mut Columns,
        base: &Event,
        start: i64,
        duration_ms: i64,
        service: &str,
        sentiment: &str,
        quality: f64,
    ) {
        let at = |rng: &mut StdRng| start + rng.random_range(0..duration_ms.max(1));
        for _ in 0..self.rng.random_range(1..4) {
            let emotion = match sentiment {
                "positive" => *pick(
                    &mut self.rng,
                    &["joy", "neutral", "frustration"],
                    &[60, 35, 5],
                ),
                "neutral" => *pick(
                    &mut self.rng,
                    &["neutral", "joy", "frustration", "sadness"],
                    &[60, 15, 15, 10],
                ),
                _ => *pick(
                    &mut self.rng,
                    &["anger", "frustration", "sadness", "neutral"],
                    &[30, 35, 15, 20],
                ),
            };
            let speaker = *pick(&mut self.rng, &["customer", "agent"], &[75, 25]);
            let attrs = format!(
                r#"{{"emotion":"{emotion}","intensity":{:.3},"speaker":"{speaker}","service_id":"{service}"}}"#,
                self.rng.random::<f64>()
            );
            let time = at(&mut self.rng);
            cols.push(&Event {
                time,
                event_type: "emotion.detected",
                attributes: Some(&attrs),
                ..*base
            });
        }
        for _ in 0..self.rng.random_range(0..3) {
            let connector = *pick(
                &mut self.rng,
                &["crm", "calendar", "payments"],
                &[60, 20, 20],
            );
            let status = *pick(&mut self.rng, &["ok", "error", "timeout"], &[86, 9, 5]);
            let latency = LogNormal::new(300f64.ln(), 0.6)
                .expect("valid")
                .sample(&mut self.rng)
                .round();
            let attrs = format!(
                r#"{{"connector":"{connector}","status":"{status}","service_id":"{service}"}}"#
            );
            let time = at(&mut self.rng);
            cols.push(&Event {
                time,
                event_type: "connector.call",
                outcome: Some(status),
                latency_ms: Some(latency),
                attributes: Some(&attrs),
                ..*base
            });
        }
        if base.channel == Some("voice") {
            let score = ((quality / 10.0 + self.rng.random_range(-1.5..1.5)).clamp(0.0, 10.0)
                * 10.0)
                .round()
                / 10.0;
            let criterion = ["greeting", "compliance", "empathy"][self.rng.random_range(0..3)];
            let attrs = format!(
                r#"{{"score":{score},"passed":{},"criterion":"{criterion}","service_id":"{service}"}}"#,
                score >= 6.0
            );
            cols.push(&Event {
                event_type: "voice_judge.result",
                attributes: Some(&attrs),
                ..*base
            });
        }
        if self.rng.random_range(0..100) < 30 {
            let kind = *pick(
                &mut self.rng,
                &[
                    "order_placed",
                    "refund_requested",
                    "appointment_booked",
                    "complaint_filed",
                ],
                &[45, 20, 20, 15],
            );
            let attrs = if kind == "order_placed" {
                let amount = (LogNormal::new(80f64.ln(), 0.8)
                    .expect("valid")
                    .sample(&mut self.rng)
                    * 100.0)
                    .round()
                    / 100.0;
                format!(r#"{{"kind":"{kind}","amount":{amount},"service_id":"{service}"}}"#)
            } else {
                format!(r#"{{"kind":"{kind}","service_id":"{service}"}}"#)
            };
            cols.push(&Event {
                event_type: "world.event",
                attributes: Some(&attrs),
                ..*base
            });
        }
        if base.channel == Some("text") && self.rng.random_range(0..2) == 0 {
            let surface = *pick(&mut self.rng, &["web_widget", "mobile_app"], &[65, 35]);
            let action = *pick(&mut self.rng, &["view", "click", "dismiss"], &[55, 30, 15]);
            let attrs = format!(
                r#"{{"surface":"{surface}","action":"{action}","dwell_ms":{},"service_id":"{service}"}}"#,
                self.rng.random_range(300..20_000)
            );
            let time = at(&mut self.rng);
            cols.push(&Event {
                time,
                event_type: "surface.event",
                channel: Some("surface"),
                attributes: Some(&attrs),
                ..*base
            });
        }
    }

    fn call_summary(&mut self, cols: &mut Columns) {
        let ws_i = usize::from(self.rng.random_range(0..100) >= 60);
        let rank = self.user(20 + ws_i);
        let user = format!("caller-{ws_i}{rank:05}");
        // One conversation in 20 is a simulated one (a test run of the
        // agent): its summary says so. Picked from the id, not the random
        // stream, so every other generated value stays as it was.
        let id = self.next_id();
        let simulated = id % 20 == 7;
        let call = format!("{}-{id}", if simulated { "sim" } else { "call" });
        let channel = *pick(&mut self.rng, &["voice", "text"], &[70, 30]);
        let direction = *pick(&mut self.rng, &["inbound", "outbound"], &[75, 25]);
        let outcome = *pick(
            &mut self.rng,
            &["resolved", "escalated", "abandoned", "voicemail"],
            &[62, 18, 14, 6],
        );
        let duration = LogNormal::new(240f64.ln(), 0.7)
            .expect("valid")
            .sample(&mut self.rng)
            .round();
        let quality = match outcome {
            "resolved" => 70.0 + 30.0 * self.rng.random::<f64>().powf(0.7),
            "escalated" => 40.0 + 40.0 * self.rng.random::<f64>(),
            _ => 10.0 + 50.0 * self.rng.random::<f64>(),
        };
        let quality = (quality * 10.0).round() / 10.0;
        let sentiment = if quality > 75.0 {
            "positive"
        } else if quality > 45.0 {
            "neutral"
        } else {
            "negative"
        };
        let turns = 2 + self.rng.random_range(0..30);
        let agent = self.rng.random_range(1..25);
        let service = ["svc-support", "svc-sales", "svc-billing"][self.rng.random_range(0..3)];
        let latency = LogNormal::new(700f64.ln(), 0.45)
            .expect("valid")
            .sample(&mut self.rng)
            .round();
        let attrs = format!(
            r#"{{"quality_score":{quality},"duration_s":{duration},"sentiment":"{sentiment}","turns":{turns},"agent_id":"agent-{agent:02}","service_id":"{service}","resolved":{},"interruptions":{},"silence_ratio":{:.3}}}"#,
            outcome == "resolved",
            self.rng.random_range(0..6),
            self.rng.random::<f64>() * 0.3
        );
        let topic = match service {
            "svc-billing" => [
                "an unexpected charge",
                "a refund",
                "changing the payment card",
            ][self.rng.random_range(0..3)],
            "svc-sales" => {
                ["upgrading the plan", "a price quote", "a new order"][self.rng.random_range(0..3)]
            }
            _ => [
                "a login problem",
                "a delayed delivery",
                "setting up the device",
            ][self.rng.random_range(0..3)],
        };
        let how = match outcome {
            "resolved" => "the agent resolved it",
            "escalated" => "the agent escalated it to a specialist",
            "abandoned" => "the caller hung up before it was resolved",
            _ => "the call went to voicemail",
        };
        let attrs = format!(
            r#"{},"topic":"{topic}","summary":"The caller asked about {topic}; {how}. The caller sounded {sentiment}."{}}}"#,
            attrs.trim_end_matches('}'),
            if simulated {
                r#","simulation":true"#
            } else {
                ""
            }
        );
        let duration_ms = ((duration as i64).max(1) * 1000).min(4 * 3_600_000);
        let start = self.time_of_day(duration_ms + 1000);
        let t = start + duration_ms;
        let base = Event {
            time: t,
            workspace_id: WORKSPACES[ws_i],
            event_type: "call_intelligence.row",
            user_id: Some(&user),
            session_id: Some(&call),
            channel: Some(channel),
            direction: Some(direction),
            ..Default::default()
        };
        self.call_companions(cols, &base, start, duration_ms, service, sentiment, quality);
        cols.push(&Event {
            time: t,
            workspace_id: WORKSPACES[ws_i],
            event_type: "call_intelligence.row",
            user_id: Some(&user),
            session_id: Some(&call),
            channel: Some(channel),
            direction: Some(direction),
            outcome: Some(outcome),
            latency_ms: Some(latency),
            attributes: Some(&attrs),
            ..Default::default()
        });
    }
}
