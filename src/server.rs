//! `metricstore serve`: opens the store, sets up authentication and runs
//! the HTTP API until interrupted.

use rand::Rng;

use crate::api::auth::Auth;
use crate::api::token::Signer;
use crate::api::{AppState, Clock};
use crate::cli::ServeArgs;
use crate::engine::Engine;
use crate::generate;
use crate::storage::Store;
use crate::storage::lease::Lease;

/// Demo data written by `serve --demo` into an empty location.
pub const DEMO_ROWS: u64 = 500_000;
pub const DEMO_DAYS: u32 = 30;

/// Opens the store's rollups and lets them answer the queries they cover.
/// `METRICSTORE_ROLLUPS=off` answers everything from raw events.
async fn open_rollups(engine: &Engine) -> Result<std::sync::Arc<crate::engine::Rollups>, String> {
    let rollups = crate::engine::Rollups::open(&engine.store)
        .await
        .map_err(|e| format!("opening the rollups: {e}"))?;
    engine.attach_rollups(Some(std::sync::Arc::clone(&rollups)));
    Ok(rollups)
}

/// Builds the rollups every `METRICSTORE_ROLLUP_INTERVAL` seconds (default
/// 60; 0: only use what is built) over the files flushed since.
fn spawn_rollup_builds(
    engine: &Engine,
    rollups: std::sync::Arc<crate::engine::Rollups>,
    interval: u64,
) {
    if interval > 0 {
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                match rollups.build(&engine, None).await {
                    Ok(r) if r.days > 0 => tracing::info!(
                        days = r.days,
                        files = r.files,
                        parts = r.parts,
                        rows = r.rows,
                        merged = r.merged,
                        seconds = started.elapsed().as_secs_f64(),
                        "rollups built"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "building rollups failed; will retry"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
            }
        });
    }
}

/// What a server does as its location's writer: recover the log, then
/// flush and compact it, run the Metric Store pipeline and build rollups.
struct Writer {
    flush_every: std::time::Duration,
    compaction: crate::ingest::Compaction,
    pipeline_interval: u64,
    demo_days: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    rollups: Option<(std::sync::Arc<crate::engine::Rollups>, u64)>,
}

impl Writer {
    async fn start(self, state: &std::sync::Arc<AppState>) -> Result<(), String> {
        let recovered = state
            .ingest
            .recover()
            .await
            .map_err(|e| format!("recovering the write-ahead log: {e}"))?;
        if recovered > 0 {
            tracing::info!(
                events = recovered,
                "published events left in the write-ahead log"
            );
        }
        state.ingest.set_standby(false);
        state
            .ingest
            .spawn_background(self.flush_every, self.compaction);
        if self.pipeline_interval > 0 {
            spawn_pipeline(
                std::sync::Arc::clone(state),
                std::time::Duration::from_secs(self.pipeline_interval),
                self.demo_days,
            );
        }
        if let Some((rollups, interval)) = self.rollups {
            spawn_rollup_builds(&state.engine, rollups, interval);
        }
        Ok(())
    }
}

/// Stands by while another server writes: tries for the lease every
/// third of its time to live, and once it has it, starts writing.
fn spawn_standby(
    state: std::sync::Arc<AppState>,
    writer: Writer,
    taken: std::sync::Arc<tokio::sync::OnceCell<Lease>>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(crate::storage::lease::TTL / 3).await;
            match Lease::acquire(&state.engine.store, crate::storage::lease::TTL).await {
                Ok(lease) => {
                    lease.keep_renewed();
                    let _ = taken.set(lease);
                    tracing::warn!("took over the writer lease; this server now writes");
                    if let Err(e) = writer.start(&state).await {
                        tracing::error!(error = %e, "could not start writing; stopping");
                        std::process::exit(3);
                    }
                    return;
                }
                Err(crate::storage::lease::Error::Held(..)) => {}
                Err(e) => tracing::warn!(error = %e, "could not read the writer lease"),
            }
        }
    });
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let store = Store::open(&args.storage.data).map_err(|e| e.to_string())?;
    // One writer per location: taken before the demo data, the log's
    // recovery and every background writer (see `storage::lease`). A
    // server that finds it held stands by: it answers queries and catalog
    // changes, refuses events, and takes over when the writer stops.
    let lease = std::sync::Arc::new(tokio::sync::OnceCell::new());
    match Lease::acquire(&store, crate::storage::lease::TTL).await {
        Ok(held) => {
            held.keep_renewed();
            let _ = lease.set(held);
        }
        Err(e @ crate::storage::lease::Error::Held(..)) => {
            tracing::warn!("{e}");
            eprintln!(
                "metricstore: standing by (queries and definitions are served; events are refused until this server takes over): {e}"
            );
        }
        Err(e) => return Err(e.to_string()),
    }
    let writing = lease.initialized();
    // Days of freshly generated demo events: the first pipeline run covers
    // them all, so trends have history from the start.
    let mut demo_days = None;
    if args.demo
        && writing
        && store
            .list("events")
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
    {
        let opts = generate::Options {
            rows: DEMO_ROWS,
            days: DEMO_DAYS,
            seed: 42,
            end: chrono::Utc::now().date_naive(),
        };
        eprintln!(
            "no events in {}: generating {} demo events over {} days ...",
            store.display, DEMO_ROWS, DEMO_DAYS
        );
        generate::generate(&store, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let first = opts.end - chrono::Days::new(u64::from(DEMO_DAYS) - 1);
        demo_days = Some((first, opts.end));
    }
    let engine = match &args.cluster.cluster {
        Some(addr) => crate::cluster::connect(addr, store).await?,
        None => Engine::new(store).await.map_err(|e| e.to_string())?,
    };
    // With --cluster too: rollups are built and answer in this process
    // (see `Engine::execute_local`); what they do not cover goes to the
    // cluster.
    let rollups = if args.rollups.rollups == crate::cli::Switch::On {
        Some((open_rollups(&engine).await?, args.rollup_interval))
    } else {
        None
    };
    let clock = Clock::from_env()?;

    let mut spec = std::env::var("METRICSTORE_TOKENS").unwrap_or_default();
    let generated = if spec.trim().is_empty() {
        let secret: String = (0..32)
            .map(|_| format!("{:x}", rand::rng().random_range(0..16u8)))
            .collect();
        spec = format!("{secret}:admin:*");
        Some(secret)
    } else {
        None
    };
    let auth = Auth::parse(&spec, args.rate_limit, args.burst)?;
    let signer = Signer::from_secret(&spec);
    let ai = crate::metric_store::extract::Ai::from_env()?;
    let alerts = crate::alerts::Config::from_env()?;
    crate::alerts::configure(alerts.clone());
    let state = AppState::with_ai(engine, auth, clock, signer, ai);
    let writer = Writer {
        flush_every: std::time::Duration::from_millis(args.flush_interval_ms),
        compaction: crate::ingest::Compaction {
            every_flushes: args.compact_every,
            files: args.compact_files as usize,
        },
        pipeline_interval: args.pipeline_interval,
        demo_days,
        rollups,
    };
    if writing {
        writer.start(&state).await?;
    } else {
        state.ingest.set_standby(true);
        spawn_standby(
            std::sync::Arc::clone(&state),
            writer,
            std::sync::Arc::clone(&lease),
        );
    }
    crate::alerts::evaluator::spawn(std::sync::Arc::clone(&state), alerts);
    let mut app = crate::alerts::http::router(state);
    if let Some(addr) = &args.cluster.cluster {
        let deadline = std::time::Duration::from_secs(args.cluster.cluster_timeout.max(1));
        app = crate::cluster::http::layer(app, addr.clone(), deadline);
    }

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, data = %args.storage.data, "listening");
    if let Some(secret) = generated {
        let end = chrono::Utc::now();
        let start = end - chrono::Duration::days(7);
        println!("No METRICSTORE_TOKENS set: this run's admin token is\n\n  {secret}\n");
        println!("The dashboard: http://{addr}/ (paste the token there)\n");
        println!("Try it on the demo skill:\n");
        println!(
            "  curl -s -X POST http://{addr}/v2/skills/{skill}/metrics \\\n    -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\\n    -d '{{\"startTime\":\"{s}\",\"endTime\":\"{e}\",\"metricQueries\":[{{\"id\":\"q1\",\"metricNamespace\":\"Alexa.Custom\",\"name\":\"UTTERANCES\",\"aggregationPeriod\":\"BY_DAY\",\"stat\":\"count\"}}]}}'\n",
            skill = generate::SKILLS[0],
            s = start.format("%Y-%m-%dT00:00:00Z"),
            e = end.format("%Y-%m-%dT00:00:00Z"),
        );
        println!(
            "Metric Store values (computed by the pipeline that starts with the server):\n\n  curl -s http://{addr}/v1/{ws}/metrics -H 'Authorization: Bearer {secret}'\n",
            ws = generate::WORKSPACES[0],
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    // The log holds what was not flushed; the next server recovers it.
    match lease.get() {
        Some(held) => held.release().await.map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Runs the Metric Store pipeline now and then every `every`, over the
/// last 24 hours (the first run over `first_days` if given). A failed run
/// is logged and retried at the next tick.
fn spawn_pipeline(
    state: std::sync::Arc<AppState>,
    every: std::time::Duration,
    mut first_days: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let days = first_days.take();
            let opts = crate::pipeline::Options {
                from: days.map(|d| d.0),
                to: days.map(|d| d.1),
                now_ms: state.clock.now_ms(),
            };
            match crate::pipeline::run(&state.engine, &state.ai, &opts).await {
                Ok(r) => tracing::info!(
                    days = r.days_computed,
                    values = r.values_written,
                    "scheduled pipeline run done"
                ),
                Err(e) => tracing::error!(error = %e, "scheduled pipeline run failed"),
            }
        }
    });
}
