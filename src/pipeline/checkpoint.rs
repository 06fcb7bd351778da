//! The checkpoint of a run: the (workspace, day)s finished, so a killed
//! run of the same range resumes where it stopped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::metric_store::Result;
use crate::storage::Store;

const CHECKPOINT: &str = "metrics/pipeline/checkpoint.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) done: BTreeSet<String>,
    pub(super) finished: bool,
}

impl Checkpoint {
    /// The checkpoint of the last run (empty if none or unreadable).
    pub(super) async fn load(store: &Store) -> Result<Self> {
        Ok(match store.get_opt(&store.path(CHECKPOINT)).await? {
            Some(bytes) => serde_json::from_slice::<Checkpoint>(&bytes).unwrap_or_default(),
            None => Checkpoint::default(),
        })
    }

    pub(super) async fn save(&self, store: &Store) -> Result<()> {
        store
            .put_durable(
                &store.path(CHECKPOINT),
                serde_json::to_vec(self).expect("json"),
            )
            .await?;
        Ok(())
    }
}
