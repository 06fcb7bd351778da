//! Exactly-once ingest for retrying clients (`Idempotency-Key`).
//!
//! A keyed body becomes the segment `wal/seg-k{hash(workspace, key)}`,
//! written with a create-only put, next to a sidecar record (its key, body
//! digest and event count). Once the segment is durable the record is
//! stored under `ingest/keys/`; the flush stores it too before it retires a
//! keyed segment. So whatever step a crash interrupts, a resent body finds
//! either the record or the segment, and is counted once:
//!
//! - record found: the same body answers as the first time; another body
//!   under the same key is refused;
//! - no record but the segment: the first attempt's events are durable
//!   (recovery loads and publishes them); store the record, answer;
//! - neither: nothing was kept; ingest it now.
//!
//! Records are kept (not pruned), so a key stays answered for at least the
//! 24 hours clients may retry in.

use serde::{Deserialize, Serialize};

use super::{Error, Ingest, Result};
use crate::storage::events::{self, EventRow};
use crate::storage::{self, key_segment, sha256_hex};

/// The longest `Idempotency-Key` taken.
pub const MAX_KEY_CHARS: usize = 255;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct KeyRecord {
    workspace: String,
    key: String,
    /// SHA-256 of the decoded body, hex.
    digest: String,
    accepted: usize,
}

/// Checks an `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
        ));
    }
    Ok(())
}

impl Ingest {
    fn record_path(&self, workspace: &str, key: &str) -> object_store::path::Path {
        self.store.path(&format!(
            "ingest/keys/{}/{}.json",
            key_segment(workspace),
            key_segment(key)
        ))
    }

    pub(super) fn sidecar_path(&self, id: &str) -> object_store::path::Path {
        self.store.path(&format!("wal/seg-{id}.key.json"))
    }

    async fn read_record(&self, path: &object_store::path::Path) -> Result<Option<KeyRecord>> {
        let Some(bytes) = self.store.get_opt(path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Storage(storage::Error::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })
        })
    }

    /// Stores `record` unless a record of the key is there already.
    async fn store_record(&self, record: &KeyRecord) -> Result<()> {
        let path = self.record_path(&record.workspace, &record.key);
        let bytes = serde_json::to_vec(record).expect("serialisable");
        self.store.put_durable_new(&path, bytes).await?;
        Ok(())
    }

    /// Before a keyed segment is deleted: its record, from the sidecar.
    pub(super) async fn settle_key(&self, id: &str) -> Result<()> {
        let sidecar = self.sidecar_path(id);
        if let Some(record) = self.read_record(&sidecar).await? {
            self.store_record(&record).await?;
        }
        Ok(())
    }

    /// [`Ingest::append`] for a body sent with `Idempotency-Key: key`:
    /// counted once however often it is resent. `body` is the decoded body
    /// the rows were parsed from.
    pub async fn append_once(
        &self,
        workspace: &str,
        key: &str,
        body: &[u8],
        rows: &[EventRow],
    ) -> Result<usize> {
        let digest = sha256_hex(body);
        let record = KeyRecord {
            workspace: workspace.to_string(),
            key: key.to_string(),
            digest,
            accepted: rows.len(),
        };
        let answer = |found: KeyRecord| {
            if found.digest == record.digest {
                Ok(found.accepted)
            } else {
                Err(Error::KeyReused(key.to_string()))
            }
        };
        if let Some(found) = self.read_record(&self.record_path(workspace, key)).await? {
            return answer(found);
        }
        self.check_writer()?;
        let pending = self.pending.rows();
        if pending + rows.len() > self.limits.max_pending_rows {
            return Err(Error::Backpressure { pending });
        }
        let id = format!(
            "k{}",
            &sha256_hex(format!("{workspace}\0{key}").as_bytes())[..40]
        );
        // A sidecar of an earlier attempt with another body is the truth
        // for this key if its segment was written.
        if let Some(earlier) = self.read_record(&self.sidecar_path(&id)).await?
            && self.store.exists(&self.segment_path(&id)).await?
        {
            self.store_record(&earlier).await?;
            return answer(earlier);
        }
        self.store
            .put_durable(
                &self.sidecar_path(&id),
                serde_json::to_vec(&record).expect("serialisable"),
            )
            .await?;
        let batch = events::rows_to_batch(rows);
        let bytes = events::encode_parquet(std::slice::from_ref(&batch))?;
        if self
            .store
            .put_durable_new(&self.segment_path(&id), bytes)
            .await?
        {
            self.pending.insert(&id, batch);
        }
        self.store_record(&record).await?;
        Ok(rows.len())
    }
}
