//! Printing query results: a table for people, CSV and JSON for programs.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::pretty::pretty_format_batches;

/// An instant as the APIs print it: RFC 3339 in UTC, with milliseconds
/// only when it has some (`2026-01-05T00:00:00Z`).
pub fn instant(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    if ms % 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// An instant with milliseconds always, as the Interaction Metrics API
/// (and the alerts, in its conventions) writes them:
/// `2026-03-20T14:30:00.000Z`.
pub fn instant_millis(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// An output format of the REPL and of `sql -c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// Renders `batches` in `format`. JSON is an array of row objects; CSV has a
/// header line; a table of no rows still shows the column names.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, ArrowError> {
    match format {
        Format::Table => Ok(pretty_format_batches(batches)?.to_string()),
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut writer = arrow_csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    writer.write(b)?;
                }
            }
            Ok(String::from_utf8(buf).map_err(|e| ArrowError::CsvError(e.to_string()))?)
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut writer = arrow_json::ArrayWriter::new(&mut buf);
                for b in batches {
                    writer.write(b)?;
                }
                writer.finish()?;
            }
            if buf.is_empty() {
                return Ok("[]".to_string());
            }
            Ok(String::from_utf8(buf).map_err(|e| ArrowError::JsonError(e.to_string()))?)
        }
    }
}
