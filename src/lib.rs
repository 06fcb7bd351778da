//! metricstore: an open metrics engine for conversational products.
//!
//! Events live as Parquet in object storage ([`storage`]); metric
//! definitions ([`definition`]) compile to DataFusion logical plans
//! ([`compile`]) that the [`engine`] runs, with our aggregate functions
//! ([`udaf`]) registered everywhere. Front ends: the HTTP [`api`], the SQL
//! [`repl`], the demo data [`generate`]or. The same plans can run on an
//! Apache Ballista [`cluster`].

pub mod analytics;
pub mod api;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod definition;
pub mod engine;
pub mod format;
pub mod generate;
pub mod ingest;
pub mod metric_store;
pub mod pipeline;
pub mod repl;
pub mod series;
pub mod server;
pub mod storage;
pub mod udaf;
