//! Storage: the one module that talks to `object_store`.
//!
//! A `LOCATION` (a local directory, a `file://` URL or `s3://bucket/prefix`)
//! opens a [`Store`]; everything the project keeps (events, catalogs,
//! write-ahead log, materialised values) lives under its root.

pub mod catalog;
pub mod events;
pub mod faults;
pub mod lease;
pub mod values;

/// Ids up to this many bytes are stored as their hex (two bytes a byte).
const MAX_HEX_ID_BYTES: usize = 100;

/// One object-key segment for an id of any length and bytes (workspace
/// ids, catalog keys): its hex, readable and as before, for ids up to 100
/// bytes; `sha256-` and the hex of its SHA-256 beyond, so no segment is
/// longer than 200 bytes (a local file name stops at 255 bytes, an S3 key
/// at 1024). The two forms cannot collide: hex has no `-`.
pub fn key_segment(id: &str) -> String {
    if id.len() <= MAX_HEX_ID_BYTES {
        hex(id.as_bytes())
    } else {
        format!("sha256-{}", sha256_hex(id.as_bytes()))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid data location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },
    #[error("creating local data directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening object store for {location}")]
    ObjectStore {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("writing parquet {path}")]
    Parquet {
        path: String,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("{path} is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("too many concurrent writers for {key}; try again")]
    Contended { key: String },
    #[error("building event batch: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An opened data location.
#[derive(Debug, Clone)]
pub struct Store {
    /// The object store holding the data.
    pub object_store: Arc<dyn ObjectStore>,
    /// The URL the object store is registered under in DataFusion
    /// (`file:///` or `s3://bucket/`).
    pub base_url: Url,
    /// The location's root inside the object store.
    pub root: Path,
    /// The location as the user gave it, for messages.
    pub display: String,
}

impl Store {
    /// Opens `location`: a local path (created if missing), `file://...` or
    /// `s3://bucket[/prefix]` configured by the standard `AWS_*` variables.
    pub fn open(location: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        if location.trim().is_empty() {
            return Err(invalid("empty location"));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("missing bucket name in s3:// URL"));
            }
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|source| Error::ObjectStore {
                    location: location.to_string(),
                    source,
                })?;
            let base_url =
                Url::parse(&format!("s3://{bucket}/")).map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self {
                object_store: Arc::new(store),
                base_url,
                root: Path::from(prefix.trim_matches('/')),
                display: location.to_string(),
            });
        }
        let local: PathBuf = if let Some(rest) = location.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if location.contains("://") {
            return Err(invalid(
                "unsupported scheme: use a local path, file:// or s3://",
            ));
        } else {
            PathBuf::from(location)
        };
        std::fs::create_dir_all(local.join("events")).map_err(|source| Error::CreateDir {
            path: local.display().to_string(),
            source,
        })?;
        let absolute = std::fs::canonicalize(&local).map_err(|source| Error::CreateDir {
            path: local.display().to_string(),
            source,
        })?;
        let root = Path::from_filesystem_path(&absolute).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            object_store: Arc::new(LocalFileSystem::new()),
            base_url: Url::parse("file:///").expect("static URL"),
            root,
            display: location.to_string(),
        })
    }

    /// The object path of `rel` under the root.
    pub fn path(&self, rel: &str) -> Path {
        let mut parts: Vec<String> = self.root.parts().map(|p| p.as_ref().to_string()).collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
        Path::from_iter(parts)
    }

    /// `path` relative to the root (the inverse of [`Store::path`]), for
    /// records that must outlive where the store is mounted.
    pub fn relative(&self, path: &Path) -> String {
        let skip = self.root.parts().count();
        path.parts()
            .skip(skip)
            .map(|p| p.as_ref().to_string())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The URL of a directory under the root, as DataFusion lists it
    /// (with a trailing slash, so it is read as a collection).
    pub fn dir_url(&self, rel: &str) -> String {
        let path = self.path(rel);
        format!("{}{}/", self.base_url, path)
    }

    /// The URL of one file under the root, as DataFusion reads it.
    pub fn file_url(&self, rel: &str) -> String {
        format!("{}{}", self.base_url, self.path(rel))
    }

    /// Whether an object is at `path` (a HEAD, not a read).
    pub async fn exists(&self, path: &Path) -> Result<bool> {
        match self.object_store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(Error::Io {
                action: "reading",
                path: path.to_string(),
                source,
            }),
        }
    }

    pub async fn get_opt(&self, path: &Path) -> Result<Option<bytes::Bytes>> {
        match self.object_store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|source| Error::Io {
                action: "reading",
                path: path.to_string(),
                source,
            })?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Io {
                action: "reading",
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Writes an object and, on a local store, fsyncs it and its directory
    /// before returning, so it survives a crash of the machine, not only of
    /// the process. On S3 a completed put is durable.
    pub async fn put_durable(&self, path: &Path, bytes: Vec<u8>) -> Result<()> {
        self.object_store
            .put(path, object_store::PutPayload::from(bytes))
            .await
            .map_err(|source| Error::Io {
                action: "writing",
                path: path.to_string(),
                source,
            })?;
        self.sync(path)
    }

    /// As [`Store::put_durable`], but only if nothing is at `path` yet
    /// (a create-only put): `false` when something already was.
    pub async fn put_durable_new(&self, path: &Path, bytes: Vec<u8>) -> Result<bool> {
        let opts = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .object_store
            .put_opts(path, object_store::PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(source) => {
                return Err(Error::Io {
                    action: "writing",
                    path: path.to_string(),
                    source,
                });
            }
        }
        self.sync(path)?;
        Ok(true)
    }

    /// On a local store, fsyncs the file at `path` and its directory.
    fn sync(&self, path: &Path) -> Result<()> {
        if self.base_url.scheme() == "file" {
            let file = PathBuf::from(format!("/{path}"));
            let sync = |p: &std::path::Path| std::fs::File::open(p).and_then(|f| f.sync_all());
            sync(&file)
                .and_then(|_| file.parent().map(sync).unwrap_or(Ok(())))
                .map_err(|source| Error::CreateDir {
                    path: file.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Reads a whole Parquet file (events, write-ahead log segments,
    /// metric values), `None` if it does not exist; a file that does not
    /// decode is an error naming it.
    pub async fn read_parquet(
        &self,
        path: &Path,
    ) -> Result<Option<Vec<datafusion::arrow::record_batch::RecordBatch>>> {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let Some(bytes) = self.get_opt(path).await? else {
            return Ok(None);
        };
        let corrupt = |e: &dyn std::fmt::Display| Error::Corrupt {
            path: path.to_string(),
            reason: e.to_string(),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| corrupt(&e))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(&e))?;
        Ok(Some(batches))
    }

    /// Deletes an object; a missing one is fine.
    pub async fn delete_if_exists(&self, path: &Path) -> Result<()> {
        match self.object_store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Io {
                action: "deleting",
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Lists the objects under `rel` (recursively).
    pub async fn list(&self, rel: &str) -> Result<Vec<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        let prefix = self.path(rel);
        self.object_store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Io {
                action: "listing",
                path: prefix.to_string(),
                source,
            })
    }
}
