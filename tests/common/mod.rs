//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use chrono::NaiveDate;
use metricstore::engine::Engine;
use metricstore::generate::{self, Options};
use metricstore::storage::Store;

/// Generates `rows` demo events over `days` days ending 2026-01-10 into
/// `dir` and opens an engine on it.
pub async fn demo_engine(dir: &Path, rows: u64, days: u32) -> Engine {
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let opts = Options {
        rows,
        days,
        seed: 7,
        end: NaiveDate::from_ymd_opt(2026, 1, 10).unwrap(),
    };
    generate::generate(&store, &opts).await.unwrap();
    Engine::new(store).await.unwrap()
}

/// The binary under test.
pub fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_metricstore"))
}

/// Loads a JSON-lines event fixture into `dir` and opens an engine on it.
pub async fn fixture_engine(dir: &Path, fixture: &str) -> Engine {
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let rows = read_fixture(fixture);
    metricstore::storage::events::write_rows(&store, "fixture", &rows)
        .await
        .unwrap();
    Engine::new(store).await.unwrap()
}

/// The events of a JSON-lines fixture.
pub fn read_fixture(fixture: &str) -> Vec<metricstore::storage::events::EventRow> {
    std::fs::read_to_string(fixture)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            metricstore::storage::events::EventRow::from_json(&serde_json::from_str(l).unwrap())
                .unwrap()
        })
        .collect()
}
