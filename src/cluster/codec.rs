//! The extension codecs that carry the project's plans to a cluster,
//! wrapping Ballista's own (which handle Ballista's nodes and file formats).
//!
//! Logical plans name two kinds of table DataFusion cannot serialise by
//! itself:
//!
//! - the `events` table ([`EventsTable`]): written as its location (the
//!   store's URL and root, never credentials); the scheduler rebuilds it
//!   over its own object-store registry, with the same time-to-date
//!   pruning. Its pending (acknowledged, not yet flushed) rows stay in the
//!   client: a cluster reads the flushed Parquet files only.
//! - in-memory tables ([`MemTable`]) the analyses and the pipeline build
//!   from a first query's result: written as Arrow IPC.
//!
//! The project's functions (`quantile`, `rate`, `ratio` and the JSON
//! getters) are registered on every process, and are also decoded here by
//! name, so a process whose registry lacks one still finds it.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, TaskContext};
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::engine::EventsTable;
use crate::storage::Store;
use crate::storage::events;

/// Marks table bytes written by this codec (anything else is Ballista's).
const MAGIC: &[u8] = b"metricstore-table:";

#[derive(Debug, Serialize, Deserialize)]
enum Table {
    /// The events table of the store at `base_url` + `root`.
    Events { base_url: String, root: String },
    /// A `MemTable`: one Arrow IPC stream per partition follows.
    Memory { partitions: Vec<u64> },
}

/// The logical codec of clients and schedulers.
#[derive(Debug)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
    /// The client's store, whose location an `events` scan is written as.
    store: Option<Store>,
}

impl LogicalCodec {
    /// A codec that decodes (schedulers) and encodes everything but the
    /// `events` table.
    pub fn new() -> Self {
        Self {
            inner: BallistaLogicalExtensionCodec::default(),
            store: None,
        }
    }

    /// A client's codec: an `events` scan is written as `store`'s location.
    pub fn for_store(store: Store) -> Self {
        Self {
            store: Some(store),
            ..Self::new()
        }
    }
}

impl Default for LogicalCodec {
    fn default() -> Self {
        Self::new()
    }
}

fn codec_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Internal(format!("cluster codec: {}", message.into()))
}

fn write_header(table: &Table, buf: &mut Vec<u8>) -> Result<()> {
    let header = serde_json::to_vec(table).map_err(|e| codec_error(e.to_string()))?;
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
    buf.extend_from_slice(&header);
    Ok(())
}

/// The header of bytes this codec wrote and what follows it, or `None`
/// for anyone else's bytes.
fn read_header(buf: &[u8]) -> Result<Option<(Table, &[u8])>> {
    let Some(rest) = buf.strip_prefix(MAGIC) else {
        return Ok(None);
    };
    let (len, rest) = split_len(rest)?;
    if rest.len() < len {
        return Err(codec_error("truncated table header"));
    }
    let table = serde_json::from_slice(&rest[..len]).map_err(|e| codec_error(e.to_string()))?;
    Ok(Some((table, &rest[len..])))
}

fn split_len(buf: &[u8]) -> Result<(usize, &[u8])> {
    let (len, rest) = buf
        .split_first_chunk::<8>()
        .ok_or_else(|| codec_error("truncated length"))?;
    Ok((u64::from_le_bytes(*len) as usize, rest))
}

fn write_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn read_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(bytes, None)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

fn encode_memory(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    let schema = table.schema();
    let mut streams = Vec::new();
    for partition in &table.batches {
        let batches = partition
            .try_read()
            .map_err(|_| codec_error("in-memory table is being written"))?;
        streams.push(write_ipc(&schema, &batches)?);
    }
    let partitions = streams.iter().map(|s| s.len() as u64).collect();
    write_header(&Table::Memory { partitions }, buf)?;
    for s in streams {
        buf.extend_from_slice(&s);
    }
    Ok(())
}

fn decode_memory(partitions: &[u64], mut rest: &[u8], schema: SchemaRef) -> Result<MemTable> {
    let mut out = Vec::with_capacity(partitions.len());
    for len in partitions {
        let len = *len as usize;
        if rest.len() < len {
            return Err(codec_error("truncated in-memory table"));
        }
        out.push(read_ipc(&rest[..len])?);
        rest = &rest[len..];
    }
    MemTable::try_new(schema, out)
}

/// The events table of a location named in a plan, over this process's
/// object store for it (built from this process's configuration).
fn decode_events(base_url: &str, root: &str, ctx: &TaskContext) -> Result<EventsTable> {
    let url = url::Url::parse(base_url).map_err(|e| codec_error(e.to_string()))?;
    let object_store = ctx.runtime_env().object_store_registry.get_store(&url)?;
    let store = Store {
        object_store,
        base_url: url,
        root: object_store::path::Path::from(root),
        display: format!("{base_url}{root}"),
    };
    EventsTable::try_new(&store, events::schema())
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

/// The project's functions, found by name.
fn functions() -> &'static ballista_core::registry::BallistaFunctionRegistry {
    static REGISTRY: std::sync::OnceLock<ballista_core::registry::BallistaFunctionRegistry> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let state = super::session::function_state(datafusion::prelude::SessionConfig::new())
            .expect("the project's functions register");
        ballista_core::registry::BallistaFunctionRegistry::from(&state)
    })
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match read_header(buf)? {
            Some((Table::Events { base_url, root }, _)) => {
                Ok(Arc::new(decode_events(&base_url, &root, ctx)?))
            }
            Some((Table::Memory { partitions }, rest)) => {
                Ok(Arc::new(decode_memory(&partitions, rest, schema)?))
            }
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if node.downcast_ref::<EventsTable>().is_some() {
            let store = self.store.as_ref().ok_or_else(|| {
                codec_error("the events table can only be sent by a client that opened a store")
            })?;
            let table = Table::Events {
                base_url: store.base_url.to_string(),
                root: store.root.to_string(),
            };
            return write_header(&table, buf);
        }
        if let Some(memory) = node.downcast_ref::<MemTable>() {
            return encode_memory(memory, buf);
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        functions()
            .udf(name)
            .or_else(|_| self.inner.try_decode_udf(name, buf))
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        functions()
            .udaf(name)
            .or_else(|_| self.inner.try_decode_udaf(name, buf))
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        functions()
            .udwf(name)
            .or_else(|_| self.inner.try_decode_udwf(name, buf))
    }
}

/// The physical codec of schedulers and executors.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        functions()
            .udf(name)
            .or_else(|_| self.inner.try_decode_udf(name, buf))
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        functions()
            .udaf(name)
            .or_else(|_| self.inner.try_decode_udaf(name, buf))
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        functions()
            .udwf(name)
            .or_else(|_| self.inner.try_decode_udwf(name, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn memory_tables_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = |v: Vec<i64>| {
            RecordBatch::try_new(
                std::sync::Arc::<datafusion::arrow::datatypes::Schema>::clone(&schema),
                vec![Arc::new(Int64Array::from(v))],
            )
            .unwrap()
        };
        let table = MemTable::try_new(
            std::sync::Arc::<datafusion::arrow::datatypes::Schema>::clone(&schema),
            vec![
                vec![batch(vec![1, 2]), batch(vec![3])],
                vec![batch(vec![4])],
            ],
        )
        .unwrap();
        let codec = LogicalCodec::new();
        let mut buf = Vec::new();
        codec
            .try_encode_table_provider(&TableReference::bare("t"), Arc::new(table), &mut buf)
            .unwrap();
        let ctx = TaskContext::default();
        let back = codec
            .try_decode_table_provider(&buf, &TableReference::bare("t"), schema, &ctx)
            .unwrap();
        let back = back.downcast_ref::<MemTable>().unwrap();
        let rows: Vec<usize> = back
            .batches
            .iter()
            .map(|p| p.try_read().unwrap().iter().map(|b| b.num_rows()).sum())
            .collect();
        assert_eq!(rows, vec![3, 1]);
    }

    #[test]
    fn the_project_functions_decode_by_name() {
        let codec = LogicalCodec::new();
        let physical = PhysicalCodec::default();
        for udaf in crate::udaf::aggregates() {
            let name = udaf.name();
            assert!(codec.try_decode_udaf(name, &[]).is_ok(), "{name}");
            assert!(physical.try_decode_udaf(name, &[]).is_ok(), "{name}");
        }
        assert!(codec.try_decode_udf("json_get_str", &[]).is_ok());
        assert!(physical.try_decode_udf("json_get_int", &[]).is_ok());
    }
}
