//! Exact distinct counts that merge: a set of ids as a compressed bitmap
//! (`roaring`) over a per-workspace dictionary that numbers each id string
//! once. Rollups keep the bitmaps; the dictionary is kept durable beside
//! them (by the rollups), so bitmaps built at different times
//! agree on every number.
//!
//! - `idset_state(workspace_id, id)` or `idset_state(state)`: ids or
//!   states in, the union out (`Binary`);
//! - `idset_count(state)`: the number of ids in the union of the states.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, TypeSignature, Volatility,
};
use roaring::RoaringBitmap;

/// One workspace's ids, numbered in the order first seen.
#[derive(Debug, Default)]
struct Numbered {
    /// Each name is stored once, shared by the map and the list.
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
    /// How many of `names` are durable.
    persisted: usize,
}

/// Per-workspace numbering of id strings. Numbers are never reused or
/// changed: an id numbered by a query (for the raw tail) keeps its number
/// when a later build makes it durable.
#[derive(Debug, Default)]
pub struct IdDictionary {
    inner: Mutex<HashMap<String, Numbered>>,
}

impl IdDictionary {
    /// Adds durable names of `workspace` starting at number `start` (which
    /// must be the next number); returns how many were added.
    pub fn load(&self, workspace: &str, start: usize, names: Vec<String>) -> Result<usize, String> {
        let mut all = self.inner.lock().expect("not poisoned");
        let w = all.entry(workspace.to_string()).or_default();
        // A part whose names a merged part holds already (a merge that
        // died before deleting the parts it merged).
        if start + names.len() <= w.names.len() {
            return Ok(0);
        }
        if start != w.names.len() {
            return Err(format!(
                "id dictionary of {workspace:?}: a part starts at {start}, expected {}",
                w.names.len()
            ));
        }
        let n = names.len();
        for name in names {
            let id = w.names.len() as u32;
            let name: Arc<str> = name.into();
            w.ids.insert(Arc::clone(&name), id);
            w.names.push(name);
        }
        w.persisted = w.names.len();
        Ok(n)
    }

    /// The numbers of `ids` (nulls skipped), numbering new ones.
    fn number(
        &self,
        workspace: &str,
        ids: impl Iterator<Item = Option<impl AsRef<str>>>,
    ) -> Result<Vec<u32>> {
        let mut all = self.inner.lock().expect("not poisoned");
        let w = all.entry(workspace.to_string()).or_default();
        let mut out = Vec::new();
        for id in ids.flatten() {
            let id = id.as_ref();
            let n = match w.ids.get(id) {
                Some(n) => *n,
                None => {
                    let n = u32::try_from(w.names.len()).map_err(|_| {
                        DataFusionError::Execution(format!(
                            "more than {} distinct ids in workspace {workspace:?}",
                            u32::MAX
                        ))
                    })?;
                    let name: Arc<str> = id.into();
                    w.ids.insert(Arc::clone(&name), n);
                    w.names.push(name);
                    n
                }
            };
            out.push(n);
        }
        Ok(out)
    }

    /// Names numbered but not yet durable: `(workspace, first number,
    /// names)`.
    pub fn unpersisted(&self) -> Vec<(String, usize, Vec<String>)> {
        let all = self.inner.lock().expect("not poisoned");
        let mut out: Vec<_> = all
            .iter()
            .filter(|(_, w)| w.persisted < w.names.len())
            .map(|(ws, w)| {
                let names = w.names[w.persisted..]
                    .iter()
                    .map(|n| n.to_string())
                    .collect();
                (ws.clone(), w.persisted, names)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Records that `workspace`'s names up to `upto` are durable.
    pub fn mark_persisted(&self, workspace: &str, upto: usize) {
        let mut all = self.inner.lock().expect("not poisoned");
        if let Some(w) = all.get_mut(workspace) {
            w.persisted = w.persisted.max(upto.min(w.names.len()));
        }
    }

    /// Every durable name of `workspace`, in number order (for merging its
    /// parts into one).
    pub fn persisted_names(&self, workspace: &str) -> Vec<String> {
        let all = self.inner.lock().expect("not poisoned");
        all.get(workspace)
            .map(|w| {
                w.names[..w.persisted]
                    .iter()
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids numbered, over all workspaces (for memory reports).
    pub fn len(&self) -> usize {
        let all = self.inner.lock().expect("not poisoned");
        all.values().map(|w| w.names.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    State,
    Count,
}

/// `idset_state` (with the dictionary it numbers ids in) or `idset_count`.
#[derive(Debug)]
pub struct IdSetUdaf {
    output: Output,
    dictionary: Option<Arc<IdDictionary>>,
    signature: Signature,
}

impl PartialEq for IdSetUdaf {
    fn eq(&self, other: &Self) -> bool {
        self.output == other.output
            && match (&self.dictionary, &other.dictionary) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for IdSetUdaf {}

impl std::hash::Hash for IdSetUdaf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.output.hash(state);
        self.dictionary.as_ref().map(Arc::as_ptr).hash(state);
    }
}

/// `idset_state(workspace_id, id)` numbering ids in `dictionary`, also
/// taking `idset_state(state)`.
pub fn idset_state_udaf(dictionary: Arc<IdDictionary>) -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(IdSetUdaf {
        output: Output::State,
        dictionary: Some(dictionary),
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Binary]),
                TypeSignature::Uniform(2, vec![DataType::Utf8]),
            ],
            Volatility::Immutable,
        ),
    }))
}

/// `idset_count(state)`.
pub fn idset_count_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::from(IdSetUdaf {
            output: Output::Count,
            dictionary: None,
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
        }))
    });
    UDAF.clone()
}

pub fn idset_count(state: Expr) -> Expr {
    idset_count_udaf().call(vec![state])
}

impl AggregateUDFImpl for IdSetUdaf {
    fn name(&self) -> &str {
        match self.output {
            Output::State => "idset_state",
            Output::Count => "idset_count",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::State => DataType::Binary,
            Output::Count => DataType::Int64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "ids"),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(IdSetAccumulator {
            output: self.output,
            dictionary: self.dictionary.clone(),
            ids: RoaringBitmap::new(),
        }))
    }
}

#[derive(Debug)]
struct IdSetAccumulator {
    output: Output,
    dictionary: Option<Arc<IdDictionary>>,
    ids: RoaringBitmap,
}

fn to_bytes(ids: &RoaringBitmap) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.serialized_size());
    ids.serialize_into(&mut out).expect("writing to memory");
    out
}

impl IdSetAccumulator {
    fn merge_states(&mut self, states: &ArrayRef) -> Result<()> {
        let states = states.as_binary::<i32>();
        for i in 0..states.len() {
            if states.is_valid(i) {
                let b = RoaringBitmap::deserialize_from(states.value(i))
                    .map_err(|e| DataFusionError::Execution(format!("bad id set state: {e}")))?;
                self.ids |= b;
            }
        }
        Ok(())
    }
}

impl Accumulator for IdSetAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.len() == 1 {
            return self.merge_states(&values[0]);
        }
        let dictionary = self.dictionary.as_ref().ok_or_else(|| {
            DataFusionError::Plan("idset_count takes states, not ids".to_string())
        })?;
        let ws = datafusion::arrow::compute::cast(&values[0], &DataType::Utf8)?;
        let ids = datafusion::arrow::compute::cast(&values[1], &DataType::Utf8)?;
        let (ws, ids) = (ws.as_string::<i32>(), ids.as_string::<i32>());
        // Rows of one group share a workspace; number per run of rows of
        // one workspace all the same.
        let mut start = 0;
        while start < ids.len() {
            if ws.is_null(start) {
                start += 1;
                continue;
            }
            let w = ws.value(start);
            let mut end = start + 1;
            while end < ids.len() && ws.is_valid(end) && ws.value(end) == w {
                end += 1;
            }
            let numbers = dictionary.number(
                w,
                (start..end).map(|i| ids.is_valid(i).then(|| ids.value(i))),
            )?;
            self.ids.extend(numbers);
            start = end;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_states(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(to_bytes(&self.ids)))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.output {
            Output::Count => ScalarValue::Int64(Some(self.ids.len() as i64)),
            Output::State if self.ids.is_empty() => ScalarValue::Binary(None),
            Output::State => ScalarValue::Binary(Some(to_bytes(&self.ids))),
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.ids.serialized_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn numbers_are_stable_and_unions_exact() {
        let d = Arc::new(IdDictionary::default());
        let acc = |ws: Vec<&str>, ids: Vec<Option<&str>>| {
            let mut a = IdSetAccumulator {
                output: Output::State,
                dictionary: Some(Arc::clone(&d)),
                ids: RoaringBitmap::new(),
            };
            let ws: ArrayRef = Arc::new(StringArray::from(ws));
            let ids: ArrayRef = Arc::new(StringArray::from(ids));
            a.update_batch(&[ws, ids]).unwrap();
            a.state().unwrap().remove(0).to_array().unwrap()
        };
        let s1 = acc(vec!["w", "w", "w"], vec![Some("u1"), Some("u2"), None]);
        let s2 = acc(vec!["w", "w"], vec![Some("u2"), Some("u3")]);
        let s3 = acc(vec!["v"], vec![Some("u1")]);
        let mut count = IdSetAccumulator {
            output: Output::Count,
            dictionary: None,
            ids: RoaringBitmap::new(),
        };
        count.merge_batch(&[s1]).unwrap();
        count.update_batch(&[s2]).unwrap();
        assert_eq!(count.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
        // Another workspace numbers its own ids from 0.
        let mut other = IdSetAccumulator {
            output: Output::Count,
            dictionary: None,
            ids: RoaringBitmap::new(),
        };
        other.merge_batch(&[s3]).unwrap();
        assert_eq!(other.ids.iter().collect::<Vec<_>>(), vec![0]);
        let unpersisted = d.unpersisted();
        assert_eq!(
            unpersisted[1],
            ("w".into(), 0, vec!["u1".into(), "u2".into(), "u3".into()])
        );
        d.mark_persisted("w", 3);
        assert_eq!(d.unpersisted().len(), 1);
        assert!(d.load("w", 5, vec!["x".into()]).is_err());
        // A part a merged part already holds is skipped.
        assert_eq!(d.load("w", 1, vec!["u2".into()]), Ok(0));
        assert_eq!(d.load("w", 3, vec!["u4".into()]), Ok(1));
        assert_eq!(d.persisted_names("w").len(), 4);
    }
}
