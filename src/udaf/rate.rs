//! `rate(value, window_ms, per_ms)`: how many non-null `value`s arrived per
//! `per_ms` over a window of `window_ms` (e.g. events per minute over the
//! last hour: `rate(1, 3600000, 60000)`). The window is the metric's window,
//! not the span of the data, so a quiet window gives a low rate, not null.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, Signature, Volatility, lit,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    signature: Signature,
}

/// The registered function.
pub fn rate_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> = LazyLock::new(|| {
        Arc::new(AggregateUDF::from(Rate {
            signature: Signature::any(3, Volatility::Immutable),
        }))
    });
    UDAF.clone()
}

/// `rate(value, window_ms, per_ms)` as an expression.
pub fn rate(value: Expr, window_ms: i64, per_ms: i64) -> Expr {
    rate_udaf().call(vec![value, lit(window_ms), lit(per_ms)])
}

impl AggregateUDFImpl for Rate {
    fn name(&self) -> &str {
        "rate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "count"),
            DataType::UInt64,
            false,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let window = super::constant_f64("rate", args.exprs, 1)?;
        let per = super::constant_f64("rate", args.exprs, 2)?;
        if window <= 0.0 || per <= 0.0 {
            return Err(DataFusionError::Plan(format!(
                "rate: window ({window}) and unit ({per}) must be positive"
            )));
        }
        Ok(Box::new(RateAccumulator {
            count: 0,
            per_window: per / window,
        }))
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(Some(0.0)))
    }
}

#[derive(Debug)]
pub struct RateAccumulator {
    count: u64,
    per_window: f64,
}

impl RateAccumulator {
    pub fn new(window_ms: f64, per_ms: f64) -> Self {
        Self {
            count: 0,
            per_window: per_ms / window_ms,
        }
    }
}

impl Accumulator for RateAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.count += (values[0].len() - values[0].logical_null_count()) as u64;
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let counts = states[0].as_primitive::<UInt64Type>();
        self.count += counts.iter().flatten().sum::<u64>();
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::UInt64(Some(self.count))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(Some(
            self.count as f64 * self.per_window,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    fn merged(parts: &[Vec<Option<i64>>]) -> f64 {
        let mut fin = RateAccumulator::new(3_600_000.0, 60_000.0);
        for p in parts {
            let mut a = RateAccumulator::new(3_600_000.0, 60_000.0);
            let array: ArrayRef = Arc::new(Int64Array::from(p.clone()));
            a.update_batch(&[array]).unwrap();
            let state: Vec<ArrayRef> = a
                .state()
                .unwrap()
                .iter()
                .map(|s| s.to_array().unwrap())
                .collect();
            fin.merge_batch(&state).unwrap();
        }
        match fin.evaluate().unwrap() {
            ScalarValue::Float64(Some(v)) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merges_counts_per_unit() {
        assert_eq!(merged(&[vec![], vec![]]), 0.0);
        assert_eq!(merged(&[vec![None, None]]), 0.0);
        assert_eq!(merged(&[vec![Some(1)], vec![]]), 1.0 / 60.0);
        // 120 events in one hour is 2 per minute, however they are split.
        let skewed = vec![vec![Some(1); 119], vec![Some(1), None], vec![]];
        assert!((merged(&skewed) - 2.0).abs() < 1e-12);
    }
}
