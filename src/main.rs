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
            match args.command {
                Some(sql) => repl::run_once(&engine, &sql, args.format)
                    .await
                    .map_err(|e| e.to_string()),
                None => repl::run_interactive(&engine, args.format)
                    .await
                    .map_err(|e| e.to_string()),
            }
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
            Ok(())
        }
    }
}
