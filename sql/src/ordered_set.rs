//! PostgreSQL's ordered-set aggregates DataFusion lacks: `mode() WITHIN GROUP (ORDER BY x)` and
//! `percentile_disc(f) WITHIN GROUP (ORDER BY x)`. DataFusion's planner passes the ordered value as
//! the first argument and the ORDER BY's direction to the accumulator; the values are kept and
//! sorted when the group ends.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use crate::error::{to_df, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// The most frequent value (the first in the ordering among equally frequent ones).
    Mode,
    /// The first value whose position in the ordering reaches the fraction.
    PercentileDisc,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct OrderedSet {
    kind: Kind,
    signature: Signature,
}

pub(crate) fn udafs() -> Vec<Arc<AggregateUDF>> {
    [(Kind::Mode, 1), (Kind::PercentileDisc, 2)]
        .into_iter()
        .map(|(kind, args)| {
            Arc::new(AggregateUDF::new_from_impl(OrderedSet {
                kind,
                signature: Signature::any(args, Volatility::Immutable),
            }))
        })
        .collect()
}

impl AggregateUDFImpl for OrderedSet {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Mode => "mode",
            Kind::PercentileDisc => "percentile_disc",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let value = args
            .input_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        Ok(vec![
            Field::new(
                format_state_name(args.name, "values"),
                DataType::List(Arc::new(Field::new_list_field(value, true))),
                true,
            )
            .into(),
            Field::new(
                format_state_name(args.name, "fraction"),
                DataType::Float64,
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let data_type = acc_args
            .expr_fields
            .first()
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let descending = acc_args
            .order_bys
            .first()
            .is_some_and(|s| s.options.descending)
            != acc_args.is_reversed;
        Ok(Box::new(SortedValues {
            kind: self.kind,
            data_type,
            descending,
            values: Vec::new(),
            fraction: None,
        }))
    }
}

#[derive(Debug)]
struct SortedValues {
    kind: Kind,
    data_type: DataType,
    descending: bool,
    values: Vec<ScalarValue>,
    fraction: Option<f64>,
}

impl SortedValues {
    fn take_fraction(&mut self, array: &ArrayRef) -> DfResult<()> {
        if self.fraction.is_some() {
            return Ok(());
        }
        for i in 0..array.len() {
            if array.is_null(i) {
                continue;
            }
            let ScalarValue::Float64(Some(f)) =
                ScalarValue::try_from_array(array, i)?.cast_to(&DataType::Float64)?
            else {
                continue;
            };
            if !(0.0..=1.0).contains(&f) {
                return Err(to_df(Error::NumericOutOfRange {
                    message: format!("percentile value {f} is not between 0 and 1"),
                }));
            }
            self.fraction = Some(f);
            return Ok(());
        }
        Ok(())
    }

    fn push_values(&mut self, array: &ArrayRef) -> DfResult<()> {
        for i in 0..array.len() {
            if !array.is_null(i) {
                self.values.push(ScalarValue::try_from_array(array, i)?);
            }
        }
        Ok(())
    }
}

impl Accumulator for SortedValues {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        // The arguments, then the ORDER BY value DataFusion adds for an order-sensitive aggregate.
        if let Some(v) = values.first() {
            self.push_values(v)?;
        }
        if let (Kind::PercentileDisc, Some(f)) = (self.kind, values.get(1)) {
            self.take_fraction(f)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        if let Some(lists) = states.first() {
            for list in lists.as_list::<i32>().iter().flatten() {
                self.push_values(&list)?;
            }
        }
        if let Some(f) = states.get(1) {
            self.take_fraction(f)?;
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let list = ScalarValue::new_list_nullable(&self.values, &self.data_type);
        Ok(vec![
            ScalarValue::List(list),
            ScalarValue::Float64(self.fraction),
        ])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let null = ScalarValue::try_from(&self.data_type)?;
        let mut values = std::mem::take(&mut self.values);
        values.sort_by(|a, b| {
            let o = a.partial_cmp(b).unwrap_or(Ordering::Equal);
            if self.descending {
                o.reverse()
            } else {
                o
            }
        });
        let out = match self.kind {
            Kind::Mode => {
                let mut best: Option<(&ScalarValue, usize)> = None;
                let mut i = 0;
                while i < values.len() {
                    let run = values[i..].iter().take_while(|v| **v == values[i]).count();
                    if best.is_none_or(|(_, n)| run > n) {
                        best = Some((&values[i], run));
                    }
                    i += run;
                }
                best.map(|(v, _)| v.clone())
            }
            Kind::PercentileDisc => self.fraction.and_then(|f| {
                let n = values.len();
                let position = ((f * n as f64).ceil() as usize).max(1);
                values.get(position - 1).cloned()
            }),
        };
        self.values = values;
        Ok(out.unwrap_or(null))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(ScalarValue::size).sum::<usize>()
    }
}
