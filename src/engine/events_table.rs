//! The `events` table: a hive-partitioned Parquet listing whose `date`
//! partitions are pruned from predicates on `time` ([`super::prune`]),
//! plus rows not yet in files from whichever [`Unpublished`] source is
//! attached (the ingest's write-ahead log).

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::ListingTable;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::prune::date_bounds_of;
use super::{Result, parquet_table};
use crate::storage::Store;
use crate::storage::events::{self, DATE_COLUMN, EVENTS_DIR};

/// Rows of the events table that are not (yet) in files, and the lock
/// that makes moving them into files atomic for readers: a reader holds
/// [`Unpublished::publish_lock`] for reading while it lists files and
/// takes [`Unpublished::snapshot`]; a writer holds it for writing while it
/// publishes a file and drops the same rows. So a query sees every row
/// exactly once.
pub trait Unpublished: std::fmt::Debug + Send + Sync {
    fn publish_lock(&self) -> &tokio::sync::RwLock<()>;
    /// The rows, in the events schema (without `date`).
    fn snapshot(&self) -> Vec<RecordBatch>;
}

/// The `events` table: a hive-partitioned Parquet listing whose `date`
/// partitions are pruned from predicates on `time` as well as on `date`,
/// plus the pending (acknowledged, unpublished) events.
#[derive(Debug)]
pub struct EventsTable {
    inner: ListingTable,
    unpublished: RwLock<Option<Arc<dyn Unpublished>>>,
}

impl EventsTable {
    pub fn try_new(store: &Store, file_schema: SchemaRef) -> Result<Self> {
        Ok(Self {
            inner: parquet_table(
                store,
                EVENTS_DIR,
                &[DATE_COLUMN],
                file_schema,
                // No declared order: `EVENTS.md` promises sorted row groups,
                // not sorted files (ours cluster row groups by workspace).
                vec![],
            )?,
            unpublished: RwLock::new(None),
        })
    }

    /// Makes `rows` part of the table (replacing any earlier source).
    pub fn attach(&self, rows: Arc<dyn Unpublished>) {
        *self.unpublished.write().expect("not poisoned") = Some(rows);
    }

    /// The attached source of rows not yet in files, if any.
    pub fn unpublished(&self) -> Option<Arc<dyn Unpublished>> {
        self.unpublished.read().expect("not poisoned").clone()
    }
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let mut all = filters.to_vec();
        all.extend(filters.iter().flat_map(date_bounds_of));
        let unpublished = self.unpublished.read().expect("not poisoned").clone();
        let Some(unpublished) = unpublished else {
            return self.inner.scan(state, projection, &all, limit).await;
        };
        let _guard = unpublished.publish_lock().read().await;
        let files = self.inner.scan(state, projection, &all, limit).await?;
        let pending = unpublished.snapshot();
        if pending.is_empty() {
            return Ok(files);
        }
        let schema = self.schema();
        let with_date = pending
            .iter()
            .map(|b| with_date_column(b, &schema))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let memory = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &[with_date],
            schema,
            projection.cloned(),
        )?;
        datafusion::physical_plan::union::UnionExec::try_new(vec![files, memory])
    }

    /// Every filter stays in the plan above the scan (Inexact), because
    /// the pending rows are not pruned by partition the way files are.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// An events batch with the `date` partition column the table adds.
fn with_date_column(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> datafusion::error::Result<RecordBatch> {
    use datafusion::arrow::array::{AsArray, StringArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;
    let times = batch.column(0).as_primitive::<TimestampMillisecondType>();
    let dates: StringArray = times
        .iter()
        .map(|t| t.map(events::date_of_millis))
        .collect();
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(dates));
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
