use std::process::ExitCode;

use clap::Parser;
use metricstore::cli::{Cli, Command};
use metricstore::engine::Engine;
use metricstore::storage::Store;
use metricstore::{generate, repl};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            // Ballista's client logs every job's progress; with
            // --cluster that would drown the REPL's output.
            EnvFilter::new("info,ballista::extension=warn,ballista_core::execution_plans=warn")
        }))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The newest day with events.
async fn newest_day(engine: &Engine) -> Result<chrono::NaiveDate, String> {
    let batches = engine
        .sql("SELECT max(time) AS t FROM events")
        .await
        .map_err(|e| e.to_string())?;
    let ms = batches
        .first()
        .and_then(|b| {
            use datafusion::arrow::array::{Array, AsArray};
            let a = b
                .column(0)
                .as_primitive_opt::<datafusion::arrow::datatypes::TimestampMillisecondType>()?;
            a.is_valid(0).then(|| a.value(0))
        })
        .ok_or("no events")?;
    Ok(chrono::DateTime::from_timestamp_millis(ms)
        .ok_or("bad time")?
        .date_naive())
}

/// Builds the rollups of `days` (every day with events when `None`) and
/// says what it did.
async fn build_rollups(store: Store, days: Option<Vec<String>>) -> Result<(), String> {
    let started = std::time::Instant::now();
    let engine = Engine::new(store).await.map_err(|e| e.to_string())?;
    let rollups = metricstore::engine::Rollups::open(&engine.store)
        .await
        .map_err(|e| e.to_string())?;
    let report = rollups
        .build(&engine, days)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "rollups: {} days, {} event files, {} parts ({} rows), {} merged, {} ids numbered, in {:.1}s",
        report.days,
        report.files,
        report.parts,
        report.rows,
        report.merged,
        rollups.dictionary_len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs a subcommand; the error is the message shown to the user.
async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => metricstore::server::run(args).await,
        Command::Sql(args) => {
            let engine = metricstore::cluster::open_engine(
                &args.storage.data,
                args.cluster.cluster.as_deref(),
            )
            .await?;
            repl::register(&engine).map_err(|e| e.to_string())?;
            // Rollups answer `\explain`'s metric queries as they would in
            // `serve` (built by `serve`, `generate` or `rollup`, not here).
            if args.rollups.rollups == metricstore::cli::Switch::On {
                let rollups = metricstore::engine::Rollups::open(&engine.store)
                    .await
                    .map_err(|e| format!("opening the rollups: {e}"))?;
                engine.attach_rollups(Some(rollups));
            }
            match args.command {
                Some(sql) => repl::run_once(&engine, &sql, args.format)
                    .await
                    .map_err(|e| e.to_string()),
                None => repl::run_interactive(&engine, args.format)
                    .await
                    .map_err(|e| e.to_string()),
            }
        }
        Command::Bench(args) if args.dashboard => {
            let store = Store::open(&args.storage.data).map_err(|e| e.to_string())?;
            let engine = Engine::new(store).await.map_err(|e| e.to_string())?;
            let rollups = metricstore::engine::Rollups::open(&engine.store)
                .await
                .map_err(|e| e.to_string())?;
            let end = match args.end {
                Some(d) => d,
                None => newest_day(&engine).await? + chrono::Days::new(1),
            };
            let start = end - chrono::Days::new(30);
            let at = |d: chrono::NaiveDate| format!("{d}T00:00:00Z");
            let req = metricstore::bench::dashboard::request(&args.workspace, &at(start), &at(end));
            let figures = metricstore::bench::dashboard::run(
                &engine,
                Some(std::sync::Arc::clone(&rollups)),
                &req,
                args.iterations,
                args.clients,
                10,
            )
            .await
            .map_err(|e| e.to_string())?;
            println!(
                "dashboard request, {} to {} ({}), {} sequential runs, {} clients for 10 s",
                start, end, args.workspace, args.iterations, args.clients
            );
            for f in &figures {
                println!(
                    "rollups {:<5} p50 {:>8.1} ms  p99 {:>8.1} ms  {:>7.1} requests/s ({} refused)  paths {}",
                    if f.rollups { "on" } else { "off" },
                    f.p50_ms,
                    f.p99_ms,
                    f.requests_per_s,
                    f.refused,
                    f.paths.join(",")
                );
            }
            let range = metricstore::analytics::Range::new(
                metricstore::storage::events::day_start_millis(start),
                metricstore::storage::events::day_start_millis(end),
            )
            .map_err(|e| e.to_string())?;
            let timed = metricstore::bench::dashboard::analytics(
                &engine,
                Some(std::sync::Arc::clone(&rollups)),
                &args.workspace,
                range,
                args.iterations,
            )
            .await
            .map_err(|e| e.to_string())?;
            for (name, on, p50) in timed {
                println!(
                    "{name:<9} rollups {:<5} p50 {p50:>8.1} ms",
                    if on { "on" } else { "off" }
                );
            }
            println!(
                "rollup parts held decoded in memory: {:.1} MiB",
                rollups.cached_bytes() as f64 / (1024.0 * 1024.0)
            );
            Ok(())
        }
        Command::Bench(args) => {
            let store = Store::open(&args.storage.data).map_err(|e| e.to_string())?;
            let engine = Engine::new(store).await.map_err(|e| e.to_string())?;
            let rows = metricstore::bench::run(&engine, &args.workspace, args.iterations)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{:<44} {:>12} {:>12} {:>7}",
                "query", "compiled ms", "sql ms", "ratio"
            );
            for r in &rows {
                println!(
                    "{:<44} {:>12.1} {:>12.1} {:>7.2}",
                    r.name,
                    r.compiled_ms,
                    r.sql_ms,
                    r.compiled_ms / r.sql_ms
                );
            }
            Ok(())
        }
        Command::Pipeline(args) => {
            let engine = metricstore::cluster::open_engine(
                &args.storage.data,
                args.cluster.cluster.as_deref(),
            )
            .await?;
            let _lease = metricstore::storage::lease::hold(&engine.store).await?;
            let ai = metricstore::metric_store::extract::Ai::from_env()?;
            let now_ms = metricstore::api::Clock::from_env()?.now_ms();
            let opts = metricstore::pipeline::Options {
                from: args.from,
                to: args.to,
                now_ms,
            };
            let report = metricstore::pipeline::run(&engine, &ai, &opts)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
            if report.workspaces == 0 {
                eprintln!(
                    "no Metric Store source events from {} to {}; give the days with --from and --to",
                    report.from, report.to
                );
            }
            if !report.failed.is_empty() {
                return Err(format!(
                    "{} (workspace, day) units failed; the others are stored, and the next run retries these",
                    report.failed.len()
                ));
            }
            Ok(())
        }
        Command::Scheduler(args) => metricstore::cluster::process::run_scheduler(args).await,
        Command::Executor(args) => metricstore::cluster::process::run_executor(args).await,
        Command::Generate(args) => {
            let store = Store::open(&args.storage.data).map_err(|e| e.to_string())?;
            let _lease = metricstore::storage::lease::hold(&store).await?;
            let end = args.end.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let opts = generate::Options {
                rows: args.rows,
                days: args.days,
                seed: args.seed,
                end,
            };
            let report = generate::generate(&store, &opts)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "wrote {} events in {} files to {} in {:.1}s",
                report.rows,
                report.files,
                store.display,
                report.elapsed.as_secs_f64()
            );
            if !args.no_rollups {
                build_rollups(store, None).await?;
            }
            Ok(())
        }
        Command::Rollup(args) => {
            let store = Store::open(&args.storage.data).map_err(|e| e.to_string())?;
            let _lease = metricstore::storage::lease::hold(&store).await?;
            let days = match (args.from, args.to) {
                (None, None) => None,
                (from, to) => {
                    let from = from.or(to).expect("one of them");
                    let to = to.unwrap_or(from);
                    if to < from {
                        return Err(format!("--to {to} is before --from {from}"));
                    }
                    Some(
                        from.iter_days()
                            .take_while(|d| *d <= to)
                            .map(|d| d.format("%Y-%m-%d").to_string())
                            .collect(),
                    )
                }
            };
            build_rollups(store, days).await
        }
    }
}
