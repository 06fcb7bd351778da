//! `quantile(value, q)`: the exact continuous quantile of `value`, with
//! linear interpolation between the two nearest ranks (type 7, as
//! `percentile_cont` / `quantile_cont`). Nulls are ignored; no values give
//! null.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility, lit,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Quantile {
    signature: Signature,
}

impl Quantile {
    fn new() -> Self {
        Self {
            signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

/// The registered function.
pub fn quantile_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::from(Quantile::new())));
    UDAF.clone()
}

/// `quantile(value, q)` as an expression.
pub fn quantile(value: Expr, q: f64) -> Expr {
    quantile_udaf().call(vec![value, lit(q)])
}

impl AggregateUDFImpl for Quantile {
    fn name(&self) -> &str {
        "quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new_list(
            format_state_name(args.name, "values"),
            Field::new_list_field(DataType::Float64, true),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let q = super::constant_f64("quantile", args.exprs, 1)?;
        if !(0.0..=1.0).contains(&q) {
            return Err(DataFusionError::Plan(format!(
                "quantile: q must be between 0 and 1, got {q}"
            )));
        }
        Ok(Box::new(QuantileAccumulator::new(q)))
    }
}

/// Keeps every value; exact, and its state merges by concatenation.
#[derive(Debug)]
pub struct QuantileAccumulator {
    q: f64,
    values: Vec<f64>,
}

impl QuantileAccumulator {
    pub fn new(q: f64) -> Self {
        Self {
            q,
            values: Vec::new(),
        }
    }

    fn extend(&mut self, array: &Float64Array) {
        if array.null_count() == 0 {
            self.values.extend_from_slice(array.values());
        } else {
            self.values.extend(array.iter().flatten());
        }
    }
}

/// The type-7 quantile of `values` (sorted in place). `None` when empty.
pub fn quantile_of(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let h = (values.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let n = values.len();
    let (_, lo_v, rest) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let lo_v = *lo_v;
    if lo + 1 >= n || h == lo as f64 {
        return Some(lo_v);
    }
    let hi_v = rest.iter().copied().min_by(f64::total_cmp).unwrap_or(lo_v);
    Some(lo_v + (h - lo as f64) * (hi_v - lo_v))
}

impl Accumulator for QuantileAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let array = datafusion::arrow::compute::cast(&values[0], &DataType::Float64)?;
        self.extend(array.as_primitive::<Float64Type>());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: &ListArray = states[0].as_list();
        for i in 0..lists.len() {
            if lists.is_valid(i) {
                let inner = lists.value(i);
                self.extend(inner.as_primitive::<Float64Type>());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>(std::iter::once(Some(
            self.values.iter().map(|v| Some(*v)),
        )));
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(quantile_of(&mut self.values, self.q)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(values: &[f64], q: f64) -> Option<f64> {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return None;
        }
        let h = (v.len() - 1) as f64 * q;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(v.len() - 1);
        Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
    }

    fn acc(values: &[Option<f64>], q: f64) -> QuantileAccumulator {
        let mut a = QuantileAccumulator::new(q);
        let array: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
        a.update_batch(&[array]).unwrap();
        a
    }

    /// Splits `values` into `parts` partial accumulators and merges their
    /// states, as DataFusion does across partitions.
    fn merged(parts: &[&[Option<f64>]], q: f64) -> Option<f64> {
        let mut fin = QuantileAccumulator::new(q);
        for p in parts {
            let state = acc(p, q).state().unwrap();
            let arrays: Vec<ArrayRef> = state.iter().map(|s| s.to_array().unwrap()).collect();
            fin.merge_batch(&arrays).unwrap();
        }
        match fin.evaluate().unwrap() {
            ScalarValue::Float64(v) => v,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn merge_empty_single_null() {
        assert_eq!(merged(&[&[], &[]], 0.5), None);
        assert_eq!(merged(&[&[None, None], &[]], 0.5), None);
        assert_eq!(merged(&[&[Some(7.0)], &[]], 0.99), Some(7.0));
        assert_eq!(merged(&[&[], &[None, Some(3.0), None]], 0.1), Some(3.0));
        assert_eq!(merged(&[&[Some(1.0)], &[Some(3.0)]], 0.5), Some(2.0));
        assert_eq!(
            merged(&[&[Some(1.0), Some(2.0), Some(3.0), Some(4.0)]], 0.9),
            Some(3.7)
        );
    }

    #[test]
    fn skewed_partitions_match_brute_force() {
        use rand::{Rng, SeedableRng};
        use rand_distr::{Distribution, LogNormal, Pareto};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let lognormal = LogNormal::new(5.0, 1.2).unwrap();
        let pareto = Pareto::new(1.0, 1.1).unwrap();
        for round in 0..20 {
            let n = rng.random_range(1..5000);
            let values: Vec<Option<f64>> = (0..n)
                .map(|i| {
                    if i % 17 == 0 {
                        None
                    } else if round % 2 == 0 {
                        Some(lognormal.sample(&mut rng))
                    } else {
                        Some(pareto.sample(&mut rng))
                    }
                })
                .collect();
            // Skewed split: one tiny partition, one huge, one empty.
            let cut = n.min(3);
            let parts: [&[Option<f64>]; 3] = [&values[..cut], &values[cut..], &[]];
            let flat: Vec<f64> = values.iter().flatten().copied().collect();
            for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                assert_eq!(merged(&parts, q), brute(&flat, q), "round {round} q {q}");
            }
        }
    }
}
