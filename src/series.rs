//! Reading a compiled plan's answer as time series: one per group, with
//! empty buckets filled with 0 for additive measures and left out
//! otherwise (`METRICS.md`).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use datafusion::error::Result;

use crate::compile::{BUCKET, Compiled, VALUE};

/// One series: the group's values (in `group_by` order) and its points.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    pub group: Vec<Option<String>>,
    /// `(bucket start in epoch ms, value)`, ordered by time.
    pub points: Vec<(i64, f64)>,
}

/// Groups the rows of `batches` into series and fills gaps.
pub fn collect(compiled: &Compiled, batches: &[RecordBatch]) -> Result<Vec<Series>> {
    let mut groups: BTreeMap<Vec<Option<String>>, BTreeMap<i64, Option<f64>>> = BTreeMap::new();
    for batch in batches {
        let bucket = batch
            .column_by_name(BUCKET)
            .expect("compiled plans have a bucket column");
        let bucket = cast(
            &cast(bucket, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
            &DataType::Int64,
        )?;
        let bucket = bucket.as_primitive::<Int64Type>();
        let value = cast(
            batch
                .column_by_name(VALUE)
                .expect("compiled plans have a value column"),
            &DataType::Float64,
        )?;
        let value = value.as_primitive::<Float64Type>();
        let group_arrays = compiled
            .group_columns
            .iter()
            .map(|g| {
                cast(
                    batch.column_by_name(g).expect("compiled group column"),
                    &DataType::Utf8,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let key: Vec<Option<String>> = group_arrays
                .iter()
                .map(|a| {
                    let s = a.as_string::<i32>();
                    s.is_valid(row).then(|| s.value(row).to_string())
                })
                .collect();
            let v = value
                .is_valid(row)
                .then(|| value.value(row))
                .filter(|v| v.is_finite());
            groups.entry(key).or_default().insert(bucket.value(row), v);
        }
    }
    if groups.is_empty() && compiled.group_columns.is_empty() && compiled.fill_zero {
        groups.insert(Vec::new(), BTreeMap::new());
    }
    Ok(groups
        .into_iter()
        .map(|(group, values)| {
            let points = if compiled.fill_zero {
                compiled
                    .buckets
                    .iter()
                    .map(|b| (*b, values.get(b).copied().flatten().unwrap_or(0.0)))
                    .collect()
            } else {
                values
                    .into_iter()
                    .filter_map(|(b, v)| v.map(|v| (b, v)))
                    .collect()
            };
            Series { group, points }
        })
        .collect())
}
