//! An object store that fails chosen operations: tests use it to check
//! that a put, delete or list failing in the middle of a flush, a
//! compaction or a pipeline run leaves every row counted exactly once once
//! the work is retried or recovered.
//!
//! Written here rather than taken from a crate: `object_store` has no
//! fault-injecting wrapper, and the failures must be chosen by operation
//! and position ("the third delete"), not at random.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// The kinds of operation a fault can be placed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Puts, multipart puts included.
    Put,
    Get,
    Delete,
    List,
    /// Copies and renames.
    Copy,
}

#[derive(Debug, Default)]
struct Plan {
    /// Operations of each kind since the last `fail_nth` or `reset`.
    counts: HashMap<Op, usize>,
    /// Fail the n-th operation (from 1) of this kind.
    fail: Option<(Op, usize)>,
}

/// Wraps a store; every operation is passed on unless it is the one
/// chosen to fail, which fails without reaching the inner store.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<Mutex<Plan>>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            plan: Arc::default(),
        }
    }

    /// From now on, counts operations afresh and fails the `n`-th of kind
    /// `op` (once).
    pub fn fail_nth(&self, op: Op, n: usize) {
        let mut plan = self.plan.lock().expect("not poisoned");
        plan.counts.clear();
        plan.fail = Some((op, n));
    }

    /// No failure planned; counts start afresh.
    pub fn reset(&self) {
        let mut plan = self.plan.lock().expect("not poisoned");
        plan.counts.clear();
        plan.fail = None;
    }

    /// Operations of kind `op` since the last `fail_nth` or `reset`.
    pub fn count(&self, op: Op) -> usize {
        let plan = self.plan.lock().expect("not poisoned");
        plan.counts.get(&op).copied().unwrap_or(0)
    }

    /// Counts one operation; `Err` when it is the one to fail.
    fn check(plan: &Mutex<Plan>, op: Op, path: &str) -> Result<()> {
        let mut plan = plan.lock().expect("not poisoned");
        let n = {
            let c = plan.counts.entry(op).or_default();
            *c += 1;
            *c
        };
        if plan.fail == Some((op, n)) {
            plan.fail = None;
            return Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("injected failure of {op:?} number {n} ({path})").into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        Self::check(&self.plan, Op::Put, location.as_ref())?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Self::check(&self.plan, Op::Put, location.as_ref())?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        Self::check(&self.plan, Op::Get, location.as_ref())?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        Self::check(&self.plan, Op::Get, location.as_ref())?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let (inner, plan) = (Arc::clone(&self.inner), Arc::clone(&self.plan));
        locations
            .then(move |location| {
                let (inner, plan) = (Arc::clone(&inner), Arc::clone(&plan));
                async move {
                    let location = location?;
                    Self::check(&plan, Op::Delete, location.as_ref())?;
                    let one = futures::stream::once(async move { Ok(location) }).boxed();
                    match inner.delete_stream(one).next().await {
                        Some(r) => r,
                        None => Err(object_store::Error::Generic {
                            store: "FaultyStore",
                            source: "the inner store answered no delete".into(),
                        }),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        match Self::check(&self.plan, Op::List, &at) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        match Self::check(&self.plan, Op::List, &at) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let at = prefix.map(|p| p.to_string()).unwrap_or_default();
        Self::check(&self.plan, Op::List, &at)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        Self::check(&self.plan, Op::Copy, to.as_ref())?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        Self::check(&self.plan, Op::Copy, to.as_ref())?;
        self.inner.rename_opts(from, to, options).await
    }
}
