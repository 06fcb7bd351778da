//! Mergeable quantile states for rollups: the values themselves while a
//! group is small (exact), then a DDSketch (`sketches-ddsketch`) whose every
//! rank is within [`ALPHA`] relative of the true value. Quantiles
//! interpolate between the two nearest ranks as `percentile_cont` (and our
//! exact [`super::quantile`]) do, so a rollup's p50/p90/p99 are within
//! `ALPHA` of the exact answer.
//!
//! Two aggregate functions over the serialised state (`Binary`):
//! - `sketch_state(value)` or `sketch_state(state)`: values or states in,
//!   a merged state out (rollup builds, the raw tail, compaction);
//! - `sketch_quantile(state, q)`: states in, the `q` quantile out.
//!
//! DataFusion's own `approx_percentile_cont` state is not used: its
//! t-digest has no error bound.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, TypeSignature, Volatility, lit,
};
use sketches_ddsketch::{Config, DDSketch};

use super::quantile::quantile_of;

/// Relative error of every rank of a sketch.
pub const ALPHA: f64 = 0.005;
/// Groups of at most this many values keep them (exact quantiles).
pub const EXACT_MAX: usize = 64;
/// The crate's defaults, which its decoder assumes: a decoded sketch must
/// have the same configuration to merge with a new one.
const MAX_BINS: u32 = 2048;
const MIN_VALUE: f64 = 1.0e-9;

fn config() -> Config {
    Config::new(ALPHA, MAX_BINS, MIN_VALUE)
}

/// A quantile state: exact values, or a sketch.
#[derive(Clone)]
pub enum QSketch {
    Exact(Vec<f64>),
    Sketch(Box<DDSketch>),
}

impl std::fmt::Debug for QSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QSketch::Exact(v) => write!(f, "Exact({} values)", v.len()),
            QSketch::Sketch(s) => write!(f, "Sketch({} values, {} bins)", s.count(), s.length()),
        }
    }
}

impl Default for QSketch {
    fn default() -> Self {
        QSketch::Exact(Vec::new())
    }
}

const TAG_EXACT: u8 = 0;
/// A sketch in `postcard` (the crate's own serde form: its bins as one
/// run of varints). The crate's Java-compatible encoding was decoded bin
/// by bin, growing and shifting the store each time: decoding and
/// encoding it were a fifth of the dashboard's CPU under load (README).
const TAG_SKETCH: u8 = 2;

impl QSketch {
    pub fn count(&self) -> u64 {
        match self {
            QSketch::Exact(v) => v.len() as u64,
            QSketch::Sketch(s) => s.count() as u64,
        }
    }

    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        match self {
            QSketch::Exact(values) if values.len() < EXACT_MAX => values.push(v),
            QSketch::Exact(values) => {
                let mut s = DDSketch::new(config());
                for x in values.iter() {
                    s.add(*x);
                }
                s.add(v);
                *self = QSketch::Sketch(Box::new(s));
            }
            QSketch::Sketch(s) => s.add(v),
        }
    }

    /// Merges `other` in, taking it whole when this state is empty (no
    /// copy of its bins).
    pub fn merge_owned(&mut self, other: QSketch) -> Result<()> {
        if self.count() == 0 {
            *self = other;
            Ok(())
        } else {
            self.merge(&other)
        }
    }

    pub fn merge(&mut self, other: &QSketch) -> Result<()> {
        match other {
            QSketch::Exact(values) => {
                for v in values {
                    self.add(*v);
                }
            }
            QSketch::Sketch(o) => {
                if let QSketch::Exact(values) = self {
                    let mut s = DDSketch::new(config());
                    for x in values.iter() {
                        s.add(*x);
                    }
                    *self = QSketch::Sketch(Box::new(s));
                }
                if let QSketch::Sketch(s) = self {
                    s.merge(o).map_err(|e| {
                        DataFusionError::Execution(format!("merging quantile sketches: {e}"))
                    })?;
                }
            }
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            QSketch::Exact(values) => {
                let mut out = Vec::with_capacity(1 + 8 * values.len());
                out.push(TAG_EXACT);
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out
            }
            QSketch::Sketch(s) => {
                let out = vec![TAG_SKETCH];
                postcard::to_extend(s.as_ref(), out).expect("a sketch serialises to memory")
            }
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| DataFusionError::Execution(format!("bad quantile state: {why}"));
        match bytes.split_first() {
            None => Ok(QSketch::default()),
            Some((&TAG_EXACT, rest)) => {
                if rest.len() % 8 != 0 {
                    return Err(bad("truncated values"));
                }
                Ok(QSketch::Exact(
                    rest.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                ))
            }
            Some((&TAG_SKETCH, rest)) => {
                let s: DDSketch = postcard::from_bytes(rest).map_err(|e| bad(&e.to_string()))?;
                Ok(QSketch::Sketch(Box::new(s)))
            }
            Some(_) => Err(bad("unknown kind")),
        }
    }

    /// The type-7 quantile (as `percentile_cont`): exact for exact states,
    /// within [`ALPHA`] relative for sketches.
    pub fn quantile(&mut self, q: f64) -> Option<f64> {
        match self {
            QSketch::Exact(values) => quantile_of(values, q),
            QSketch::Sketch(s) => {
                let n = s.count();
                if n == 0 {
                    return None;
                }
                let (min, max) = (s.min()?, s.max()?);
                // The value of rank `r` (0-based): the sketch answers the
                // rank `floor(q' * (n - 1))`, so ask at the middle of it.
                let at = |r: usize| -> Option<f64> {
                    if r == 0 {
                        return Some(min);
                    }
                    if r >= n - 1 {
                        return Some(max);
                    }
                    let q = (r as f64 + 0.5) / (n - 1) as f64;
                    s.quantile(q).ok().flatten()
                };
                let h = q * (n - 1) as f64;
                let lo = h.floor() as usize;
                let lo_v = at(lo)?;
                let v = if h == lo as f64 || lo + 1 >= n {
                    lo_v
                } else {
                    let hi_v = at(lo + 1)?;
                    lo_v + (h - lo as f64) * (hi_v - lo_v)
                };
                Some(v.clamp(min, max))
            }
        }
    }
}

/// What a sketch function returns.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Output {
    State,
    Quantile,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SketchUdaf {
    name: &'static str,
    output: Output,
    signature: Signature,
}

/// `sketch_state(value | state)`: the merged state.
pub fn sketch_state_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::from(SketchUdaf {
            name: "sketch_state",
            output: Output::State,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Binary]),
                    TypeSignature::Uniform(1, vec![DataType::Float64]),
                ],
                Volatility::Immutable,
            ),
        }))
    });
    UDAF.clone()
}

/// `sketch_quantile(state, q)`: the quantile of the merged states.
pub fn sketch_quantile_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::from(SketchUdaf {
            name: "sketch_quantile",
            output: Output::Quantile,
            signature: Signature::exact(
                vec![DataType::Binary, DataType::Float64],
                Volatility::Immutable,
            ),
        }))
    });
    UDAF.clone()
}

pub fn sketch_state(value: Expr) -> Expr {
    sketch_state_udaf().call(vec![value])
}

pub fn sketch_quantile(state: Expr, q: f64) -> Expr {
    sketch_quantile_udaf().call(vec![state, lit(q)])
}

impl AggregateUDFImpl for SketchUdaf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::State => DataType::Binary,
            Output::Quantile => DataType::Float64,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "sketch"),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let q = match self.output {
            Output::State => None,
            Output::Quantile => {
                let q = super::constant_f64(self.name, args.exprs, 1)?;
                if !(0.0..=1.0).contains(&q) {
                    return Err(DataFusionError::Plan(format!(
                        "{}: q must be between 0 and 1, got {q}",
                        self.name
                    )));
                }
                Some(q)
            }
        };
        Ok(Box::new(SketchAccumulator {
            q,
            single: None,
            sketch: QSketch::default(),
        }))
    }
}

/// Merges states lazily: a group's only state (a rollup row alone in its
/// group, the common case when a query's buckets are the rollup's) is kept
/// as it came and passed on or decoded once, instead of being decoded,
/// re-encoded as a partial state and decoded again by the final
/// aggregate. Decoding sketches was a third of a dashboard request's CPU.
#[derive(Debug)]
struct SketchAccumulator {
    /// `Some` for `sketch_quantile`.
    q: Option<f64>,
    /// The first state seen, undecoded, while it is the only one.
    single: Option<Vec<u8>>,
    /// Everything else seen, merged.
    sketch: QSketch,
}

impl SketchAccumulator {
    /// Decodes the kept single state into `sketch`.
    fn settle(&mut self) -> Result<()> {
        if let Some(bytes) = self.single.take() {
            self.sketch.merge_owned(QSketch::from_bytes(&bytes)?)?;
        }
        Ok(())
    }

    fn merge_states(&mut self, states: &ArrayRef) -> Result<()> {
        let states = states.as_binary::<i32>();
        for i in 0..states.len() {
            if !states.is_valid(i) {
                continue;
            }
            if self.single.is_none() && self.sketch.count() == 0 {
                self.single = Some(states.value(i).to_vec());
            } else {
                self.settle()?;
                self.sketch
                    .merge_owned(QSketch::from_bytes(states.value(i))?)?;
            }
        }
        Ok(())
    }

    /// The merged state, encoded (the single one as it came).
    fn encoded(&mut self) -> Option<Vec<u8>> {
        if self.sketch.count() == 0 {
            return self.single.clone();
        }
        // `sketch` is non-empty, so a single state was settled already.
        Some(self.sketch.to_bytes())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values[0].data_type() {
            DataType::Binary => self.merge_states(&values[0]),
            _ => {
                self.settle()?;
                let v = datafusion::arrow::compute::cast(&values[0], &DataType::Float64)?;
                for x in v.as_primitive::<Float64Type>().iter().flatten() {
                    self.sketch.add(x);
                }
                Ok(())
            }
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_states(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(
            self.encoded()
                .unwrap_or_else(|| QSketch::default().to_bytes()),
        ))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(match self.q {
            Some(q) => {
                self.settle()?;
                ScalarValue::Float64(self.sketch.quantile(q))
            }
            None => {
                // No value: no state (null), as `sum` of nothing is null.
                // (An encoded state holds a value past its tag byte.)
                ScalarValue::Binary(self.encoded().filter(|b| b.len() > 1))
            }
        })
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.single.as_ref().map_or(0, Vec::capacity)
            + match &self.sketch {
                QSketch::Exact(v) => v.capacity() * 8,
                QSketch::Sketch(s) => s.length() * 16 + 256,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, LogNormal};

    fn exact(values: &[f64], q: f64) -> f64 {
        let mut v = values.to_vec();
        quantile_of(&mut v, q).unwrap()
    }

    #[test]
    fn small_groups_are_exact_and_large_ones_within_alpha() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let dist = LogNormal::new(5.0, 1.0).unwrap();
        for n in [1usize, 2, 10, 64, 65, 500, 20_000] {
            let values: Vec<f64> = (0..n).map(|_| dist.sample(&mut rng)).collect();
            // Split into parts, serialise each, merge: as rollup rows do.
            let mut merged = QSketch::default();
            let mut rest = values.as_slice();
            while !rest.is_empty() {
                let take = rng.random_range(1..=rest.len().min(300));
                let mut part = QSketch::default();
                for v in &rest[..take] {
                    part.add(*v);
                }
                let bytes = part.to_bytes();
                merged.merge(&QSketch::from_bytes(&bytes).unwrap()).unwrap();
                rest = &rest[take..];
            }
            let mut merged = QSketch::from_bytes(&merged.to_bytes()).unwrap();
            assert_eq!(merged.count(), n as u64);
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 1.0] {
                let want = exact(&values, q);
                let got = merged.quantile(q).unwrap();
                if n <= EXACT_MAX {
                    assert_eq!(got, want, "n {n} q {q}");
                } else {
                    let rel = (got - want).abs() / want.abs();
                    assert!(rel <= ALPHA + 1e-12, "n {n} q {q}: {got} vs {want} ({rel})");
                }
            }
        }
    }

    fn state_of(values: impl IntoIterator<Item = f64>) -> Vec<u8> {
        let mut s = QSketch::default();
        values.into_iter().for_each(|v| s.add(v));
        s.to_bytes()
    }

    fn binary(states: &[Option<&[u8]>]) -> ArrayRef {
        Arc::new(datafusion::arrow::array::BinaryArray::from(states.to_vec()))
    }

    #[test]
    fn a_single_state_passes_through_and_more_merge() {
        let big = state_of((1..=500).map(f64::from));
        let small = state_of([7.0, 3.0]);
        let acc = || SketchAccumulator {
            q: None,
            single: None,
            sketch: QSketch::default(),
        };
        // Alone (nulls around it): the same bytes, as partial and final.
        let mut a = acc();
        a.merge_batch(&[binary(&[None, Some(&big), None])]).unwrap();
        assert_eq!(
            a.state().unwrap(),
            vec![ScalarValue::Binary(Some(big.clone()))]
        );
        assert_eq!(
            a.evaluate().unwrap(),
            ScalarValue::Binary(Some(big.clone()))
        );
        // Two states, in two batches: merged, every value counted.
        let mut a = acc();
        a.merge_batch(&[binary(&[Some(&big)])]).unwrap();
        a.merge_batch(&[binary(&[Some(&small)])]).unwrap();
        let ScalarValue::Binary(Some(b)) = a.evaluate().unwrap() else {
            panic!("a state")
        };
        assert_eq!(QSketch::from_bytes(&b).unwrap().count(), 502);
        // A state, then values.
        let mut a = acc();
        a.merge_batch(&[binary(&[Some(&small)])]).unwrap();
        a.update_batch(&[Arc::new(datafusion::arrow::array::Float64Array::from(
            vec![1.0],
        ))])
        .unwrap();
        let ScalarValue::Binary(Some(b)) = a.evaluate().unwrap() else {
            panic!("a state")
        };
        assert_eq!(QSketch::from_bytes(&b).unwrap().quantile(0.0), Some(1.0));
        assert_eq!(QSketch::from_bytes(&b).unwrap().count(), 3);
        // Nothing: no state.
        let mut a = acc();
        a.merge_batch(&[binary(&[None])]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Binary(None));
        // The quantile of a single state, decoded once.
        let mut a = SketchAccumulator {
            q: Some(0.5),
            ..acc()
        };
        a.merge_batch(&[binary(&[Some(&small)])]).unwrap();
        assert_eq!(a.evaluate().unwrap(), ScalarValue::Float64(Some(5.0)));
    }

    #[test]
    fn empty_and_bad_states() {
        assert_eq!(QSketch::default().quantile(0.5), None);
        assert!(QSketch::from_bytes(&[TAG_EXACT, 1, 2]).is_err());
        assert!(QSketch::from_bytes(&[9]).is_err());
    }
}
