//! `ratio(numerator, denominator)`: `sum(numerator) / sum(denominator)`,
//! null when the denominator sums to zero. A boolean metric's rate is
//! `ratio(CAST(flag AS DOUBLE), 1)`. Merging adds the sums, so partial
//! ratios are never averaged.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Ratio {
    signature: Signature,
}

/// The registered function.
pub fn ratio_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::from(Ratio {
            signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable),
        }))
    });
    UDAF.clone()
}

/// `ratio(numerator, denominator)` as an expression.
pub fn ratio(numerator: Expr, denominator: Expr) -> Expr {
    ratio_udaf().call(vec![numerator, denominator])
}

impl AggregateUDFImpl for Ratio {
    fn name(&self) -> &str {
        "ratio"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "numerator"),
                DataType::Float64,
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "denominator"),
                DataType::Float64,
                false,
            )),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(RatioAccumulator::default()))
    }
}

#[derive(Debug, Default)]
pub struct RatioAccumulator {
    numerator: f64,
    denominator: f64,
}

impl Accumulator for RatioAccumulator {
    /// Rows where either side is null are skipped as a whole, so a ratio of
    /// two columns is over the rows that have both.
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values[0].as_primitive::<Float64Type>();
        let d = values[1].as_primitive::<Float64Type>();
        for (n, d) in n.iter().zip(d.iter()) {
            if let (Some(n), Some(d)) = (n, d) {
                self.numerator += n;
                self.denominator += d;
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.numerator += states[0]
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .sum::<f64>();
        self.denominator += states[1]
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .sum::<f64>();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Float64(Some(self.numerator)),
            ScalarValue::Float64(Some(self.denominator)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(
            (self.denominator != 0.0).then(|| self.numerator / self.denominator),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    /// One partition's (numerators, denominators).
    type Part = (Vec<Option<f64>>, Vec<Option<f64>>);

    fn merged(parts: &[Part]) -> Option<f64> {
        let mut fin = RatioAccumulator::default();
        for (n, d) in parts {
            let mut a = RatioAccumulator::default();
            let n: ArrayRef = Arc::new(Float64Array::from(n.clone()));
            let d: ArrayRef = Arc::new(Float64Array::from(d.clone()));
            a.update_batch(&[n, d]).unwrap();
            let state: Vec<ArrayRef> = a
                .state()
                .unwrap()
                .iter()
                .map(|s| s.to_array().unwrap())
                .collect();
            fin.merge_batch(&state).unwrap();
        }
        match fin.evaluate().unwrap() {
            ScalarValue::Float64(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merge_edge_cases() {
        assert_eq!(merged(&[(vec![], vec![]), (vec![], vec![])]), None);
        assert_eq!(
            merged(&[(vec![Some(1.0), None], vec![None, Some(1.0)])]),
            None
        );
        assert_eq!(merged(&[(vec![Some(3.0)], vec![Some(4.0)])]), Some(0.75));
        // Skewed: 1/1 in one partition and 0/99 in the other is 1/100, not the
        // mean of the partial ratios.
        let big = (vec![Some(0.0); 99], vec![Some(1.0); 99]);
        assert_eq!(
            merged(&[(vec![Some(1.0)], vec![Some(1.0)]), big, (vec![], vec![])]),
            Some(0.01)
        );
    }
}
