//! Materialised Metric Store values: Parquet files under
//! `metrics/values/ws=<hex workspace>/day=YYYY-MM-DD/`, one `static.parquet`
//! holding every statically extracted metric of that workspace and day
//! (hourly and daily periods, all levels) and one `ai-<key>.parquet` per AI
//! metric. A pipeline run replaces a whole file with one put, so a day is
//! either the old values or the new ones: never half, never twice.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use object_store::path::Path;

use super::{Error, Result, Store};

pub const VALUES_DIR: &str = "metrics/values";
/// Partition columns of the values table.
pub const WS_COLUMN: &str = "ws";
pub const DAY_COLUMN: &str = "day";
pub const STATIC_FILE: &str = "static.parquet";

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRow {
    pub workspace_id: String,
    pub metric_key: String,
    /// `production` or `simulation` (the events the value was computed
    /// from). Values written before the distinction hold the metric's
    /// source here and read as production.
    pub source: String,
    /// `hourly` or `daily`.
    pub granularity: String,
    pub period_start: i64,
    pub period_end: i64,
    /// `aggregate` or `entity`.
    pub scope: String,
    /// `workspace`, `service` or `call`.
    pub entity_type: String,
    pub entity_id: String,
    pub service_id: Option<String>,
    pub session_id: Option<String>,
    /// For categorical metrics: the category of a per-category count; the
    /// row without a category holds the metric's value.
    pub category: Option<String>,
    pub value: Option<f64>,
    pub sample_size: i64,
    pub computed_at: i64,
}

pub fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("workspace_id", DataType::Utf8, false),
        Field::new("metric_key", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("granularity", DataType::Utf8, false),
        Field::new("period_start", ts(), false),
        Field::new("period_end", ts(), false),
        Field::new("scope", DataType::Utf8, false),
        Field::new("entity_type", DataType::Utf8, false),
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("service_id", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("sample_size", DataType::Int64, false),
        Field::new("computed_at", ts(), false),
    ]))
}

/// The partition directory name of a workspace: one safe path segment
/// whatever the id holds (slashes, `=`, non-ASCII, 255 bytes), see
/// [`super::key_segment`].
pub fn ws_partition(workspace: &str) -> String {
    super::key_segment(workspace)
}

pub fn day_dir(workspace: &str, day: &str) -> String {
    format!(
        "{VALUES_DIR}/{WS_COLUMN}={}/{DAY_COLUMN}={day}",
        ws_partition(workspace)
    )
}

/// Where one values file of a workspace and day lives.
pub fn file_path(store: &Store, workspace: &str, day: &str, file: &str) -> Path {
    store.path(&format!("{}/{file}", day_dir(workspace, day)))
}

pub fn ai_file(key: &str) -> String {
    format!("ai-{key}.parquet")
}

pub fn to_batch(rows: &[ValueRow]) -> Result<RecordBatch> {
    let s = |f: fn(&ValueRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let o = |f: fn(&ValueRow) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let t = |f: fn(&ValueRow) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"),
        )
    };
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            s(|r| &r.workspace_id),
            s(|r| &r.metric_key),
            s(|r| &r.source),
            s(|r| &r.granularity),
            t(|r| r.period_start),
            t(|r| r.period_end),
            s(|r| &r.scope),
            s(|r| &r.entity_type),
            s(|r| &r.entity_id),
            o(|r| r.service_id.as_deref()),
            o(|r| r.session_id.as_deref()),
            o(|r| r.category.as_deref()),
            Arc::new(rows.iter().map(|r| r.value).collect::<Float64Array>()),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.sample_size),
            )),
            t(|r| r.computed_at),
        ],
    )?;
    // Sorted by key and entity so row-group statistics prune lookups.
    let cols = [
        "metric_key",
        "entity_type",
        "entity_id",
        "granularity",
        "period_start",
    ];
    let sort: Vec<SortColumn> = cols
        .iter()
        .filter_map(|name| batch.column_by_name(name))
        .map(|c| SortColumn {
            values: Arc::clone(c),
            options: None,
        })
        .collect();
    let idx = lexsort_to_indices(&sort, None)?;
    Ok(take_record_batch(&batch, &idx)?)
}

pub fn from_batch(batch: &RecordBatch) -> Result<Vec<ValueRow>> {
    let bad = |name: &str| Error::Corrupt {
        path: "metric values".into(),
        reason: format!("column {name} missing or of the wrong type"),
    };
    let s = |name: &str| -> Result<&StringArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| bad(name))
    };
    let t = |name: &str| -> Result<&TimestampMillisecondArray> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
            .ok_or_else(|| bad(name))
    };
    let (ws, key, source, gran) = (
        s("workspace_id")?,
        s("metric_key")?,
        s("source")?,
        s("granularity")?,
    );
    let (start, end, computed) = (t("period_start")?, t("period_end")?, t("computed_at")?);
    let (scope, etype, eid) = (s("scope")?, s("entity_type")?, s("entity_id")?);
    let (svc, sess, cat) = (s("service_id")?, s("session_id")?, s("category")?);
    let value = batch
        .column_by_name("value")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        .ok_or_else(|| bad("value"))?;
    let n = batch
        .column_by_name("sample_size")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| bad("sample_size"))?;
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    Ok((0..batch.num_rows())
        .map(|i| ValueRow {
            workspace_id: ws.value(i).to_string(),
            metric_key: key.value(i).to_string(),
            source: source.value(i).to_string(),
            granularity: gran.value(i).to_string(),
            period_start: start.value(i),
            period_end: end.value(i),
            scope: scope.value(i).to_string(),
            entity_type: etype.value(i).to_string(),
            entity_id: eid.value(i).to_string(),
            service_id: opt(svc, i),
            session_id: opt(sess, i),
            category: opt(cat, i),
            value: (!value.is_null(i)).then(|| value.value(i)),
            sample_size: n.value(i),
            computed_at: computed.value(i),
        })
        .collect())
}

fn encode(rows: &[ValueRow]) -> Result<Vec<u8>> {
    let batch = to_batch(rows)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    let mut buf = Vec::new();
    let parquet = |source| Error::Parquet {
        path: "<metric values>".into(),
        source,
    };
    let mut w = ArrowWriter::try_new(&mut buf, schema(), Some(props)).map_err(parquet)?;
    w.write(&batch).map_err(parquet)?;
    w.close().map_err(parquet)?;
    Ok(buf)
}

/// Replaces one values file with `rows` (one put: atomic on every store).
pub async fn write_file(
    store: &Store,
    workspace: &str,
    day: &str,
    file: &str,
    rows: &[ValueRow],
) -> Result<Path> {
    let path = file_path(store, workspace, day, file);
    store.put_durable(&path, encode(rows)?).await?;
    Ok(path)
}

/// Reads one values file; empty if it does not exist.
pub async fn read_file(
    store: &Store,
    workspace: &str,
    day: &str,
    file: &str,
) -> Result<Vec<ValueRow>> {
    let path = file_path(store, workspace, day, file);
    let Some(batches) = store.read_parquet(&path).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for b in &batches {
        out.extend(from_batch(b)?);
    }
    Ok(out)
}
