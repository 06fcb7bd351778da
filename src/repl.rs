//! `metricstore sql`: an interactive SQL shell over the engine's session,
//! in the manner of `datafusion-cli` (line editing and history, statements
//! that may span lines and end in `;`, backslash commands, timings).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::engine::{self, Engine};
use crate::format::{Format, render};

const HELP: &str = "\
Statements end with ';' and may span lines. Commands:
  \\d            list tables
  \\d TABLE      describe a table's columns
  \\df           list the project's functions (UDAFs, JSON functions)
  \\explain SKILL BODY
                explain a skill Metrics API request (BODY: its JSON, as
                POST /v2/skills/SKILL/metrics takes it): per query, whether
                rollups or raw events answer it, and its plans
  \\q            quit
  \\?            this help";

/// What one input (a statement or a command) produced.
#[derive(Debug)]
pub enum Outcome {
    Batches(Vec<RecordBatch>),
    Help,
    Quit,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error("no table named {0:?} (\\d lists the tables)")]
    NoTable(String),
    #[error("unknown command {0:?} (\\? lists the commands)")]
    UnknownCommand(String),
    #[error("formatting result: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
    #[error("{0} (\\? shows the command)")]
    Request(String),
}

/// Runs one statement or backslash command.
pub async fn run_input(engine: &Engine, input: &str) -> Result<Outcome, Error> {
    let input = input.trim();
    if let Some(rest) = input
        .strip_prefix("\\explain")
        .filter(|r| r.starts_with(char::is_whitespace))
    {
        return Ok(Outcome::Batches(vec![
            explain(engine, rest.trim().trim_end_matches(';')).await?,
        ]));
    }
    if let Some(cmd) = input.strip_prefix('\\') {
        let mut words = cmd.trim_end_matches(';').split_whitespace();
        return match (words.next(), words.next()) {
            (Some("q" | "quit"), _) => Ok(Outcome::Quit),
            (Some("?" | "h" | "help"), _) => Ok(Outcome::Help),
            (Some("d"), None) => Ok(Outcome::Batches(list_tables(engine).await?)),
            (Some("d"), Some(table)) => Ok(Outcome::Batches(vec![describe(engine, table).await?])),
            (Some("df"), _) => Ok(Outcome::Batches(vec![functions(engine)])),
            _ => Err(Error::UnknownCommand(format!("\\{cmd}"))),
        };
    }
    Ok(Outcome::Batches(
        engine.sql(input.trim_end_matches(';')).await?,
    ))
}

/// `\\explain SKILL BODY`: which path answers each query of a skill
/// Metrics API request, and its plans.
async fn explain(engine: &Engine, args: &str) -> Result<RecordBatch, Error> {
    let (skill, body) = args
        .split_once(char::is_whitespace)
        .ok_or_else(|| Error::Request("\\explain needs a skill id and a request body".into()))?;
    let body: serde_json::Value = serde_json::from_str(body.trim())
        .map_err(|e| Error::Request(format!("the request body is not JSON: {e}")))?;
    let request = crate::skill_metrics::check_request(&body, skill)
        .map_err(|e| Error::Request(format!("{}: {}", e.code, e.message)))?;
    let (mut ids, mut paths, mut kinds, mut plans) = (vec![], vec![], vec![], vec![]);
    for q in &request.queries {
        let (path, logical, physical) = engine.explain(&q.query).await?;
        for (kind, plan) in [("logical_plan", logical), ("physical_plan", physical)] {
            ids.push(q.id.clone());
            paths.push(path.name().to_string());
            kinds.push(kind.to_string());
            plans.push(plan);
        }
    }
    Ok(string_batch(vec![
        ("query_id", ids),
        ("answered_from", paths),
        ("plan_type", kinds),
        ("plan", plans),
    ]))
}

async fn list_tables(engine: &Engine) -> Result<Vec<RecordBatch>, Error> {
    Ok(engine
        .sql(
            "SELECT table_name, table_type FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .await?)
}

fn string_batch(columns: Vec<(&str, Vec<String>)>) -> RecordBatch {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, _)| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|(_, v)| Arc::new(StringArray::from(v)) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(schema), arrays).expect("columns of equal length")
}

async fn describe(engine: &Engine, table: &str) -> Result<RecordBatch, Error> {
    let provider = engine
        .ctx
        .table_provider(table)
        .await
        .map_err(|_| Error::NoTable(table.to_string()))?;
    let schema = provider.schema();
    let (mut names, mut types, mut nulls) = (vec![], vec![], vec![]);
    for f in schema.fields() {
        names.push(f.name().clone());
        types.push(f.data_type().to_string());
        nulls.push(if f.is_nullable() { "YES" } else { "NO" }.to_string());
    }
    Ok(string_batch(vec![
        ("column_name", names),
        ("data_type", types),
        ("is_nullable", nulls),
    ]))
}

/// The functions the project adds to DataFusion's own.
fn functions(engine: &Engine) -> RecordBatch {
    let state = engine.ctx.state();
    let mut rows: Vec<(String, String)> = Vec::new();
    for name in ["quantile", "rate", "ratio"] {
        if state.aggregate_functions().contains_key(name) {
            rows.push((name.to_string(), "aggregate".to_string()));
        }
    }
    for name in ["retention", "next_intents", "top_paths"] {
        if state.table_functions().contains_key(name) {
            rows.push((name.to_string(), "table".to_string()));
        }
    }
    let mut json: Vec<String> = state
        .scalar_functions()
        .keys()
        .filter(|k| k.starts_with("json_"))
        .cloned()
        .collect();
    json.sort();
    rows.extend(json.into_iter().map(|n| (n, "scalar".to_string())));
    let (names, kinds) = rows.into_iter().unzip();
    string_batch(vec![("function_name", names), ("kind", kinds)])
}

/// Runs `-c SQL`: prints the result, or returns the error for a non-zero exit.
/// A session for SQL users: the engine over `store` with the analytics
/// table functions and the `metric_values` table registered.
pub async fn session(store: crate::storage::Store) -> engine::Result<Engine> {
    let engine = Engine::new(store).await?;
    register(&engine)?;
    Ok(engine)
}

/// Registers what the shell offers besides the events table (the
/// analyses' table functions, `metric_values`) on an engine, in process or
/// on a cluster.
pub fn register(engine: &Engine) -> engine::Result<()> {
    crate::analytics::functions::register(engine);
    crate::metric_store::read::register(engine)?;
    Ok(())
}

pub async fn run_once(engine: &Engine, sql: &str, format: Format) -> Result<(), Error> {
    match run_input(engine, sql).await? {
        Outcome::Batches(b) => println!("{}", render(&b, format)?),
        Outcome::Help => println!("{HELP}"),
        Outcome::Quit => {}
    }
    Ok(())
}

/// The interactive loop.
pub async fn run_interactive(engine: &Engine, format: Format) -> Result<(), ReadlineError> {
    let mut editor = DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".metricstore_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "metricstore SQL on {} (\\? for help, \\q to quit)",
        engine.store.display
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "metricstore> "
        } else {
            "          -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && trimmed.is_empty() {
                    continue;
                }
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                let complete = trimmed.ends_with(';') || (buffer.trim_start().starts_with('\\'));
                if !complete {
                    continue;
                }
                let input = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(input.trim());
                let started = Instant::now();
                match run_input(engine, &input).await {
                    Ok(Outcome::Quit) => break,
                    Ok(Outcome::Help) => println!("{HELP}"),
                    Ok(Outcome::Batches(b)) => {
                        let rows: usize = b.iter().map(|b| b.num_rows()).sum();
                        match render(&b, format) {
                            Ok(s) => println!("{s}"),
                            Err(e) => eprintln!("Error: {e}"),
                        }
                        println!("{rows} row(s) in {:.3}s", started.elapsed().as_secs_f64());
                    }
                    Err(e) => eprintln!("Error: {e}"),
                }
                let _ = std::io::stdout().flush();
            }
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                println!("^C");
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
