//! `.slt` files in `fixtures/sql/` (sqllogictest format) run against the
//! engine's SQL context over the event fixtures (`NAME.slt` over
//! `fixtures/events/NAME.jsonl` if it exists, else `custom.jsonl`), with
//! every project function registered as in the REPL.

mod common;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use metricstore::engine::Engine;
use sqllogictest::{DBOutput, DefaultColumnType};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DbError(String);

struct Db(Engine);

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let batches = self.0.sql(sql).await.map_err(|e| DbError(e.to_string()))?;
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        let mut width = 0;
        for batch in &batches {
            width = batch.num_columns();
            let formatters: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test]
async fn slt_files() {
    let mut files: Vec<_> = std::fs::read_dir("fixtures/sql")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let dir = tempfile::tempdir().unwrap();
        // `NAME.slt` runs over `fixtures/events/NAME.jsonl` if there is one.
        let own = std::path::Path::new("fixtures/events")
            .join(file.file_stem().unwrap())
            .with_extension("jsonl");
        let events = if own.exists() {
            own.to_str().unwrap().to_string()
        } else {
            "fixtures/events/custom.jsonl".to_string()
        };
        let engine = common::fixture_engine(dir.path(), &events).await;
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok(Db(engine)) }
        });
        runner
            .run_file_async(&file)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}
