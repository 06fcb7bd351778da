//! Reading a query's result columns back as Rust values, whatever Arrow
//! type the plan produced for them (`Utf8` or `Utf8View`, any integer or
//! timestamp unit): each column is cast to the wanted type first.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float64Type, Int64Type, TimestampMillisecondType,
};

use super::{Error, Result};

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a Arc<dyn Array>> {
    b.column_by_name(name)
        .ok_or_else(|| Error::Column(name.to_string()))
}

/// A column as text, nulls as `None`.
pub fn strings(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let c = datafusion::arrow::compute::cast(column(b, name)?, &DataType::Utf8)
        .map_err(|_| Error::Column(name.to_string()))?;
    let a = c
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Column(name.to_string()))?;
    Ok(a.iter().map(|s| s.map(str::to_string)).collect())
}

/// A column cast to a primitive type, nulls as `None`.
fn primitive<T: ArrowPrimitiveType>(b: &RecordBatch, name: &str) -> Result<Vec<Option<T::Native>>> {
    let c = datafusion::arrow::compute::cast(column(b, name)?, &T::DATA_TYPE)
        .map_err(|_| Error::Column(name.to_string()))?;
    let a = c
        .as_primitive_opt::<T>()
        .ok_or_else(|| Error::Column(name.to_string()))?;
    Ok(a.iter().collect())
}

pub fn floats(b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    primitive::<Float64Type>(b, name)
}

pub fn ints(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    primitive::<Int64Type>(b, name)
}

/// Epoch milliseconds of a timestamp column of any unit.
pub fn millis(b: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    primitive::<TimestampMillisecondType>(b, name)
}
