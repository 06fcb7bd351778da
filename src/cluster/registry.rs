//! The object-store registry every process of a cluster uses.
//!
//! Plans name their files by URL (`s3://bucket/prefix/events/...` or
//! `file:///...`); each process resolves the URL to a client here. A client
//! is built once per bucket, from the standard `AWS_*` variables of the
//! process that reads, and then reused: credentials never travel in plan
//! bytes, and a query does not pay for a new S3 client per file. Unlike
//! Ballista's S3 registry, `register_store` works (DataFusion and the
//! engine call it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use url::Url;

use crate::storage::Store;

/// Object stores by `scheme://bucket`, built on first use.
#[derive(Default)]
pub struct Registry {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .stores
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Registry").field("stores", &keys).finish()
    }
}

/// `scheme://host[:port]`: one client per bucket (or per local filesystem).
fn key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many clients have been built or registered (for tests).
    pub fn len(&self) -> usize {
        self.stores.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn build(url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match url.scheme() {
            "s3" => {
                let bucket = url.host_str().unwrap_or_default();
                let store = Store::open(&format!("s3://{bucket}"))
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                Ok(store.object_store)
            }
            "file" | "" => Ok(Arc::new(object_store::local::LocalFileSystem::new())),
            other => Err(DataFusionError::Configuration(format!(
                "no object store for {other}:// URLs (use s3:// or a local path)"
            ))),
        }
    }
}

impl ObjectStoreRegistry for Registry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .expect("not poisoned")
            .insert(key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .expect("not poisoned")
            .remove(&key(url))
            .ok_or_else(|| DataFusionError::Execution(format!("no object store for {url}")))
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        let key = key(url);
        if let Some(store) = self.stores.read().expect("not poisoned").get(&key) {
            return Ok(std::sync::Arc::clone(store));
        }
        let mut stores = self.stores.write().expect("not poisoned");
        // Another task may have built it while this one waited.
        if let Some(store) = stores.get(&key) {
            return Ok(std::sync::Arc::clone(store));
        }
        let store = Self::build(url)?;
        stores.insert(key, std::sync::Arc::clone(&store));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_bucket() {
        let r = Registry::new();
        let a = r
            .get_store(&Url::parse("s3://bucket-a/x/events/").unwrap())
            .unwrap();
        let b = r
            .get_store(&Url::parse("s3://bucket-a/y/values/").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        r.get_store(&Url::parse("s3://bucket-b/").unwrap()).unwrap();
        r.get_store(&Url::parse("file:///tmp/").unwrap()).unwrap();
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn registering_replaces_instead_of_panicking() {
        let r = Registry::new();
        let url = Url::parse("file:///").unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new());
        assert!(
            r.register_store(&url, std::sync::Arc::clone(&local))
                .is_none()
        );
        assert!(
            r.register_store(&url, std::sync::Arc::clone(&local))
                .is_some()
        );
        assert!(Arc::ptr_eq(&r.get_store(&url).unwrap(), &local));
    }
}
