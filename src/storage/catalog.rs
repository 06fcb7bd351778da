//! A versioned JSON document per key, safe for several servers writing at
//! once: every change writes the next numbered version with
//! `PutMode::Create`, so of two writers racing for version N+1 one wins and
//! the other re-reads and retries. No update is lost and no lock is held.
//!
//! Layout: `catalog/{kind}/{key_segment(key)}/v{NNNNNNNNNNNN}.json`. Old versions
//! are pruned after a write, but only once they are both well behind the
//! newest and older than any request could be: a slow writer that read
//! version N must find N+1 still there, or its create would succeed and
//! its update would be lost behind the newer versions.

use std::time::Duration;

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, Result, Store};

/// Versions kept behind the newest.
const KEEP: u64 = 8;
/// Age after which a superseded version may be deleted.
const PRUNE_AFTER: Duration = Duration::from_secs(15 * 60);
/// Attempts before giving up on a contended write.
const MAX_ATTEMPTS: usize = 200;

/// The documents of one kind (e.g. interaction metric definitions).
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
    kind: &'static str,
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    /// The change itself refused (validation, not found, ...).
    #[error("{0}")]
    Rejected(E),
    #[error(transparent)]
    Storage(#[from] Error),
}

fn version_of(name: &str) -> Option<u64> {
    name.rsplit('/')
        .next()?
        .strip_prefix('v')?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

impl Catalog {
    pub fn new(store: Store, kind: &'static str) -> Self {
        Self { store, kind }
    }

    fn dir(&self, key: &str) -> String {
        format!("catalog/{}/{}", self.kind, super::key_segment(key))
    }

    /// The newest version number under `key` (0 when none).
    async fn versions(&self, key: &str) -> Result<Vec<u64>> {
        let mut v: Vec<u64> = self
            .store
            .list(&self.dir(key))
            .await?
            .iter()
            .filter_map(|m| version_of(m.location.as_ref()))
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The current document and its version (`T::default()` and 0 when
    /// there is none yet).
    pub async fn load<T: DeserializeOwned + Default>(&self, key: &str) -> Result<(u64, T)> {
        loop {
            let Some(&latest) = self.versions(key).await?.last() else {
                return Ok((0, T::default()));
            };
            let path = self
                .store
                .path(&format!("{}/v{latest:012}.json", self.dir(key)));
            match self.store.get_opt(&path).await? {
                Some(bytes) => {
                    let doc = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                        path: path.to_string(),
                        reason: e.to_string(),
                    })?;
                    return Ok((latest, doc));
                }
                // Pruned between list and get by a newer writer: look again.
                None => continue,
            }
        }
    }

    /// Applies `change` to the current document and writes the result as
    /// the next version, retrying on a lost race. `change` may run several
    /// times, so it must only depend on the document it is given.
    pub async fn update<T, R, E>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut T) -> Result<R, E>,
    ) -> Result<R, UpdateError<E>>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let (version, mut doc) = self.load::<T>(key).await?;
            let out = change(&mut doc).map_err(UpdateError::Rejected)?;
            let next = version + 1;
            let path = self
                .store
                .path(&format!("{}/v{next:012}.json", self.dir(key)));
            let body = serde_json::to_vec_pretty(&doc).expect("catalog documents serialise");
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self
                .store
                .object_store
                .put_opts(&path, PutPayload::from(body.clone()), opts)
                .await
            {
                // A newer version written later by another writer was
                // made from this one (create-only: it had to read it), so
                // our change is in it; applying it again would double it.
                Ok(_) => {
                    self.prune(key, next).await;
                    return Ok(out);
                }
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {
                    // The client retries a put whose answer it did not get
                    // (a timeout); if the first try landed, the retry finds
                    // our own version there. That is success, not a race.
                    if self.store.get_opt(&path).await?.as_deref() == Some(body.as_slice()) {
                        self.prune(key, next).await;
                        return Ok(out);
                    }
                    // Another writer took this version: back off a little, re-read.
                    let jitter = rand::random::<u64>() % (5 + attempt as u64 * 2);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(source) => {
                    return Err(UpdateError::Storage(Error::Io {
                        action: "writing",
                        path: path.to_string(),
                        source,
                    }));
                }
            }
        }
        Err(UpdateError::Storage(Error::Contended {
            key: key.to_string(),
        }))
    }

    /// Removes versions older than `newest - KEEP`; best effort.
    async fn prune(&self, key: &str, newest: u64) {
        let Ok(listed) = self.store.list(&self.dir(key)).await else {
            return;
        };
        let cutoff = chrono::Utc::now() - PRUNE_AFTER;
        for meta in listed {
            let Some(v) = version_of(meta.location.as_ref()) else {
                continue;
            };
            if v + KEEP < newest && meta.last_modified < cutoff {
                let _ = self.store.object_store.delete(&meta.location).await;
            }
        }
    }
}
