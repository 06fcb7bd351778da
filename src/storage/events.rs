//! The event table of `EVENTS.md`: its schema, its layout under the store
//! root (`events/date=YYYY-MM-DD/*.parquet`) and a writer that keeps the
//! layout's promises (row groups of one workspace sorted by time, zstd, one
//! partition per UTC day).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use super::{Error, Result, Store};

/// The directory of the event table under the store root.
pub const EVENTS_DIR: &str = "events";
/// The hive partition column.
pub const DATE_COLUMN: &str = "date";
/// Rows per Parquet row group: large enough for good compression, small
/// enough that `time` statistics prune within a day.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// The columns of `EVENTS.md`, in order, exactly as documented.
pub fn schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            utf8("workspace_id", false),
            utf8("event_type", false),
            utf8("user_id", true),
            utf8("session_id", true),
            utf8("stage", true),
            utf8("locale", true),
            utf8("channel", true),
            utf8("direction", true),
            utf8("intent", true),
            utf8("outcome", true),
            Field::new("latency_ms", DataType::Float64, true),
            utf8("resource_type", true),
            utf8("resource_id", true),
            utf8("action", true),
            utf8("origin", true),
            utf8("attributes", true),
        ]))
    });
    SCHEMA.clone()
}

/// Why a file's schema cannot be read as the events table, if it cannot:
/// a required column missing, or a column of another type. Extra columns
/// are fine (they are ignored).
pub fn schema_mismatch(file: &Schema) -> Option<String> {
    let strings = [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View];
    for field in schema().fields() {
        let Ok(found) = file.field_with_name(field.name()) else {
            if !field.is_nullable() {
                return Some(format!("required column {} is missing", field.name()));
            }
            continue;
        };
        let ok = match field.data_type() {
            DataType::Utf8 => strings.contains(found.data_type()),
            DataType::Float64 => found.data_type().is_numeric(),
            DataType::Timestamp(..) => {
                matches!(found.data_type(), DataType::Timestamp(_, Some(tz)) if matches!(tz.as_ref(), "UTC" | "+00:00" | "Z"))
            }
            other => found.data_type() == other,
        };
        if !ok {
            return Some(format!(
                "column {} is {}, expected {}",
                field.name(),
                found.data_type(),
                field.data_type()
            ));
        }
    }
    None
}

/// Milliseconds in a (UTC) day.
pub const DAY_MS: i64 = 86_400_000;

/// Epoch milliseconds of a UTC day's midnight.
pub fn day_start_millis(day: chrono::NaiveDate) -> i64 {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis()
}

/// The partition value (`YYYY-MM-DD`) of an epoch-millisecond time.
pub fn date_of_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        // Sorted millisecond timestamps compress far better as deltas.
        .set_column_encoding(ColumnPath::from("time"), Encoding::DELTA_BINARY_PACKED)
        .set_column_dictionary_enabled(ColumnPath::from("time"), false)
        .build()
}

/// Sorts `batch` by `workspace_id`, then `time`.
pub fn sort_by_workspace_and_time(batch: &RecordBatch) -> Result<RecordBatch> {
    let key = |i: usize| SortColumn {
        values: Arc::clone(batch.column(i)),
        options: None,
    };
    let idx = lexsort_to_indices(&[key(1), key(0)], None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// Encodes event batches (all of one day, any order) as one Parquet file
/// whose row groups each hold one workspace's rows sorted by time (as
/// `EVENTS.md` asks of row groups). A query of one workspace then skips
/// every other workspace's row groups by their `workspace_id` statistics
/// instead of reading the whole day; the file as a whole is not sorted by
/// time, so no table declares it is.
pub fn encode_parquet(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let merged = datafusion::arrow::compute::concat_batches(&schema(), batches)?;
    let sorted = sort_by_workspace_and_time(&merged)?;
    let runs = datafusion::arrow::compute::partition(&[Arc::clone(sorted.column(1))])?;
    let mut buf = Vec::with_capacity(sorted.get_array_memory_size() / 4 + 1024);
    let parquet = |source| Error::Parquet {
        path: "<memory>".into(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(&mut buf, schema(), Some(writer_properties())).map_err(parquet)?;
    for run in runs.ranges() {
        // A workspace's rows end their row group.
        writer
            .write(&sorted.slice(run.start, run.end - run.start))
            .and_then(|_| writer.flush())
            .map_err(parquet)?;
    }
    writer.close().map_err(parquet)?;
    Ok(buf)
}

/// Splits a batch of events into per-day batches, keyed by partition value.
pub fn split_by_day(batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
    let times = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("events schema: time is Timestamp(ms)");
    let mut days: std::collections::BTreeMap<i64, Vec<u32>> = Default::default();
    for i in 0..times.len() {
        days.entry(times.value(i).div_euclid(86_400_000))
            .or_default()
            .push(i as u32);
    }
    days.into_iter()
        .map(|(day, rows)| {
            let idx = datafusion::arrow::array::UInt32Array::from(rows);
            Ok((
                date_of_millis(day * 86_400_000),
                take_record_batch(batch, &idx)?,
            ))
        })
        .collect()
}

/// Writes one day's events as a new Parquet file named `name` and returns
/// its object path.
pub async fn write_day(
    store: &Store,
    date: &str,
    name: &str,
    batches: &[RecordBatch],
) -> Result<object_store::path::Path> {
    let bytes = encode_parquet(batches)?;
    let path = store.path(&format!("{EVENTS_DIR}/{DATE_COLUMN}={date}/{name}.parquet"));
    store.put_durable(&path, bytes).await?;
    Ok(path)
}

/// One event as producers send it (JSON), before it becomes a row.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct EventRow {
    pub time: i64,
    pub workspace_id: String,
    pub event_type: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub stage: Option<String>,
    pub locale: Option<String>,
    pub channel: Option<String>,
    pub direction: Option<String>,
    pub intent: Option<String>,
    pub outcome: Option<String>,
    pub latency_ms: Option<f64>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    pub origin: Option<String>,
    /// The `attributes` object, as compact JSON text.
    pub attributes: Option<String>,
}

/// The longest text a string field of an event may hold.
pub const MAX_FIELD_CHARS: usize = 1024;

impl EventRow {
    /// Parses one JSON event. `time` is epoch milliseconds or RFC 3339;
    /// `attributes` must be an object (or null). Unknown fields are
    /// refused so that a typo does not silently drop data.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        let obj = value.as_object().ok_or("an event must be a JSON object")?;
        let mut row = EventRow::default();
        let text = |key: &str, v: &Value| -> Result<Option<String>, String> {
            match v {
                Value::Null => Ok(None),
                Value::String(s) if s.chars().count() <= MAX_FIELD_CHARS => Ok(Some(s.clone())),
                Value::String(_) => Err(format!("{key}: longer than {MAX_FIELD_CHARS} characters")),
                _ => Err(format!("{key}: must be a string")),
            }
        };
        let mut has_time = false;
        for (key, v) in obj {
            match key.as_str() {
                "time" => {
                    row.time = match v {
                        Value::Number(n) => n
                            .as_i64()
                            .ok_or("time: epoch milliseconds must be a whole number")?,
                        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                            .map_err(|_| format!("time: {s:?} is not RFC 3339"))?
                            .timestamp_millis(),
                        _ => {
                            return Err(
                                "time: must be epoch milliseconds or an RFC 3339 string".into()
                            );
                        }
                    };
                    // Year 1970 to 9999: the range every other part assumes.
                    if !(0..253_402_300_800_000).contains(&row.time) {
                        return Err("time: must be between 1970 and 9999".into());
                    }
                    has_time = true;
                }
                "workspace_id" => row.workspace_id = text(key, v)?.unwrap_or_default(),
                "event_type" => row.event_type = text(key, v)?.unwrap_or_default(),
                "user_id" => row.user_id = text(key, v)?,
                "session_id" => row.session_id = text(key, v)?,
                "stage" => row.stage = text(key, v)?,
                "locale" => row.locale = text(key, v)?,
                "channel" => row.channel = text(key, v)?,
                "direction" => row.direction = text(key, v)?,
                "intent" => row.intent = text(key, v)?,
                "outcome" => row.outcome = text(key, v)?,
                "resource_type" => row.resource_type = text(key, v)?,
                "resource_id" => row.resource_id = text(key, v)?,
                "action" => row.action = text(key, v)?,
                "origin" => row.origin = text(key, v)?,
                "latency_ms" => {
                    row.latency_ms = match v {
                        Value::Null => None,
                        Value::Number(n) => Some(
                            n.as_f64()
                                .filter(|f| f.is_finite())
                                .ok_or("latency_ms: not a finite number")?,
                        ),
                        _ => return Err("latency_ms: must be a number".into()),
                    }
                }
                "attributes" => {
                    row.attributes = match v {
                        Value::Null => None,
                        Value::Object(_) => Some(v.to_string()),
                        _ => return Err("attributes: must be a JSON object".into()),
                    }
                }
                other => return Err(format!("unknown field {other:?}")),
            }
        }
        if !has_time {
            return Err("time: is required".into());
        }
        if row.workspace_id.is_empty() {
            return Err("workspace_id: is required".into());
        }
        if row.event_type.is_empty() {
            return Err("event_type: is required".into());
        }
        Ok(row)
    }
}

/// Builds a batch of the events schema from rows.
pub fn rows_to_batch(rows: &[EventRow]) -> RecordBatch {
    use datafusion::arrow::array::{ArrayRef, Float64Array, StringArray};
    let s = |f: &dyn Fn(&EventRow) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from(rows.iter().map(|r| r.time).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        s(&|r| Some(r.workspace_id.as_str())),
        s(&|r| Some(r.event_type.as_str())),
        s(&|r| r.user_id.as_deref()),
        s(&|r| r.session_id.as_deref()),
        s(&|r| r.stage.as_deref()),
        s(&|r| r.locale.as_deref()),
        s(&|r| r.channel.as_deref()),
        s(&|r| r.direction.as_deref()),
        s(&|r| r.intent.as_deref()),
        s(&|r| r.outcome.as_deref()),
        Arc::new(rows.iter().map(|r| r.latency_ms).collect::<Float64Array>()),
        s(&|r| r.resource_type.as_deref()),
        s(&|r| r.resource_id.as_deref()),
        s(&|r| r.action.as_deref()),
        s(&|r| r.origin.as_deref()),
        s(&|r| r.attributes.as_deref()),
    ];
    RecordBatch::try_new(schema(), columns).expect("rows match the events schema")
}

/// Writes rows into their day partitions, one new file per day named
/// `name`.
pub async fn write_rows(store: &Store, name: &str, rows: &[EventRow]) -> Result<usize> {
    let batch = rows_to_batch(rows);
    let days = split_by_day(&batch)?;
    let n = days.len();
    for (date, day) in days {
        write_day(store, &date, name, &[day]).await?;
    }
    Ok(n)
}
