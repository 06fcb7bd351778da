//! The writer lease of a data location. Ingest's write-ahead log, its
//! flushes and compactions, the Metric Store pipeline and rollup builds
//! assume one writer per location: two servers recovering and flushing the
//! same log would publish its rows twice. So a server takes the lease
//! before it recovers the log, renews it while it runs, and a second
//! server on the same location refuses to start (with who holds it).
//!
//! The lease is a catalog document (versioned, written with create-only
//! puts, so of two servers racing for it one wins on every store). It
//! lapses `ttl` after its last renewal; a holder on this host whose
//! process is gone (a killed server being restarted) is taken over at
//! once. A holder that finds its lease taken stops writing: [`Lease::lost`]
//! turns true and the server exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Store;
use super::catalog::{Catalog, UpdateError};

/// The catalog key of the lease.
const KEY: &str = "writer";

/// Who holds the lease, until when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    /// A random id of the holding process.
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// When the lease lapses without a renewal (epoch ms).
    pub expires_ms: i64,
    /// When the holder last renewed (epoch ms).
    pub renewed_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "another metricstore server writes to this data location (pid {} on host {:?}, renewed its lease {} s ago); \
         two writers would publish events twice. Stop it, or start this one after its lease lapses ({} s after it stops)",
        .0.pid, .0.host, (.1 - .0.renewed_ms).max(0) / 1000, (.0.expires_ms - .0.renewed_ms).max(0) / 1000
    )]
    Held(Holder, i64),
    #[error("the writer lease was taken by pid {} on host {:?}", .0.pid, .0.host)]
    Lost(Holder),
    #[error("the writer lease could not be read or written: {0}")]
    Storage(#[from] super::Error),
}

impl<E: Into<Error>> From<UpdateError<E>> for Error {
    fn from(e: UpdateError<E>) -> Self {
        match e {
            UpdateError::Rejected(e) => e.into(),
            UpdateError::Storage(e) => Error::Storage(e),
        }
    }
}

/// This process's hold on a location's writer lease.
#[derive(Debug, Clone)]
pub struct Lease {
    catalog: Catalog,
    me: Holder,
    ttl: Duration,
    lost: Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether `holder` is a process of this host that no longer runs. Only
/// Linux's `/proc` can tell; elsewhere a holder lapses by time alone.
fn is_gone(holder: &Holder, me: &Holder) -> bool {
    if holder.host.is_empty() || holder.host != me.host {
        return false;
    }
    if holder.pid == me.pid {
        // A holder with this process's pid is an earlier process.
        return holder.instance != me.instance;
    }
    if !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    // Gone, or a zombie (killed, not yet reaped by its parent): the state
    // letter follows the parenthesised command name in `/proc/PID/stat`.
    match std::fs::read_to_string(format!("/proc/{}/stat", holder.pid)) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'Z' || state == 'X'),
    }
}

impl Lease {
    /// Takes the lease of `store`'s location, or says who holds it.
    pub async fn acquire(store: &Store, ttl: Duration) -> Result<Self, Error> {
        let me = Holder {
            instance: uuid::Uuid::new_v4().to_string(),
            host: host_name(),
            pid: std::process::id(),
            expires_ms: 0,
            renewed_ms: 0,
        };
        let lease = Self {
            catalog: Catalog::new(store.clone(), "lease"),
            me,
            ttl,
            lost: Arc::new(AtomicBool::new(false)),
        };
        let me = lease.me.clone();
        let ttl_ms = ttl.as_millis() as i64;
        lease
            .catalog
            .update(KEY, |h: &mut Holder| {
                let now = now_ms();
                let free = h.instance.is_empty()
                    || h.instance == me.instance
                    || h.expires_ms <= now
                    || is_gone(h, &me);
                if !free {
                    return Err(Error::Held(h.clone(), now));
                }
                *h = Holder {
                    expires_ms: now + ttl_ms,
                    renewed_ms: now,
                    ..me.clone()
                };
                Ok(())
            })
            .await?;
        Ok(lease)
    }

    /// Extends the lease, unless another server took it.
    pub async fn renew(&self) -> Result<(), Error> {
        let me = self.me.clone();
        let ttl_ms = self.ttl.as_millis() as i64;
        let result = self
            .catalog
            .update(KEY, |h: &mut Holder| {
                if h.instance != me.instance {
                    return Err(Error::Lost(h.clone()));
                }
                let now = now_ms();
                h.expires_ms = now + ttl_ms;
                h.renewed_ms = now;
                Ok(())
            })
            .await;
        if let Err(UpdateError::Rejected(Error::Lost(_))) = &result {
            self.lost.store(true, Ordering::SeqCst);
        }
        Ok(result?)
    }

    /// Gives the lease up (a server stopping cleanly), so the next one
    /// need not wait for it to lapse.
    pub async fn release(&self) -> Result<(), Error> {
        let me = self.me.clone();
        self.catalog
            .update(KEY, |h: &mut Holder| {
                if h.instance == me.instance {
                    *h = Holder::default();
                }
                Ok::<_, Error>(())
            })
            .await?;
        Ok(())
    }

    /// Whether another server holds the lease now: this one must stop
    /// writing.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Renews every third of the lease's time to live until the lease is
    /// lost or cannot be renewed before it lapses; then the process exits
    /// (status 3) rather than write beside another writer: what it
    /// acknowledged is in the log, which the next holder recovers.
    pub fn keep_renewed(&self) {
        fn stop(e: Error) {
            tracing::error!(error = %e, "lost the writer lease; stopping");
            eprintln!("metricstore: {e}; stopping so that two servers never write at once");
            std::process::exit(3);
        }
        let lease = self.clone();
        tokio::spawn(async move {
            let every = lease.ttl / 3;
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                match lease.renew().await {
                    Ok(()) => last_ok = tokio::time::Instant::now(),
                    Err(e @ Error::Lost(_)) => return stop(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the writer lease");
                        // Stop before the lease can lapse under a writer
                        // that still writes.
                        if last_ok.elapsed() + every >= lease.ttl {
                            lease.lost.store(true, Ordering::SeqCst);
                            return stop(e);
                        }
                    }
                }
            }
        });
    }
}

/// How long a lease outlives its last renewal.
pub const TTL: Duration = Duration::from_secs(30);

/// Takes the lease of `store`'s location for a command that writes
/// (`generate`, `pipeline`, `rollup`) and keeps it renewed
/// ([`Lease::keep_renewed`]).
pub async fn hold(store: &Store) -> Result<Lease, String> {
    let lease = Lease::acquire(store, TTL)
        .await
        .map_err(|e| e.to_string())?;
    lease.keep_renewed();
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_earlier_process_of_this_pid_is_taken_over_and_loses_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let ttl = Duration::from_secs(30);
        let first = Lease::acquire(&store, ttl).await.unwrap();
        // A holder with this host and pid but another instance reads as an
        // earlier process of this pid (one process takes the lease once):
        // taken over at once.
        Lease::acquire(&store, ttl).await.unwrap();
        // Now `first` has lost it.
        assert!(matches!(first.renew().await, Err(Error::Lost(_))));
        assert!(first.lost());
    }

    /// Writes `holder` as the lease of `store`, renewed now and lapsing
    /// in 30 s (or `expires_ms` when given).
    async fn put_holder(
        store: &Store,
        instance: &str,
        host: String,
        pid: u32,
        expires_ms: Option<i64>,
    ) {
        let now = now_ms();
        Catalog::new(store.clone(), "lease")
            .update(KEY, |h: &mut Holder| {
                *h = Holder {
                    instance: instance.into(),
                    host: host.clone(),
                    pid,
                    expires_ms: expires_ms.unwrap_or(now + 30_000),
                    renewed_ms: now,
                };
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_live_holder_elsewhere_keeps_the_lease_until_it_lapses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        put_holder(&store, "elsewhere", "another-host".into(), 1, None).await;
        let err = Lease::acquire(&store, Duration::from_secs(30))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Held(..)), "{text}");
        assert!(text.contains("another-host"), "{text}");
        // Once lapsed, it is free.
        put_holder(
            &store,
            "elsewhere",
            "another-host".into(),
            1,
            Some(now_ms() - 1),
        )
        .await;
        let lease = Lease::acquire(&store, Duration::from_secs(30))
            .await
            .unwrap();
        lease.renew().await.unwrap();
        lease.release().await.unwrap();
        // Released: another takes it at once.
        Lease::acquire(&store, Duration::from_secs(30))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_holder_of_this_host_that_is_gone_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        // No process has this pid (above Linux's pid_max).
        put_holder(&store, "killed", host_name(), 4_194_305, None).await;
        Lease::acquire(&store, Duration::from_secs(30))
            .await
            .unwrap();
    }
}
