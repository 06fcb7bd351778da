//! The command line: one args struct per subcommand.

use clap::{Args, Parser, Subcommand};

use crate::format::Format;

#[derive(Debug, Parser)]
#[command(
    name = "metricstore",
    version,
    about = "Metrics engine for conversational products"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The HTTP server (skill Metrics API and the other APIs).
    Serve(ServeArgs),
    /// Interactive SQL over the event tables (or one statement with -c).
    Sql(SqlArgs),
    /// Write realistic, seeded demo events.
    Generate(GenerateArgs),
    /// Time the metric query suite, compiled and as hand-written SQL.
    Bench(BenchArgs),
    /// Run the Metric Store batch pipeline once (materialise metric values).
    Pipeline(PipelineArgs),
    /// Build or extend the rollups of the built-in metrics (backfill).
    Rollup(RollupArgs),
    /// A Ballista scheduler that runs the project's plans on executors.
    Scheduler(SchedulerArgs),
    /// A Ballista executor that runs the tasks a scheduler gives it.
    Executor(ExecutorArgs),
}

/// Where plans run: in this process, or on a Ballista scheduler.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Send plans to the Ballista scheduler at this HOST:PORT instead of
    /// running them in this process.
    #[arg(long)]
    pub cluster: Option<String>,
    /// With --cluster: seconds an HTTP request may wait for the cluster
    /// before it is answered 503.
    #[arg(long, default_value_t = 300)]
    pub cluster_timeout: u64,
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on (gRPC for clients and executors).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: String,
    /// Host name executors and clients reach this scheduler by (defaults
    /// to the host of --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data location opened at start, so a bad location or bad AWS_*
    /// settings fail here rather than in the first query.
    #[arg(long)]
    pub data: Option<String>,
    /// Seconds without a heartbeat after which an executor is taken for
    /// lost and its tasks run elsewhere (at least 15: a busy executor
    /// reports every 5 s).
    #[arg(long, default_value_t = 15)]
    pub executor_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler's HOST:PORT.
    #[arg(long)]
    pub scheduler: String,
    /// Address for Arrow Flight (shuffle and results). Executors ask the
    /// scheduler for tasks; none listens for tasks pushed to it.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Host name the scheduler and other executors reach this executor by
    /// (defaults to the host of --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Data location opened at start (the same as the clients').
    #[arg(long)]
    pub data: Option<String>,
    /// Tasks run at once (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// Directory for shuffle files (defaults to a temporary directory).
    #[arg(long)]
    pub work_dir: Option<String>,
}

/// Where the data lives.
#[derive(Debug, Args, Clone)]
pub struct StorageArgs {
    /// A local directory, file:// URL or s3://bucket/prefix.
    #[arg(long, default_value = "./data")]
    pub data: String,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Run this one statement (or backslash command), print and exit.
    #[arg(short = 'c', long = "command")]
    pub command: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(flatten)]
    pub rollups: RollupsArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct RollupsArgs {
    /// Answer the queries rollups cover from them (off: from raw events).
    #[arg(long = "rollups", env = "METRICSTORE_ROLLUPS", value_enum, default_value_t = Switch::On)]
    pub rollups: Switch,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Number of events to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Number of days, ending on --end.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Random seed: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Last day (UTC, YYYY-MM-DD); defaults to today.
    #[arg(long)]
    pub end: Option<chrono::NaiveDate>,
    /// Do not build the rollups of the generated days.
    #[arg(long)]
    pub no_rollups: bool,
}

#[derive(Debug, Args)]
pub struct RollupArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// First day to build (UTC, YYYY-MM-DD); without --from and --to,
    /// every day with events.
    #[arg(long)]
    pub from: Option<chrono::NaiveDate>,
    /// Last day to build (inclusive).
    #[arg(long)]
    pub to: Option<chrono::NaiveDate>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// If the location holds no events yet, generate demo events first.
    #[arg(long)]
    pub demo: bool,
    /// Requests per second allowed per token (0: no limit).
    #[arg(long, env = "METRICSTORE_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,
    /// Requests a token may send in a burst above its rate.
    #[arg(long, env = "METRICSTORE_RATE_BURST", default_value_t = 100)]
    pub burst: u32,
    /// Seconds between Metric Store pipeline runs (0: never; the first
    /// run starts right after the server does).
    #[arg(long, env = "METRICSTORE_PIPELINE_INTERVAL", default_value_t = 3600)]
    pub pipeline_interval: u64,
    #[command(flatten)]
    pub rollups: RollupsArgs,
    /// Seconds between background rollup builds over the files flushed
    /// since (0: never).
    #[arg(long, env = "METRICSTORE_ROLLUP_INTERVAL", default_value_t = 60)]
    pub rollup_interval: u64,
    /// Milliseconds between flushes of acknowledged events to Parquet.
    #[arg(long, env = "METRICSTORE_FLUSH_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_interval_ms: u64,
    /// Flushes between compactions.
    #[arg(long, env = "METRICSTORE_COMPACT_EVERY", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub compact_every: u64,
    /// Ingest files a day holds before a compaction merges them.
    #[arg(long, env = "METRICSTORE_COMPACT_FILES", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub compact_files: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// First day to compute (UTC, YYYY-MM-DD); without --from and --to,
    /// the days the last 24 hours touch.
    #[arg(long)]
    pub from: Option<chrono::NaiveDate>,
    /// Last day to compute (inclusive).
    #[arg(long)]
    pub to: Option<chrono::NaiveDate>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Workspace (skill) to query.
    #[arg(long, default_value = "amzn1.ask.skill.demo-trivia")]
    pub workspace: String,
    /// Timed runs per query and way (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Time the dashboard request (five skill metric queries over 30
    /// days) instead, with rollups on and off: p50 and p99 with one
    /// client, requests/s with --clients at once.
    #[arg(long)]
    pub dashboard: bool,
    /// Concurrent clients of --dashboard's throughput run.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Last day (UTC, YYYY-MM-DD, exclusive end) of --dashboard's 30 days;
    /// defaults to the day after the newest event.
    #[arg(long)]
    pub end: Option<chrono::NaiveDate>,
}
