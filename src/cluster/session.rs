//! Sessions for every process of a cluster: the client's (whose plans go
//! to the scheduler), the scheduler's (which plans them into stages) and
//! the executors' (which run the stages). All of them share one
//! configuration, one set of functions and one kind of object-store
//! registry, so a plan means the same thing wherever it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ballista::extension::{SessionConfigExt, SessionContextExt};
use ballista_core::planner::{BallistaQueryPlanner, scans_only_information_schema};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::catalog::Session;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;

use super::codec::LogicalCodec;
use super::registry::Registry;
use crate::engine::{self, Engine};
use crate::storage::Store;

/// The configuration of every process: the engine's, with Ballista's
/// extension registered (so its keys survive the trip to executors).
pub fn config() -> SessionConfig {
    engine::session_config()
        .upgrade_for_ballista()
        // The static planner: with Ballista 55.0.0's adaptive planner, a
        // job that lost an executor while a later stage ran could wait
        // forever ("Can't find active stage to update stage outputs" on
        // the scheduler); the static planner reruns the lost tasks.
        .with_ballista_adaptive_query_planner(false)
}

/// A runtime over the shared object-store `registry`, listing files on
/// every query as the engine does (files come and go).
pub fn runtime(registry: Arc<Registry>, temp_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let cache = CacheManagerConfig::default().with_list_files_cache_limit(0);
    let mut builder = RuntimeEnvBuilder::new()
        .with_cache_manager(cache)
        .with_object_store_registry(registry);
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    builder.build_arc()
}

/// A session state with DataFusion's features and the project's
/// functions. Ballista's function registry cannot be registered into, so
/// the functions are registered here and the registry built from this.
pub fn function_state(config: SessionConfig) -> Result<SessionState> {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    with_functions(state, None)
}

/// `state` with the project's functions, and optionally `runtime`.
fn with_functions(state: SessionState, runtime: Option<Arc<RuntimeEnv>>) -> Result<SessionState> {
    let state = match runtime {
        Some(rt) => SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(rt)
            .build(),
        None => state,
    };
    let ctx = SessionContext::new_with_state(state);
    crate::udaf::register_all(&ctx)?;
    Ok(ctx.state())
}

/// The executors' function registry.
pub fn executor_functions() -> Result<Arc<BallistaFunctionRegistry>> {
    Ok(Arc::new(BallistaFunctionRegistry::from(&function_state(
        config(),
    )?)))
}

/// The scheduler's session for a client's configuration.
pub fn scheduler_state(config: SessionConfig, registry: Arc<Registry>) -> Result<SessionState> {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .build();
    with_functions(state, Some(runtime(registry, None)?))
}

tokio::task_local! {
    /// Plans sent to the cluster by the current request (see `http`).
    pub(crate) static JOBS: Arc<AtomicUsize>;
}

/// Ballista's query planner, which logs each plan it sends to the
/// scheduler and counts it for the request that sent it.
#[derive(Debug)]
struct ClusterPlanner {
    inner: BallistaQueryPlanner<LogicalPlanNode>,
    scheduler: String,
}

#[async_trait::async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let local =
            matches!(plan, LogicalPlan::EmptyRelation(_)) || scans_only_information_schema(plan)?;
        if !local {
            let _ = JOBS.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
            tracing::debug!(scheduler = %self.scheduler, "plan sent to the cluster");
        }
        self.inner.create_physical_plan(plan, state).await
    }
}

/// An engine over `store` whose plans run on the scheduler at `addr`
/// (`HOST:PORT`).
pub async fn connect(addr: &str, store: Store) -> Result<Engine, String> {
    let scheduler = scheduler_url(addr)?;
    let codec: Arc<LogicalCodec> = Arc::new(LogicalCodec::for_store(store.clone()));
    let config = config().with_ballista_logical_extension_codec(Arc::clone(&codec) as _);
    let planner = ClusterPlanner {
        inner: BallistaQueryPlanner::with_extension(
            scheduler.clone(),
            config.ballista_config(),
            codec,
        ),
        scheduler: scheduler.clone(),
    };
    let config = config.with_ballista_query_planner(Arc::new(planner));
    let registry = Arc::new(Registry::new());
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime(registry, None).map_err(|e| e.to_string())?)
        .with_default_features()
        .build();
    let ctx = SessionContext::remote_with_state(&format!("df://{addr}"), state)
        .await
        .map_err(|e| format!("cluster at {addr}: {e}"))?;
    // Ballista replaces the state's functions with its own list when it
    // upgrades the state; the engine registers the project's again.
    let engine = Engine::with_context(store, ctx)
        .await
        .map_err(|e| e.to_string())?;
    super::set_active(addr);
    tracing::info!(scheduler = %scheduler, "plans run on the cluster");
    Ok(engine)
}

/// `http://HOST:PORT` of a scheduler given as `HOST:PORT` (or a URL).
pub fn scheduler_url(addr: &str) -> Result<String, String> {
    let with_scheme = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("df://{addr}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| format!("scheduler {addr:?}: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("scheduler {addr:?}: no host"))?;
    let port = url.port().unwrap_or(50050);
    Ok(format!("http://{host}:{port}"))
}

/// Opens `location` and an engine on it: in process, or on the cluster
/// at `cluster`.
pub async fn open_engine(location: &str, cluster: Option<&str>) -> Result<Engine, String> {
    let store = Store::open(location).map_err(|e| e.to_string())?;
    match cluster {
        Some(addr) => connect(addr, store).await,
        None => Engine::new(store).await.map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_knows_the_project_functions() {
        let registry = executor_functions().unwrap();
        use datafusion::execution::FunctionRegistry;
        for udaf in crate::udaf::aggregates() {
            let name = udaf.name();
            assert!(registry.udaf(name).is_ok(), "{name}");
        }
        assert!(registry.udf("json_get_str").is_ok());
        // and DataFusion's own
        assert!(registry.udf("date_bin").is_ok());
        assert!(registry.udaf("count").is_ok());
        let state = scheduler_state(config(), Arc::new(Registry::new())).unwrap();
        assert!(state.aggregate_functions().contains_key("quantile"));
    }

    #[test]
    fn scheduler_addresses() {
        assert_eq!(
            scheduler_url("127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(scheduler_url("sched").unwrap(), "http://sched:50050");
    }
}
