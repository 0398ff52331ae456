//! `array::text`: PostgreSQL's array literal (`{1,2,NULL,"a b"}`), not Arrow's (`[1, 2, ]`);
//! likewise a float, a timestamp or an interval cast to text (`1e+20`, `2020-01-02 03:04:05`,
//! `1 day`, not Arrow's `1e20`, `2020-01-02T03:04:05`, `1 days`).
//! Elements are written as PostgreSQL writes them (`t`/`f`, floats in shortest form, dates
//! and timestamps in ISO style) and quoted where array_out quotes them; the wire encoder of
//! array columns uses the same quoting.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{to_df, Error};

/// Appends `text` as an element of an array literal (`record` false) or a row literal (`record`
/// true), quoted when it is empty, holds a delimiter, a quote, a backslash or a space, or (in an
/// array) reads as NULL. Inside quotes, an array escapes `"` and `\` with a backslash and a row
/// doubles them, as PostgreSQL's array_out and record_out do.
pub fn push_element(out: &mut String, text: &str, record: bool) {
    let (open, close) = if record { ('(', ')') } else { ('{', '}') };
    let needs_quotes = text.is_empty()
        || (!record && text.eq_ignore_ascii_case("NULL"))
        || text.chars().any(|c| {
            c == open || c == close || matches!(c, ',' | '"' | '\\') || c.is_ascii_whitespace()
        });
    if !needs_quotes {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push(if record { c } else { '\\' });
        }
        out.push(c);
    }
    out.push('"');
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
    )
}

/// Whether a cast of `t` to text needs [`udf`]: Arrow's text differs from PostgreSQL's.
pub(crate) fn needs_pg_text(t: &DataType) -> bool {
    is_list(t)
        || matches!(
            t,
            DataType::Float32
                | DataType::Float64
                | DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _)
                | DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
        )
}

/// The UDF an analyzer rule puts in place of a cast to text of a list, a float, a timestamp
/// or an interval.
pub(crate) fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(ArrayText {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayText {
    signature: Signature,
}

impl ScalarUDFImpl for ArrayText {
    fn name(&self) -> &str {
        "weft_array_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return Err(to_df(Error::internal("array text without an operand")));
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let values = arg.clone().into_array(args.number_rows)?;
        let out = if is_list(values.data_type()) {
            let mut out: Vec<Option<String>> = Vec::with_capacity(values.len());
            for row in 0..values.len() {
                out.push(if values.is_null(row) {
                    None
                } else {
                    let mut text = String::new();
                    list_text(&values, row, &mut text)?;
                    Some(text)
                });
            }
            StringArray::from(out)
        } else {
            // A scalar type whose text Arrow writes otherwise (timestamps, floats).
            let texts = element_texts(&values)?;
            StringArray::from(
                texts
                    .into_iter()
                    .map(|t| match t {
                        Some(Element::Scalar(t) | Element::Nested(t)) => Some(t),
                        None => None,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

/// A list scalar as PostgreSQL's array text (`{1,2,NULL}`); None for other scalars.
pub(crate) fn scalar_list_text(s: &ScalarValue) -> Option<String> {
    let array = match s {
        ScalarValue::List(l) => Arc::clone(l) as ArrayRef,
        ScalarValue::LargeList(l) => Arc::clone(l) as ArrayRef,
        ScalarValue::FixedSizeList(l) => Arc::clone(l) as ArrayRef,
        _ => return None,
    };
    let mut out = String::new();
    list_text(&array, 0, &mut out).ok()?;
    Some(out)
}

/// The list at `row` of `lists` as `{…}` (nested lists as nested braces).
fn list_text(lists: &ArrayRef, row: usize, out: &mut String) -> DfResult<()> {
    let values = match lists.data_type() {
        DataType::List(_) => lists.as_list::<i32>().value(row),
        DataType::LargeList(_) => lists.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => lists.as_fixed_size_list().value(row),
        other => {
            return Err(to_df(Error::internal(format!(
                "array text of a {other} value"
            ))))
        }
    };
    let texts = element_texts(&values)?;
    out.push('{');
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match text {
            None => out.push_str("NULL"),
            Some(Element::Nested(t)) => out.push_str(t),
            Some(Element::Scalar(t)) => push_element(out, t, false),
        }
    }
    out.push('}');
    Ok(())
}

enum Element {
    /// An inner array, already in braces: not quoted.
    Nested(String),
    Scalar(String),
}

/// Each element's text as PostgreSQL's output function writes it.
fn element_texts(values: &ArrayRef) -> DfResult<Vec<Option<Element>>> {
    let n = values.len();
    let each = |f: &dyn Fn(usize) -> DfResult<String>| -> DfResult<Vec<Option<Element>>> {
        (0..n)
            .map(|i| {
                if values.is_null(i) {
                    Ok(None)
                } else {
                    f(i).map(|t| Some(Element::Scalar(t)))
                }
            })
            .collect()
    };
    match values.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => (0..n)
            .map(|i| {
                if values.is_null(i) {
                    return Ok(None);
                }
                let mut t = String::new();
                list_text(values, i, &mut t)?;
                Ok(Some(Element::Nested(t)))
            })
            .collect(),
        DataType::Boolean => {
            let b = values.as_boolean();
            each(&|i| Ok(if b.value(i) { "t" } else { "f" }.to_string()))
        }
        DataType::Float64 => {
            let f = values.as_primitive::<Float64Type>();
            each(&|i| Ok(crate::float::float8(f.value(i))))
        }
        DataType::Float32 => {
            let f = values.as_primitive::<Float32Type>();
            each(&|i| Ok(crate::float::float4(f.value(i))))
        }
        DataType::Decimal128(p, s) => {
            let d = values.as_primitive::<Decimal128Type>();
            each(&|i| {
                Ok(
                    <Decimal128Type as datafusion::arrow::datatypes::DecimalType>::format_decimal(
                        d.value(i),
                        *p,
                        *s,
                    ),
                )
            })
        }
        DataType::Date32 => {
            let d = values.as_primitive::<Date32Type>();
            each(&|i| {
                let mut t = String::new();
                crate::pgtime::format_date(d.value(i), &mut t)
                    .ok_or_else(|| to_df(Error::internal("date out of range")))?;
                Ok(t)
            })
        }
        DataType::Timestamp(TimeUnit::Microsecond, zone) => {
            let ts = values.as_primitive::<TimestampMicrosecondType>();
            each(&|i| {
                let mut t = String::new();
                crate::pgtime::format_timestamp(ts.value(i), zone.is_some(), &mut t)
                    .ok_or_else(|| to_df(Error::internal("timestamp out of range")))?;
                Ok(t)
            })
        }
        DataType::Timestamp(TimeUnit::Nanosecond, zone) => {
            let ts = values.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
            each(&|i| {
                let mut t = String::new();
                crate::pgtime::format_timestamp(
                    ts.value(i).div_euclid(1000),
                    zone.is_some(),
                    &mut t,
                )
                .ok_or_else(|| to_df(Error::internal("timestamp out of range")))?;
                Ok(t)
            })
        }
        DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano) => {
            let iv =
                values.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
            each(&|i| Ok(crate::interval::month_day_nano_text(iv.value(i))))
        }
        _ => {
            let text = cast_with_options(values, &DataType::Utf8, &CastOptions::default())?;
            let text = text.as_string::<i32>();
            each(&|i| Ok(text.value(i).to_string()))
        }
    }
}

/// The items of a one-dimensional array literal (`{1,NULL,"a b","x\"y"}`), None where NULL; None
/// for text that is not such a literal (nested arrays included).
pub fn array_items(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut item = String::new();
        let mut quoted = false;
        if chars.next_if_eq(&'"').is_some() {
            quoted = true;
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
            while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                match c {
                    '{' | '}' | '"' => return None,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
            item.truncate(item.trim_end().len());
            if item.is_empty() {
                return None;
            }
        }
        items.push((quoted || !item.eq_ignore_ascii_case("NULL")).then_some(item));
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}
