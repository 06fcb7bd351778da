//! `metricstore scheduler` and `metricstore executor`: Ballista's scheduler
//! and executor processes with the project's sessions, codecs, functions
//! and object-store registry.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::registry::Registry;
use super::session;
use crate::cli::{ExecutorArgs, SchedulerArgs};
use crate::storage::Store;

/// Plans (with in-memory tables) and results may be larger than gRPC's
/// usual 16 MiB.
const MAX_MESSAGE: u32 = 256 * 1024 * 1024;

/// Seconds between an executor's heartbeats while idle.
const HEARTBEAT_SECONDS: u64 = 2;
/// The shortest `--executor-timeout`: a busy executor polls (and so
/// heartbeats) only every 5 s (Ballista's `HEARTBEAT_POLL_INTERVAL`), and
/// must not be taken for lost while it works.
const MIN_EXECUTOR_TIMEOUT_SECONDS: u64 = 15;

/// Executors pull their tasks. Under Ballista's default (the scheduler
/// pushes tasks to executors) the scheduler counts each executor's free
/// task slots itself, and a stage rolled back because an executor was lost
/// never gives back the slots of its tasks on the other executors: the
/// job, and every later one, then waited forever for slots the survivors
/// had. A pulling executor counts its own slots, and the scheduler's
/// handling of a lost executor (expiry by heartbeat, rerunning its tasks)
/// is the same.
const POLICY: TaskSchedulingPolicy = TaskSchedulingPolicy::PullStaged;

fn split_host_port(addr: &str, what: &str) -> Result<(String, u16), String> {
    let parsed: SocketAddr = addr
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            addr.to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|_| format!("{what} {addr:?} is not HOST:PORT"))?;
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_else(|| parsed.ip().to_string());
    Ok((host, parsed.port()))
}

/// The data location, opened once so a bad location or bad `AWS_*`
/// settings fail at start; its client is the registry's for that bucket.
fn open_data(data: Option<&str>, registry: &Registry) -> Result<(), String> {
    use datafusion::execution::object_store::ObjectStoreRegistry;
    if let Some(location) = data {
        let store = Store::open(location).map_err(|e| e.to_string())?;
        registry.register_store(&store.base_url, std::sync::Arc::clone(&store.object_store));
        tracing::info!(data = %store.display, "data location");
    }
    Ok(())
}

pub async fn run_scheduler(args: SchedulerArgs) -> Result<(), String> {
    let (host, port) = split_host_port(&args.listen, "--listen")?;
    let registry = Arc::new(Registry::new());
    open_data(args.data.as_deref(), &registry)?;
    let builder_registry = std::sync::Arc::clone(&registry);
    let config = SchedulerConfig {
        bind_host: host.clone(),
        bind_port: port,
        external_host: args.advertise.clone().unwrap_or(host),
        override_config_producer: Some(Arc::new(session::config)),
        override_session_builder: Some(Arc::new(move |config| {
            session::scheduler_state(config, std::sync::Arc::clone(&builder_registry))
        })),
        override_logical_codec: Some(Arc::new(LogicalCodec::new())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        grpc_server_max_decoding_message_size: MAX_MESSAGE,
        grpc_server_max_encoding_message_size: MAX_MESSAGE,
        grpc_client_max_message_size: MAX_MESSAGE,
        scheduling_policy: POLICY,
        // A lost executor is noticed within seconds, and a job with no
        // executor left fails rather than waits.
        executor_timeout_seconds: args.executor_timeout.max(MIN_EXECUTOR_TIMEOUT_SECONDS),
        expire_dead_executor_interval_seconds: HEARTBEAT_SECONDS,
        no_executors_grace_period_seconds: args.executor_timeout.max(MIN_EXECUTOR_TIMEOUT_SECONDS),
        ..Default::default()
    };
    let addr: SocketAddr = format!("{}:{}", config.bind_host, config.bind_port)
        .parse()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(%addr, "scheduler listening");
    start_server(cluster, addr, Arc::new(config))
        .await
        .map_err(|e| e.to_string())
}

pub async fn run_executor(args: ExecutorArgs) -> Result<(), String> {
    let (host, port) = split_host_port(&args.listen, "--listen")?;
    let (scheduler_host, scheduler_port) = split_host_port(&args.scheduler, "--scheduler")?;
    let registry = Arc::new(Registry::new());
    open_data(args.data.as_deref(), &registry)?;
    let work_dir = args.work_dir.clone();
    let runtime_registry = std::sync::Arc::clone(&registry);
    let config = ExecutorProcessConfig {
        bind_host: host.clone(),
        external_host: args.advertise.clone().or(Some(host)),
        port,
        grpc_port: port
            .checked_add(1)
            .ok_or("--listen: no port after the given one for gRPC")?,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: args.concurrency,
        work_dir: args.work_dir.clone(),
        grpc_max_decoding_message_size: MAX_MESSAGE,
        grpc_max_encoding_message_size: MAX_MESSAGE,
        executor_heartbeat_interval_seconds: HEARTBEAT_SECONDS,
        task_scheduling_policy: POLICY,
        override_function_registry: Some(session::executor_functions().map_err(|e| e.to_string())?),
        override_config_producer: Some(Arc::new(session::config)),
        override_runtime_producer: Some(Arc::new(move |_config| {
            session::runtime(
                std::sync::Arc::clone(&runtime_registry),
                work_dir.as_deref(),
            )
        })),
        override_logical_codec: Some(Arc::new(LogicalCodec::new())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..Default::default()
    };
    tracing::info!(listen = %args.listen, scheduler = %args.scheduler, "executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| e.to_string())
}
