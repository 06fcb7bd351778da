//! The acknowledged events not yet in Parquet files, in memory, and the
//! lock that makes publishing them atomic for readers; attached to the
//! engine's `events` table as its [`Unpublished`] rows.

use datafusion::arrow::array::RecordBatch;

use crate::engine::Unpublished;

/// Acknowledged events not yet published as Parquet files, and the lock that makes publishing atomic for readers.
///
/// A reader holds `publish` for reading while it lists files and takes the
/// pending batches; the flusher holds it for writing while it publishes a
/// file and drops the same rows from `batches`. So a query sees every
/// acknowledged event exactly once: in memory or in a file, never both.
#[derive(Debug, Default)]
pub struct Pending {
    pub publish: tokio::sync::RwLock<()>,
    batches: std::sync::Mutex<std::collections::BTreeMap<String, RecordBatch>>,
}

impl Pending {
    /// Adds a segment's rows (events schema) under its id.
    pub fn insert(&self, id: &str, batch: RecordBatch) {
        self.batches
            .lock()
            .expect("not poisoned")
            .insert(id.to_string(), batch);
    }

    /// Drops published segments. Call with `publish` held for writing.
    pub fn remove(&self, ids: &[String]) {
        let mut b = self.batches.lock().expect("not poisoned");
        for id in ids {
            b.remove(id);
        }
    }

    pub fn rows(&self) -> usize {
        self.batches
            .lock()
            .expect("not poisoned")
            .values()
            .map(|b| b.num_rows())
            .sum()
    }

    pub fn ids(&self) -> Vec<String> {
        self.batches
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<RecordBatch> {
        self.batches.lock().expect("not poisoned").get(id).cloned()
    }

    fn snapshot(&self) -> Vec<RecordBatch> {
        self.batches
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }
}

impl Unpublished for Pending {
    fn publish_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.publish
    }

    fn snapshot(&self) -> Vec<RecordBatch> {
        Pending::snapshot(self)
    }
}
