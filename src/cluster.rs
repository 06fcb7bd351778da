//! Running the project's plans on an Apache Ballista cluster: a scheduler
//! and executors (`metricstore scheduler`, `metricstore executor`) that
//! know the project's functions and tables, and clients (`serve`, `sql`,
//! `pipeline` with `--cluster`) whose plans go to the scheduler instead of
//! running in process.
//!
//! - [`codec`]: the extension codecs that carry the events table, in-memory
//!   tables and the project's functions in plan bytes;
//! - [`registry`]: the object-store registry of every process (one client
//!   per bucket, configured from the process's own `AWS_*` variables);
//! - [`session`]: the sessions of clients, scheduler and executors;
//! - [`process`]: the scheduler and executor processes;
//! - [`http`]: what the server does differently on a cluster (logging
//!   which requests ran there, 503 when the cluster fails).

pub mod codec;
pub mod http;
pub mod process;
pub mod registry;
pub mod session;

use std::sync::OnceLock;

pub use session::{connect, open_engine};

/// The scheduler this process sends its plans to, if any.
static ACTIVE: OnceLock<String> = OnceLock::new();

pub(crate) fn set_active(addr: &str) {
    let _ = ACTIVE.set(addr.to_string());
}

/// The scheduler this process's plans run on, if they run on a cluster.
pub fn active() -> Option<&'static str> {
    ACTIVE.get().map(String::as_str)
}

/// Whether a query's error says the cluster could not run it (the
/// scheduler unreachable, an executor lost, a job failed while running)
/// rather than that the query itself is wrong. Only ever true in a
/// process whose plans run on a cluster.
pub fn is_unavailable(message: &str) -> bool {
    if active().is_none() {
        return false;
    }
    const SIGNS: &[&str] = &[
        "transport error",
        "Connection refused",
        "connection refused",
        "tcp connect error",
        "Grpc",
        "gRPC",
        "Status {",
        "Executor",
        "executor",
        "Failed to fetch partition",
        "FetchFailed",
        "timed out",
    ];
    let job_failed = message.contains("Job ") && message.contains(" failed");
    job_failed || SIGNS.iter().any(|s| message.contains(s))
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_are_never_unavailable_in_process() {
        // No test in this binary connects to a cluster.
        assert!(!super::is_unavailable(
            "Job abc failed: Task failure due to Executor x lost"
        ));
    }
}
