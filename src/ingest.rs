//! Durable event ingest: parse and check a body of newline-delimited JSON,
//! make it durable in the write-ahead log, make it visible to queries, and
//! publish it as Parquet in the background.
//!
//! - **Acknowledge** only after the batch is a WAL segment
//!   (`wal/seg-{id}.parquet`, fsynced on a local store; a completed put on
//!   S3) and in the engine's [`Pending`] set, so queries see it at once.
//! - **Flush**: write a manifest naming the segments and the file to make,
//!   publish one Parquet file per day (under the publish lock, dropping the
//!   same rows from memory), then delete the segments and the manifest.
//! - **Recover** on start: finish any manifest (re-publishing its file
//!   under the same name is idempotent), then flush the segments left.
//! - **Compact** partitions holding many small ingest files into one,
//!   under the same lock, so no reader ever counts a row twice.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Pending};
use crate::storage::events::{self, DATE_COLUMN, EVENTS_DIR, EventRow};
use crate::storage::{self, Store};

/// Limits of one request and of the unflushed backlog.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Body after decompression.
    pub max_decoded_bytes: usize,
    pub max_line_bytes: usize,
    pub max_events: usize,
    /// Rows acknowledged but not yet published; beyond it ingest answers
    /// 503 rather than growing memory without bound.
    pub max_pending_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 128 << 20,
            max_line_bytes: 256 << 10,
            max_events: 100_000,
            max_pending_rows: 2_000_000,
        }
    }
}

/// One rejected line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported Content-Encoding {0:?}: send identity, gzip or zstd")]
    UnsupportedEncoding(String),
    #[error("the body could not be decompressed as {encoding}: {reason}")]
    BadCompression { encoding: String, reason: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{} line(s) rejected; nothing was stored", .0.len())]
    Invalid(Vec<LineError>),
    #[error("the body holds no events")]
    Empty,
    #[error("ingest is behind: {pending} events wait to be written; retry shortly")]
    Backpressure { pending: usize },
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    segments: Vec<String>,
    name: String,
}

/// The ingest path of one server.
#[derive(Debug)]
pub struct Ingest {
    store: Store,
    pending: Arc<Pending>,
    pub limits: Limits,
    /// One flush or compaction at a time.
    flushing: tokio::sync::Mutex<()>,
}

fn new_id() -> String {
    format!(
        "{:013}-{}",
        chrono::Utc::now().timestamp_millis(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Ingest {
    pub fn new(engine: &Engine, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            store: engine.store.clone(),
            pending: engine.pending.clone(),
            limits,
            flushing: Default::default(),
        })
    }

    /// Decompresses a body per its `Content-Encoding`, within the limits.
    pub fn decode(&self, body: &[u8], encoding: Option<&str>) -> Result<Vec<u8>> {
        use std::io::Read;
        let limit = self.limits.max_decoded_bytes;
        let too_large = || {
            Error::TooLarge(format!(
                "the decompressed body is larger than {limit} bytes"
            ))
        };
        let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
        let mut out = Vec::new();
        let read = |r: &mut dyn Read, out: &mut Vec<u8>, name: &str| -> Result<()> {
            r.take(limit as u64 + 1)
                .read_to_end(out)
                .map_err(|e| Error::BadCompression {
                    encoding: name.into(),
                    reason: e.to_string(),
                })?;
            Ok(())
        };
        match encoding.as_deref() {
            None | Some("") | Some("identity") => {
                return if body.len() > limit {
                    Err(too_large())
                } else {
                    Ok(body.to_vec())
                };
            }
            Some("gzip") | Some("x-gzip") => {
                read(&mut flate2::read::GzDecoder::new(body), &mut out, "gzip")?
            }
            Some("zstd") => {
                let mut d =
                    zstd::stream::read::Decoder::new(body).map_err(|e| Error::BadCompression {
                        encoding: "zstd".into(),
                        reason: e.to_string(),
                    })?;
                read(&mut d, &mut out, "zstd")?
            }
            Some(other) => return Err(Error::UnsupportedEncoding(other.to_string())),
        }
        if out.len() > limit {
            return Err(too_large());
        }
        Ok(out)
    }

    /// Parses newline-delimited events for `workspace`. Every line is
    /// checked; any bad line rejects the body (the first 100 are listed).
    pub fn parse(&self, workspace: &str, body: &[u8]) -> Result<Vec<EventRow>> {
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
            let line = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if raw.len() > self.limits.max_line_bytes {
                return Err(Error::TooLarge(format!(
                    "line {line} is longer than {} bytes",
                    self.limits.max_line_bytes
                )));
            }
            if rows.len() + errors.len() >= self.limits.max_events {
                return Err(Error::TooLarge(format!(
                    "a body holds at most {} events",
                    self.limits.max_events
                )));
            }
            let parsed = std::str::from_utf8(raw)
                .map_err(|_| "not valid UTF-8".to_string())
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).map_err(|e| format!("not valid JSON: {e}")))
                .and_then(|mut value| {
                    match value.get("workspace_id") {
                        None | Some(serde_json::Value::Null) => {
                            if let Some(obj) = value.as_object_mut() {
                                obj.insert("workspace_id".into(), workspace.into());
                            }
                        }
                        Some(serde_json::Value::String(w)) if w == workspace => {}
                        Some(other) => {
                            return Err(format!("workspace_id: {other} is not {workspace:?}, the workspace of this request"));
                        }
                    }
                    EventRow::from_json(&value)
                });
            match parsed {
                Ok(row) => rows.push(row),
                Err(reason) => errors.push(LineError { line, reason }),
            }
        }
        if !errors.is_empty() {
            errors.truncate(100);
            return Err(Error::Invalid(errors));
        }
        if rows.is_empty() {
            return Err(Error::Empty);
        }
        Ok(rows)
    }

    /// Makes `rows` durable and visible; returns how many were taken.
    pub async fn append(&self, rows: &[EventRow]) -> Result<usize> {
        let pending = self.pending.rows();
        if pending + rows.len() > self.limits.max_pending_rows {
            return Err(Error::Backpressure { pending });
        }
        let batch = events::rows_to_batch(rows);
        let id = new_id();
        let bytes = events::encode_parquet(std::slice::from_ref(&batch))?;
        self.store
            .put_durable(&self.segment_path(&id), bytes)
            .await?;
        self.pending.insert(&id, batch);
        Ok(rows.len())
    }

    fn segment_path(&self, id: &str) -> object_store::path::Path {
        self.store.path(&format!("wal/seg-{id}.parquet"))
    }

    async fn read_segment(&self, id: &str) -> Result<Option<RecordBatch>> {
        let Some(batches) = self.store.read_parquet(&self.segment_path(id)).await? else {
            return Ok(None);
        };
        let batch = datafusion::arrow::compute::concat_batches(&events::schema(), &batches)
            .map_err(storage::Error::from)?;
        Ok(Some(batch))
    }

    /// Publishes `batches` (the segments `ids`) as `ingest-{name}.parquet`
    /// in each day they touch, then forgets them in memory, atomically for
    /// readers.
    async fn publish(&self, name: &str, ids: &[String], batches: &[RecordBatch]) -> Result<()> {
        let merged = datafusion::arrow::compute::concat_batches(&events::schema(), batches)
            .map_err(storage::Error::from)?;
        let days = events::split_by_day(&merged)?;
        let mut encoded = Vec::with_capacity(days.len());
        for (date, day) in days {
            encoded.push((date, events::encode_parquet(&[day])?));
        }
        let _guard = self.pending.publish.write().await;
        for (date, bytes) in encoded {
            let path = self.store.path(&format!(
                "{EVENTS_DIR}/{DATE_COLUMN}={date}/ingest-{name}.parquet"
            ));
            self.store.put_durable(&path, bytes).await?;
        }
        self.pending.remove(ids);
        Ok(())
    }

    async fn retire(&self, manifest: &object_store::path::Path, ids: &[String]) -> Result<()> {
        for id in ids {
            self.store.delete_if_exists(&self.segment_path(id)).await?;
        }
        self.store.delete_if_exists(manifest).await?;
        Ok(())
    }

    /// Publishes every pending segment; returns the rows published.
    pub async fn flush(&self) -> Result<usize> {
        let _one = self.flushing.lock().await;
        let ids = self.pending.ids();
        if ids.is_empty() {
            return Ok(0);
        }
        let batches: Vec<RecordBatch> = ids.iter().filter_map(|id| self.pending.get(id)).collect();
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let name = new_id();
        let manifest_path = self.store.path(&format!("wal/flush-{name}.json"));
        let manifest = Manifest {
            segments: ids.clone(),
            name: name.clone(),
        };
        self.store
            .put_durable(
                &manifest_path,
                serde_json::to_vec(&manifest).expect("serialisable"),
            )
            .await?;
        self.publish(&name, &ids, &batches).await?;
        self.retire(&manifest_path, &ids).await?;
        Ok(rows)
    }

    /// Finishes what a previous process left in the log: manifests first,
    /// then segments never flushed. Run before serving.
    pub async fn recover(&self) -> Result<usize> {
        let mut listed = self.store.list("wal").await?;
        listed.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        let mut in_manifest = std::collections::HashSet::new();
        for meta in listed
            .iter()
            .filter(|m| m.location.as_ref().ends_with(".json"))
        {
            let Some(bytes) = self.store.get_opt(&meta.location).await? else {
                continue;
            };
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| storage::Error::Corrupt {
                    path: meta.location.to_string(),
                    reason: e.to_string(),
                })?;
            let mut batches = Vec::new();
            for id in &manifest.segments {
                in_manifest.insert(id.clone());
                if let Some(b) = self.read_segment(id).await? {
                    batches.push(b);
                }
            }
            // Segments are deleted only after every file is published, so
            // if one is gone the publish finished; otherwise redo it (the
            // same names, so it overwrites rather than duplicates).
            if batches.len() == manifest.segments.len() {
                self.publish(&manifest.name, &manifest.segments, &batches)
                    .await?;
            }
            self.retire(&meta.location, &manifest.segments).await?;
        }
        for meta in listed.iter() {
            let name = meta
                .location
                .as_ref()
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let Some(id) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".parquet"))
            else {
                continue;
            };
            if in_manifest.contains(id) {
                continue;
            }
            if let Some(b) = self.read_segment(id).await? {
                self.pending.insert(id, b);
            }
        }
        let rows = self.pending.rows();
        self.flush().await?;
        Ok(rows)
    }

    /// Merges the ingest files of every partition holding more than
    /// `threshold` of them into one file. Returns the partitions compacted.
    pub async fn compact(&self, threshold: usize) -> Result<usize> {
        let _one = self.flushing.lock().await;
        let files = self.store.list(EVENTS_DIR).await?;
        let mut by_day: std::collections::BTreeMap<String, Vec<object_store::path::Path>> =
            Default::default();
        for m in files {
            let loc = m.location.as_ref();
            let name = loc.rsplit('/').next().unwrap_or_default();
            if !(name.starts_with("ingest-") && name.ends_with(".parquet")) {
                continue;
            }
            if let Some(day) = loc.split('/').find_map(|p| p.strip_prefix("date=")) {
                by_day
                    .entry(day.to_string())
                    .or_default()
                    .push(m.location.clone());
            }
        }
        let mut compacted = 0;
        for (day, paths) in by_day.into_iter().filter(|(_, p)| p.len() > threshold) {
            let mut batches = Vec::new();
            for p in &paths {
                if let Some(b) = self.store.read_parquet(p).await? {
                    batches.extend(b);
                }
            }
            let bytes = events::encode_parquet(&batches)?;
            let target = self.store.path(&format!(
                "{EVENTS_DIR}/{DATE_COLUMN}={day}/compact-{}.parquet",
                new_id()
            ));
            let _guard = self.pending.publish.write().await;
            self.store.put_durable(&target, bytes).await?;
            for p in &paths {
                self.store.delete_if_exists(p).await?;
            }
            compacted += 1;
        }
        Ok(compacted)
    }

    /// Flushes every `every` (or sooner when the backlog passes a quarter
    /// of its limit) and compacts now and then, until the process ends.
    pub fn spawn_background(self: &Arc<Self>, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticks = 0u64;
            loop {
                let mut waited = Duration::ZERO;
                while waited < every && this.pending.rows() < this.limits.max_pending_rows / 4 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    waited += Duration::from_millis(50);
                }
                if let Err(e) = this.flush().await {
                    tracing::error!(error = %e, "flushing ingested events failed; will retry");
                }
                ticks += 1;
                if ticks.is_multiple_of(60)
                    && let Err(e) = this.compact(32).await
                {
                    tracing::error!(error = %e, "compaction failed; will retry");
                }
            }
        });
    }
}
