//! Durable event ingest: parse and check a body of newline-delimited JSON,
//! make it durable in the write-ahead log, make it visible to queries, and
//! publish it as Parquet in the background.
//!
//! - **Acknowledge** only after the batch is a WAL segment
//!   (`wal/seg-{id}.parquet`, fsynced on a local store; a completed put on
//!   S3) and in the [`Pending`] set attached to the engine's events table, so
//!   queries see it at once.
//! - **Flush**: write a manifest naming the segments and the file to make,
//!   publish one Parquet file per day (under the publish lock, dropping the
//!   same rows from memory), then delete the segments and the manifest.
//! - **Recover** on start: finish any manifest (re-publishing its file
//!   under the same name is idempotent), then flush the segments left.
//! - **Compact** partitions holding many small ingest files into one,
//!   under the same lock, so no reader ever counts a row twice.
//! - **Once**: a body sent with an `Idempotency-Key` is counted once
//!   however often a client resends it ([`once`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod compact;
mod flush;
mod once;
pub mod pending;
mod recover;

pub use flush::Compaction;
pub use once::{MAX_KEY_CHARS, check_key};
pub use pending::Pending;

use crate::engine::Engine;
use crate::storage::events::{self, EventRow};
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
    /// Another server holds the location's writer lease (see
    /// `storage::lease`); this one takes over if that one stops.
    #[error(
        "this server is standing by: another server writes to its data location; send events there, or retry after it stops"
    )]
    Standby,
    #[error("Idempotency-Key {0:?} was used for another body; use a new key for new events")]
    KeyReused(String),
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// One flush or compaction at a time; holds the manifest of a flush
    /// that failed half-way, retried under the same names (so a day
    /// already published is overwritten, never published twice).
    flushing: tokio::sync::Mutex<Option<Manifest>>,
    /// Set while another server holds the writer lease: events are
    /// refused (the writer's log is not this server's to write).
    standby: std::sync::atomic::AtomicBool,
}

fn new_id() -> String {
    format!(
        "{:013}-{}",
        chrono::Utc::now().timestamp_millis(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Ingest {
    /// The ingest of `engine`'s store; its unpublished events become part
    /// of the engine's `events` table.
    pub fn new(engine: &Engine, limits: Limits) -> Arc<Self> {
        let pending = Arc::new(Pending::default());
        engine.attach_unpublished(Arc::clone(&pending) as _);
        Arc::new(Self {
            store: engine.store.clone(),
            pending,
            limits,
            flushing: Default::default(),
            standby: Default::default(),
        })
    }

    /// Refuses events while `on` (another server writes), takes them again
    /// once this server holds the writer lease.
    pub fn set_standby(&self, on: bool) {
        self.standby.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn check_writer(&self) -> Result<()> {
        if self.standby.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Standby);
        }
        Ok(())
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
        self.check_writer()?;
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
}
