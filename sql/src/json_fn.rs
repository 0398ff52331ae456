//! PostgreSQL's JSON functions: `to_json`/`to_jsonb` of any value, `json(b)_build_object` and
//! `_array`, the finishing steps of `json(b)_agg` and `json(b)_object_agg` (rewrite.rs turns
//! those into `array_agg` of each value's JSON, so that ORDER BY, DISTINCT and FILTER work as
//! for any aggregate), and the jsonb processing functions and operators (`#>`, `#>>`, `||`,
//! `-`, `jsonb_set`, `jsonb_typeof`, …).
//!
//! Values are built as [`J`], which keeps a number's text (a numeric's scale) and embedded json
//! text as they are; json output is printed as PostgreSQL's json functions print it (each has its
//! own spacing), jsonb output in jsonb's canonical form (json.rs).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, Signature, TypeSignature, Volatility,
};
use serde_json::Value as Json;

use crate::error::{to_df, Error, Result};
use crate::pgtype::PgType;

/// A JSON value under construction.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum J {
    Null,
    Bool(bool),
    /// A number as its text (`1.50` keeps its scale).
    Num(String),
    Str(String),
    /// json or jsonb text embedded as it is.
    Raw(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn bad_json(e: impl std::fmt::Display) -> Error {
    Error::InvalidTextRepresentation {
        message: format!("invalid input syntax for type json: {e}"),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidParameterValue {
        message: message.into(),
    }
}

/// A number as jsonb prints it: integers as they are, others as the shortest decimal that
/// reads back (`1e2` is `100`, as jsonb's numeric shows it).
pub(crate) fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() => format!("{f}"),
        _ => n.to_string(),
    }
}

pub(crate) fn from_serde(v: &Json) -> J {
    match v {
        Json::Null => J::Null,
        Json::Bool(b) => J::Bool(*b),
        Json::Number(n) => J::Num(number_text(n)),
        Json::String(s) => J::Str(s.clone()),
        Json::Array(a) => J::Arr(a.iter().map(from_serde).collect()),
        Json::Object(m) => J::Obj(m.iter().map(|(k, v)| (k.clone(), from_serde(v))).collect()),
    }
}

/// Parses json text.
pub(crate) fn parse(text: &str) -> Result<J> {
    let v: Json = serde_json::from_str(text).map_err(bad_json)?;
    Ok(from_serde(&v))
}

fn push_string(out: &mut String, s: &str) {
    out.push_str(&Json::String(s.to_string()).to_string());
}

/// Writes a container: `open`, the items with `comma` between them (an object's keys quoted and
/// followed by `colon`), `close`. Each json-producing function has its own spacing.
fn container<'a>(
    out: &mut String,
    (open, close): (&str, &str),
    (comma, colon): (&str, &str),
    items: impl Iterator<Item = (Option<&'a str>, &'a J)>,
    value: fn(&J, &mut String),
) {
    out.push_str(open);
    for (i, (key, v)) in items.enumerate() {
        if i > 0 {
            out.push_str(comma);
        }
        if let Some(key) = key {
            push_string(out, key);
            out.push_str(colon);
        }
        value(v, out);
    }
    out.push_str(close);
}

impl J {
    /// Resolves embedded text into values (for jsonb output and processing).
    fn resolved(self) -> Result<J> {
        Ok(match self {
            J::Raw(text) => parse(&text)?,
            J::Arr(items) => J::Arr(items.into_iter().map(J::resolved).collect::<Result<_>>()?),
            J::Obj(pairs) => J::Obj(
                pairs
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.resolved()?)))
                    .collect::<Result<_>>()?,
            ),
            other => other,
        })
    }

    /// jsonb's canonical form: an object's keys unique (the last wins) and ordered by length,
    /// then bytes; `": "` and `", "` between items.
    fn write_jsonb(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => push_string(out, s),
            J::Raw(text) => match parse(text) {
                Ok(v) => v.write_jsonb(out),
                Err(_) => push_string(out, text),
            },
            J::Arr(items) => container(
                out,
                ("[", "]"),
                (", ", ""),
                items.iter().map(|v| (None, v)),
                J::write_jsonb,
            ),
            J::Obj(pairs) => {
                let mut unique: Vec<&(String, J)> = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    match unique.iter().position(|p| p.0 == pair.0) {
                        Some(i) => unique[i] = pair,
                        None => unique.push(pair),
                    }
                }
                unique.sort_by(|a, b| {
                    a.0.len()
                        .cmp(&b.0.len())
                        .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
                });
                container(
                    out,
                    ("{", "}"),
                    (", ", ": "),
                    unique.into_iter().map(|(k, v)| (Some(k.as_str()), v)),
                    J::write_jsonb,
                )
            }
        }
    }

    pub(crate) fn jsonb(&self) -> String {
        let mut out = String::new();
        self.write_jsonb(&mut out);
        out
    }

    /// `to_json`'s form: no spaces, embedded json as it is.
    fn write_json(&self, out: &mut String) {
        match self {
            J::Raw(text) => out.push_str(text),
            J::Arr(items) => container(
                out,
                ("[", "]"),
                (",", ""),
                items.iter().map(|v| (None, v)),
                J::write_json,
            ),
            J::Obj(pairs) => container(
                out,
                ("{", "}"),
                (",", ":"),
                pairs.iter().map(|(k, v)| (Some(k.as_str()), v)),
                J::write_json,
            ),
            scalar => scalar.write_jsonb(out),
        }
    }

    fn json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn type_name(&self) -> Result<&'static str> {
        Ok(match self {
            J::Null => "null",
            J::Bool(_) => "boolean",
            J::Num(_) => "number",
            J::Str(_) => "string",
            J::Arr(_) => "array",
            J::Obj(_) => "object",
            J::Raw(text) => return parse(text)?.type_name(),
        })
    }

    /// `->>`'s text of a value: strings unquoted, null as SQL NULL.
    fn text(&self) -> Option<String> {
        match self {
            J::Null => None,
            J::Str(s) => Some(s.clone()),
            other => Some(other.jsonb()),
        }
    }
}

/// Whether the fields are DataFusion's names for a ROW's (`c0`, `c1`, …): PostgreSQL's are
/// `f1`, `f2`, ….
fn row_names(fields: &[FieldRef]) -> bool {
    fields
        .iter()
        .enumerate()
        .all(|(i, f)| f.name() == &format!("c{i}"))
}

/// One Arrow value as JSON, the way PostgreSQL's `to_json` (or, with `jsonb`, `to_jsonb`)
/// converts a value of its type.
pub(crate) fn cell(array: &dyn Array, row: usize, pg: PgType, jsonb: bool) -> Result<J> {
    if array.is_null(row) || matches!(array.data_type(), DataType::Null) {
        return Ok(J::Null);
    }
    macro_rules! num {
        ($t:ty) => {
            J::Num(array.as_primitive::<$t>().value(row).to_string())
        };
    }
    // jsonb holds a float as numeric: its shortest digits, without an exponent.
    let float = |finite: bool, text: String, plain: String| {
        if !finite {
            J::Str(text)
        } else if jsonb {
            J::Num(plain)
        } else {
            J::Num(text)
        }
    };
    let text = |s: String| J::Str(s);
    Ok(match array.data_type() {
        DataType::Boolean => J::Bool(array.as_boolean().value(row)),
        DataType::Int8 => num!(Int8Type),
        DataType::Int16 => num!(Int16Type),
        DataType::Int32 => num!(Int32Type),
        DataType::Int64 => num!(Int64Type),
        DataType::UInt8 => num!(UInt8Type),
        DataType::UInt16 => num!(UInt16Type),
        DataType::UInt32 => num!(UInt32Type),
        DataType::UInt64 => num!(UInt64Type),
        DataType::Float32 => {
            let f = array.as_primitive::<Float32Type>().value(row);
            float(f.is_finite(), crate::float::float4(f), format!("{f}"))
        }
        DataType::Float64 => {
            let f = array.as_primitive::<Float64Type>().value(row);
            float(f.is_finite(), crate::float::float8(f), format!("{f}"))
        }
        DataType::Decimal128(_, scale) => J::Num(crate::convert::format_decimal(
            array
                .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
                .value(row),
            *scale,
        )),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
                DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
                _ => array.as_string_view().value(row).to_string(),
            };
            match pg {
                PgType::Json | PgType::Jsonb => J::Raw(s),
                _ => J::Str(s),
            }
        }
        DataType::Binary => text(hex(array.as_binary::<i32>().value(row))),
        DataType::LargeBinary => text(hex(array.as_binary::<i64>().value(row))),
        DataType::FixedSizeBinary(16) if pg == PgType::Uuid => {
            let b = array.as_fixed_size_binary().value(row);
            text(
                uuid::Uuid::from_slice(b)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| hex(b)),
            )
        }
        DataType::FixedSizeBinary(_) => text(hex(array.as_fixed_size_binary().value(row))),
        DataType::Date32 => {
            let mut s = String::new();
            crate::pgtime::format_date(array.as_primitive::<Date32Type>().value(row), &mut s)
                .ok_or_else(|| out_of_range("date"))?;
            text(s)
        }
        DataType::Timestamp(unit, tz) => {
            let micros = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .checked_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .checked_mul(1_000),
                TimeUnit::Microsecond => {
                    Some(array.as_primitive::<TimestampMicrosecondType>().value(row))
                }
                TimeUnit::Nanosecond => Some(
                    array
                        .as_primitive::<TimestampNanosecondType>()
                        .value(row)
                        .div_euclid(1_000),
                ),
            }
            .ok_or_else(|| out_of_range("timestamp"))?;
            let zone = pg == PgType::TimestampTz || (pg != PgType::Timestamp && tz.is_some());
            let mut s = String::new();
            crate::pgtime::format_timestamp(micros, zone, &mut s)
                .ok_or_else(|| out_of_range("timestamp"))?;
            if !s.ends_with("infinity") {
                s = s.replacen(' ', "T", 1);
                if zone {
                    if let Some(bare) = s.strip_suffix("+00") {
                        s = format!("{bare}+00:00");
                    }
                }
            }
            text(s)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            let mut s = String::new();
            crate::interval::format_time(
                array.as_primitive::<Time64MicrosecondType>().value(row),
                &mut s,
            )
            .ok_or_else(|| out_of_range("time"))?;
            text(s)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            text(crate::interval::month_day_nano_text(v))
        }
        DataType::List(child) => {
            let items = array.as_list::<i32>().value(row);
            list(items.as_ref(), child, jsonb)?
        }
        DataType::LargeList(child) => {
            let items = array.as_list::<i64>().value(row);
            list(items.as_ref(), child, jsonb)?
        }
        DataType::FixedSizeList(child, _) => {
            let items = array.as_fixed_size_list().value(row);
            list(items.as_ref(), child, jsonb)?
        }
        DataType::Struct(fields) => {
            let record = array.as_struct();
            let renamed = row_names(fields);
            let mut pairs = Vec::with_capacity(fields.len());
            for (i, (field, column)) in fields.iter().zip(record.columns()).enumerate() {
                let name = if renamed {
                    format!("f{}", i + 1)
                } else {
                    field.name().clone()
                };
                pairs.push((
                    name,
                    cell(column.as_ref(), row, PgType::from_field(field), jsonb)?,
                ));
            }
            J::Obj(pairs)
        }
        _ => {
            let one = array.slice(row, 1);
            let as_text = datafusion::arrow::compute::cast(&one, &DataType::Utf8)
                .map_err(|e| Error::internal(e.to_string()))?;
            text(as_text.as_string::<i32>().value(0).to_string())
        }
    })
}

fn list(items: &dyn Array, child: &Field, jsonb: bool) -> Result<J> {
    let pg = PgType::from_field(child);
    Ok(J::Arr(
        (0..items.len())
            .map(|i| cell(items, i, pg, jsonb))
            .collect::<Result<_>>()?,
    ))
}

fn out_of_range(what: &str) -> Error {
    Error::Data {
        code: "22008",
        message: format!("{what} out of range"),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn udf(
    name: &'static str,
    signature: Signature,
    ret: DataType,
    pg: Option<PgType>,
    body: impl Fn(&ScalarFunctionArgs) -> DfResult<ColumnarValue> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    crate::functions::udf(name, signature, ret, pg, Arc::new(body))
}

fn arrays(args: &ScalarFunctionArgs) -> DfResult<Vec<ArrayRef>> {
    args.args
        .iter()
        .map(|a| a.clone().into_array(args.number_rows))
        .collect()
}

fn pg_of(args: &ScalarFunctionArgs, i: usize) -> PgType {
    args.arg_fields
        .get(i)
        .map(|f| PgType::from_field(f))
        .unwrap_or(PgType::Unknown)
}

fn texts(values: Vec<Option<String>>) -> DfResult<ColumnarValue> {
    Ok(ColumnarValue::Array(Arc::new(StringArray::from(values))))
}

/// A one-argument function giving text for each row: NULL for a NULL argument, else `f` of
/// the argument's array, the row, and the argument's PostgreSQL type.
fn unary(
    name: &'static str,
    pg: Option<PgType>,
    f: impl Fn(&dyn Array, usize, PgType) -> Result<String> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    udf(
        name,
        Signature::any(1, Volatility::Immutable),
        DataType::Utf8,
        pg,
        move |args| {
            let a = &arrays(args)?[0];
            let arg_pg = pg_of(args, 0);
            let mut out = Vec::with_capacity(a.len());
            for row in 0..a.len() {
                out.push(if a.is_null(row) {
                    None
                } else {
                    Some(f(a.as_ref(), row, arg_pg).map_err(to_df)?)
                });
            }
            texts(out)
        },
    )
}

fn json_type(jsonb: bool) -> Option<PgType> {
    Some(if jsonb { PgType::Jsonb } else { PgType::Json })
}

/// `to_json(x)`, `to_jsonb(x)`, `row_to_json(x)`.
fn to_json(name: &'static str, jsonb: bool) -> Arc<ScalarUDF> {
    unary(name, json_type(jsonb), move |a, row, pg| {
        let j = cell(a, row, pg, jsonb)?;
        Ok(if jsonb {
            j.resolved()?.jsonb()
        } else {
            j.json()
        })
    })
}

/// The element of `json_agg`: its `to_json` text, after `"\n "` when it is an array or a row
/// (json_agg's separator before those), NULL as SQL NULL.
fn json_agg_element() -> Arc<ScalarUDF> {
    unary("weft_json_agg_element", None, |a, row, pg| {
        let text = cell(a, row, pg, false)?.json();
        Ok(match a.data_type() {
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_) => format!("\n {text}"),
            _ => text,
        })
    })
}

/// The strings of a list value (`array_agg`'s result); None for a NULL list.
fn list_strings(a: &dyn Array, row: usize) -> Result<Option<Vec<Option<String>>>> {
    if a.is_null(row) {
        return Ok(None);
    }
    let items = a.as_list::<i32>().value(row);
    let items = datafusion::arrow::compute::cast(&items, &DataType::Utf8)
        .map_err(|e| Error::internal(e.to_string()))?;
    let items = items.as_string::<i32>();
    Ok(Some(
        items
            .iter()
            .map(|v| v.map(str::to_string))
            .collect::<Vec<_>>(),
    ))
}

/// `json_agg`'s (and `jsonb_agg`'s) result from the `array_agg` of the elements' JSON.
fn agg_finish(name: &'static str, jsonb: bool) -> Arc<ScalarUDF> {
    unary(name, json_type(jsonb), |a, row, _| {
        let items = list_strings(a, row)?.unwrap_or_default();
        let mut s = String::from("[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            match item {
                None => s.push_str("null"),
                Some(t) if i == 0 => s.push_str(t.strip_prefix("\n ").unwrap_or(t)),
                Some(t) => s.push_str(t),
            }
        }
        s.push(']');
        Ok(s)
    })
}

/// An object key from the `to_json` text of the key's value: PostgreSQL's text of a scalar.
fn key_of(text: Option<&str>, null_message: &str) -> Result<String> {
    let Some(text) = text else {
        return Err(invalid(null_message));
    };
    match parse(text)? {
        J::Null => Err(invalid(null_message)),
        J::Str(s) => Ok(s),
        J::Arr(_) | J::Obj(_) => Err(invalid(
            "key value must be scalar, not array, composite, or json",
        )),
        other => Ok(other.jsonb()),
    }
}

/// `json_object_agg` / `jsonb_object_agg` from the `array_agg` of `{k: to_json(key), v:
/// to_json(value)}`.
fn object_agg_finish(name: &'static str, jsonb: bool) -> Arc<ScalarUDF> {
    unary(name, json_type(jsonb), move |a, row, _| {
        let pairs = a.as_list::<i32>().value(row);
        let pairs = pairs.as_struct();
        let cast = |c: &ArrayRef| {
            datafusion::arrow::compute::cast(c, &DataType::Utf8)
                .map_err(|e| Error::internal(e.to_string()))
        };
        let (keys, values) = (cast(pairs.column(0))?, cast(pairs.column(1))?);
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        let mut obj = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            let key = (!keys.is_null(i)).then(|| keys.value(i));
            let key = key_of(key, "field name must not be null")?;
            let value = if values.is_null(i) {
                J::Null
            } else {
                J::Raw(values.value(i).to_string())
            };
            obj.push((key, value));
        }
        if jsonb {
            return Ok(J::Obj(obj).resolved()?.jsonb());
        }
        let mut s = String::new();
        container(
            &mut s,
            ("{ ", " }"),
            (", ", " : "),
            obj.iter().map(|(k, v)| (Some(k.as_str()), v)),
            J::write_json,
        );
        Ok(s)
    })
}

fn variadic() -> Signature {
    Signature::one_of(
        vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
        Volatility::Stable,
    )
}

/// `json(b)_build_object(k, v, …)` and `json(b)_build_array(v, …)`.
fn build(name: &'static str, object: bool, jsonb: bool) -> Arc<ScalarUDF> {
    let pg = if jsonb { PgType::Jsonb } else { PgType::Json };
    udf(name, variadic(), DataType::Utf8, Some(pg), move |args| {
        let columns = arrays(args)?;
        if object && columns.len() % 2 != 0 {
            return Err(to_df(invalid(
                "argument list must have even number of elements",
            )));
        }
        let pgs: Vec<PgType> = (0..columns.len()).map(|i| pg_of(args, i)).collect();
        let rows = args.number_rows.max(1);
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut values = Vec::with_capacity(columns.len());
            for (c, pg) in columns.iter().zip(&pgs) {
                values.push(cell(c.as_ref(), row, *pg, jsonb).map_err(to_df)?);
            }
            let text = if object {
                let mut pairs = Vec::with_capacity(values.len() / 2);
                let mut it = values.into_iter().enumerate();
                while let (Some((i, k)), Some((_, v))) = (it.next(), it.next()) {
                    let key = match k {
                        J::Null => {
                            return Err(to_df(invalid(format!(
                                "argument {} cannot be null",
                                i + 1
                            ))))
                        }
                        J::Str(s) => s,
                        J::Arr(_) | J::Obj(_) | J::Raw(_) => {
                            return Err(to_df(invalid(
                                "key value must be scalar, not array, composite, or json",
                            )))
                        }
                        other => other.jsonb(),
                    };
                    pairs.push((key, v));
                }
                if jsonb {
                    J::Obj(pairs).resolved().map_err(to_df)?.jsonb()
                } else {
                    let mut s = String::new();
                    container(
                        &mut s,
                        ("{", "}"),
                        (", ", " : "),
                        pairs.iter().map(|(k, v)| (Some(k.as_str()), v)),
                        J::write_json,
                    );
                    s
                }
            } else if jsonb {
                J::Arr(values).resolved().map_err(to_df)?.jsonb()
            } else {
                let mut s = String::new();
                container(
                    &mut s,
                    ("[", "]"),
                    (", ", ""),
                    values.iter().map(|v| (None, v)),
                    J::write_json,
                );
                s
            };
            out.push(Some(text));
        }
        texts(out)
    })
}

/// A function of json documents (argument 0) and other arguments, row by row; a NULL
/// document (or a NULL argument, unless `nulls`) gives NULL.
fn doc_fn(
    name: &'static str,
    signature: Signature,
    ret: DataType,
    pg: Option<PgType>,
    f: impl Fn(J, &[ArrayRef], usize) -> Result<Option<Out>> + Send + Sync + 'static,
) -> Arc<ScalarUDF> {
    let ret2 = ret.clone();
    udf(name, signature, ret, pg, move |args| {
        let columns = arrays(args)?;
        let docs = datafusion::arrow::compute::cast(&columns[0], &DataType::Utf8)?;
        let docs = docs.as_string::<i32>();
        let mut out = Vec::with_capacity(docs.len());
        for row in 0..docs.len() {
            if docs.is_null(row) || columns[1..].iter().any(|c| c.is_null(row)) {
                out.push(None);
                continue;
            }
            let doc = parse(docs.value(row)).map_err(to_df)?;
            out.push(f(doc, &columns[1..], row).map_err(to_df)?);
        }
        Ok(ColumnarValue::Array(collect(out, &ret2)?))
    })
}

/// What a document function returns for one row.
enum Out {
    Text(String),
    Int(i32),
    List(Vec<Option<String>>),
}

fn collect(values: Vec<Option<Out>>, ret: &DataType) -> DfResult<ArrayRef> {
    Ok(match ret {
        DataType::Int32 => Arc::new(
            values
                .into_iter()
                .map(|v| match v {
                    Some(Out::Int(i)) => Some(i),
                    _ => None,
                })
                .collect::<Int32Array>(),
        ),
        DataType::List(child) => {
            let mut offsets = vec![0i32];
            let mut items: Vec<Option<String>> = Vec::new();
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    Some(Out::List(l)) => {
                        items.extend(l);
                        valid.push(true);
                    }
                    _ => valid.push(false),
                }
                offsets
                    .push(i32::try_from(items.len()).map_err(|e| to_df(invalid(e.to_string())))?);
            }
            Arc::new(ListArray::try_new(
                Arc::clone(child),
                OffsetBuffer::new(offsets.into()),
                Arc::new(StringArray::from(items)),
                Some(valid.into()),
            )?)
        }
        _ => Arc::new(
            values
                .into_iter()
                .map(|v| match v {
                    Some(Out::Text(s)) => Some(s),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
    })
}

fn text_at(columns: &[ArrayRef], i: usize, row: usize) -> Result<String> {
    let c = datafusion::arrow::compute::cast(&columns[i], &DataType::Utf8)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(c.as_string::<i32>().value(row).to_string())
}

/// A path argument (`text[]`, or its text form `'{a,b}'`) as its elements.
fn path_at(columns: &[ArrayRef], i: usize, row: usize) -> Result<Vec<String>> {
    let c = &columns[i];
    if let DataType::List(_) = c.data_type() {
        let items = c.as_list::<i32>().value(row);
        let items = datafusion::arrow::compute::cast(&items, &DataType::Utf8)
            .map_err(|e| Error::internal(e.to_string()))?;
        return Ok(items
            .as_string::<i32>()
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect());
    }
    let text = text_at(columns, i, row)?;
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| Error::InvalidTextRepresentation {
            message: format!("malformed array literal: \"{text}\""),
        })?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(inner
        .split(',')
        .map(|p| p.trim().trim_matches('"').to_string())
        .collect())
}

fn step<'a>(doc: &'a J, key: &str) -> Option<&'a J> {
    match doc {
        J::Obj(pairs) => pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        J::Arr(items) => {
            let i: i64 = key.parse().ok()?;
            let len = i64::try_from(items.len()).ok()?;
            let i = if i < 0 { len + i } else { i };
            usize::try_from(i).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

fn extract<'a>(doc: &'a J, path: &[String]) -> Option<&'a J> {
    path.iter().try_fold(doc, |d, k| step(d, k))
}

/// `a || b` on jsonb: objects merge (the right side wins), anything else concatenates as arrays.
fn concat(a: J, b: J) -> J {
    match (a, b) {
        (J::Obj(mut x), J::Obj(y)) => {
            x.extend(y);
            J::Obj(x)
        }
        (a, b) => {
            let mut items = match a {
                J::Arr(items) => items,
                other => vec![other],
            };
            match b {
                J::Arr(more) => items.extend(more),
                other => items.push(other),
            }
            J::Arr(items)
        }
    }
}

/// `a - key` / `a - index` on jsonb.
fn delete(doc: J, columns: &[ArrayRef], row: usize) -> Result<J> {
    let by_index = columns[0].data_type().is_integer();
    match doc {
        J::Obj(_) if by_index => Err(invalid("cannot delete from object using integer index")),
        J::Obj(pairs) => {
            let key = text_at(columns, 0, row)?;
            Ok(J::Obj(
                pairs.into_iter().filter(|(k, _)| *k != key).collect(),
            ))
        }
        J::Arr(mut items) if by_index => {
            let i: i64 = text_at(columns, 0, row)?.parse().unwrap_or(i64::MAX);
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let i = if i < 0 { len + i } else { i };
            if let Some(i) = usize::try_from(i).ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
            Ok(J::Arr(items))
        }
        J::Arr(items) => {
            let key = text_at(columns, 0, row)?;
            Ok(J::Arr(
                items
                    .into_iter()
                    .filter(|v| !matches!(v, J::Str(s) if *s == key))
                    .collect(),
            ))
        }
        _ => Err(invalid("cannot delete from scalar")),
    }
}

/// `jsonb_set(doc, path, value, create_missing)`.
fn set(doc: J, path: &[String], value: J, create: bool) -> Result<J> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(doc);
    };
    match doc {
        J::Obj(mut pairs) => {
            match pairs.iter().rposition(|(k, _)| k == first) {
                Some(i) => {
                    let old = std::mem::replace(&mut pairs[i].1, J::Null);
                    pairs[i].1 = if rest.is_empty() {
                        value
                    } else {
                        set(old, rest, value, create)?
                    };
                }
                None if rest.is_empty() && create => pairs.push((first.clone(), value)),
                None => {}
            }
            Ok(J::Obj(pairs))
        }
        J::Arr(mut items) => {
            let i: i64 = first.parse().map_err(|_| {
                invalid(format!(
                    "path element at position {} is not an integer: \"{first}\"",
                    1
                ))
            })?;
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let at = if i < 0 { len + i } else { i };
            match usize::try_from(at).ok().filter(|at| *at < items.len()) {
                Some(at) => {
                    let old = std::mem::replace(&mut items[at], J::Null);
                    items[at] = if rest.is_empty() {
                        value
                    } else {
                        set(old, rest, value, create)?
                    };
                }
                None if rest.is_empty() && create => {
                    if at < 0 {
                        items.insert(0, value);
                    } else {
                        items.push(value);
                    }
                }
                None => {}
            }
            Ok(J::Arr(items))
        }
        J::Raw(text) => set(parse(&text)?, path, value, create),
        _ => Err(invalid("cannot set path in scalar")),
    }
}

fn strip_nulls(doc: J) -> J {
    match doc {
        J::Obj(pairs) => J::Obj(
            pairs
                .into_iter()
                .filter(|(_, v)| *v != J::Null)
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        J::Arr(items) => J::Arr(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// jsonb_pretty's layout: four spaces a level, an empty container still opened and closed on
/// two lines.
fn pretty(doc: &J, depth: usize, out: &mut String) {
    let pad = |n: usize, out: &mut String| out.extend(std::iter::repeat_n("    ", n));
    match doc {
        J::Obj(_) | J::Arr(_) => {
            let (open, close) = if matches!(doc, J::Obj(_)) {
                ('{', '}')
            } else {
                ('[', ']')
            };
            out.push(open);
            let items: Vec<(Option<&String>, &J)> = match doc {
                J::Obj(pairs) => pairs.iter().map(|(k, v)| (Some(k), v)).collect(),
                J::Arr(items) => items.iter().map(|v| (None, v)).collect(),
                _ => Vec::new(),
            };
            for (i, (k, v)) in items.iter().enumerate() {
                out.push_str(if i > 0 { ",\n" } else { "\n" });
                pad(depth + 1, out);
                if let Some(k) = k {
                    push_string(out, k);
                    out.push_str(": ");
                }
                pretty(v, depth + 1, out);
            }
            out.push('\n');
            pad(depth, out);
            out.push(close);
        }
        other => other.write_jsonb(out),
    }
}

/// The canonical (sorted, unique keys) form of a document, for functions whose output order
/// follows jsonb's.
fn canonical(doc: J) -> Result<J> {
    parse(&doc.resolved()?.jsonb())
}

fn list_of_text(tagged: Option<PgType>) -> DataType {
    let field = match tagged {
        Some(pg) => crate::pgtype::tagged_field("item", DataType::Utf8, pg),
        None => Arc::new(Field::new("item", DataType::Utf8, true)),
    };
    DataType::List(field)
}

/// `weft_row('a', x, 'b', y, …)`: a row whose fields keep their arguments' PostgreSQL types (a
/// jsonb column stays jsonb inside `row_to_json(t)`); DataFusion's `named_struct` drops them.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Row {
    signature: Signature,
}

impl Row {
    fn fields(
        args: &[FieldRef],
        names: &[Option<&datafusion::common::ScalarValue>],
    ) -> DfResult<Vec<FieldRef>> {
        let mut fields = Vec::with_capacity(args.len() / 2);
        for pair in (0..args.len()).step_by(2) {
            let name = match names.get(pair).copied().flatten() {
                Some(datafusion::common::ScalarValue::Utf8(Some(n))) => n.clone(),
                _ => format!("f{}", pair / 2 + 1),
            };
            let value = args
                .get(pair + 1)
                .ok_or_else(|| to_df(invalid("weft_row takes name and value pairs")))?;
            fields.push(Arc::new(
                Field::new(name, value.data_type().clone(), true)
                    .with_metadata(value.metadata().clone()),
            ));
        }
        Ok(fields)
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Row {
    fn name(&self) -> &str {
        "weft_row"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Err(to_df(Error::internal(
            "weft_row's type comes from its arguments' fields",
        )))
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<FieldRef> {
        let fields = Row::fields(args.arg_fields, args.scalar_arguments)?;
        Ok(Arc::new(Field::new(
            "weft_row",
            DataType::Struct(fields.into()),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let DataType::Struct(fields) = args.return_field.data_type().clone() else {
            return Err(to_df(Error::internal("weft_row without a row type")));
        };
        let columns = arrays(&args)?;
        let values: Vec<ArrayRef> = columns.into_iter().skip(1).step_by(2).collect();
        Ok(ColumnarValue::Array(Arc::new(
            datafusion::arrow::array::StructArray::try_new(fields, values, None)?,
        )))
    }
}

/// The JSON function of this name./// The JSON function of this name.
pub(crate) fn function(name: &str) -> Option<Arc<ScalarUDF>> {
    all().into_iter().find(|f| f.name() == name)
}

/// Registers the JSON functions; the operators are planned in functions.rs.
pub(crate) fn all() -> Vec<Arc<ScalarUDF>> {
    let any = |n| Signature::any(n, Volatility::Immutable);
    let mut fns = vec![
        Arc::new(ScalarUDF::new_from_impl(Row {
            signature: Signature::variadic_any(Volatility::Immutable),
        })),
        to_json("to_json", false),
        to_json("to_jsonb", true),
        to_json("row_to_json", false),
        to_json("array_to_json", false),
        json_agg_element(),
        agg_finish("weft_json_agg", false),
        agg_finish("weft_jsonb_agg", true),
        object_agg_finish("weft_json_object_agg", false),
        object_agg_finish("weft_jsonb_object_agg", true),
        build("json_build_object", true, false),
        build("jsonb_build_object", true, true),
        build("json_build_array", false, false),
        build("jsonb_build_array", false, true),
    ];
    for name in ["jsonb_typeof", "json_typeof"] {
        fns.push(doc_fn(name, any(1), DataType::Utf8, None, |doc, _, _| {
            Ok(Some(Out::Text(doc.type_name()?.to_string())))
        }));
    }
    for name in ["jsonb_array_length", "json_array_length"] {
        fns.push(doc_fn(
            name,
            any(1),
            DataType::Int32,
            None,
            |doc, _, _| match doc {
                J::Arr(items) => Ok(Some(Out::Int(
                    i32::try_from(items.len()).unwrap_or(i32::MAX),
                ))),
                J::Obj(_) => Err(invalid("cannot get array length of a non-array")),
                _ => Err(invalid("cannot get array length of a scalar")),
            },
        ));
    }
    // `#>` / `#>>` (path as one text[]) and jsonb_extract_path(_text) (path as arguments).
    for (name, as_text, variadic_path) in [
        ("weft_json_path", false, false),
        ("weft_json_path_text", true, false),
        ("jsonb_extract_path", false, true),
        ("json_extract_path", false, true),
        ("jsonb_extract_path_text", true, true),
        ("json_extract_path_text", true, true),
    ] {
        let signature = if variadic_path {
            Signature::variadic_any(Volatility::Immutable)
        } else {
            any(2)
        };
        let pg = (!as_text).then_some(PgType::Jsonb);
        fns.push(doc_fn(
            name,
            signature,
            DataType::Utf8,
            pg,
            move |doc, columns, row| {
                let path = if variadic_path {
                    (0..columns.len())
                        .map(|i| text_at(columns, i, row))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    path_at(columns, 0, row)?
                };
                let doc = doc.resolved()?;
                Ok(extract(&doc, &path)
                    .and_then(|v| if as_text { v.text() } else { Some(v.jsonb()) }.map(Out::Text)))
            },
        ));
    }
    fns.push(udf(
        "weft_jsonb_concat",
        any(2),
        DataType::Utf8,
        Some(PgType::Jsonb),
        |args| {
            let columns = arrays(args)?;
            let a = datafusion::arrow::compute::cast(&columns[0], &DataType::Utf8)?;
            let b = datafusion::arrow::compute::cast(&columns[1], &DataType::Utf8)?;
            let (a, b) = (a.as_string::<i32>(), b.as_string::<i32>());
            let mut out = Vec::with_capacity(a.len());
            for row in 0..a.len() {
                if a.is_null(row) || b.is_null(row) {
                    out.push(None);
                    continue;
                }
                let (x, y) = (
                    parse(a.value(row)).map_err(to_df)?,
                    parse(b.value(row)).map_err(to_df)?,
                );
                out.push(Some(concat(x, y).jsonb()));
            }
            texts(out)
        },
    ));
    fns.push(doc_fn(
        "weft_jsonb_delete",
        any(2),
        DataType::Utf8,
        Some(PgType::Jsonb),
        |doc, columns, row| Ok(Some(Out::Text(delete(doc, columns, row)?.jsonb()))),
    ));
    fns.push(doc_fn(
        "jsonb_set",
        Signature::one_of(
            vec![TypeSignature::Any(3), TypeSignature::Any(4)],
            Volatility::Immutable,
        ),
        DataType::Utf8,
        Some(PgType::Jsonb),
        |doc, columns, row| {
            let path = path_at(columns, 0, row)?;
            let value = parse(&text_at(columns, 1, row)?)?;
            let create = match columns.get(2) {
                Some(c) => c.as_boolean_opt().map(|b| b.value(row)).unwrap_or(true),
                None => true,
            };
            Ok(Some(Out::Text(set(doc, &path, value, create)?.jsonb())))
        },
    ));
    for (name, pg) in [
        ("jsonb_strip_nulls", PgType::Jsonb),
        ("json_strip_nulls", PgType::Json),
    ] {
        fns.push(doc_fn(
            name,
            any(1),
            DataType::Utf8,
            Some(pg),
            move |doc, _, _| {
                let stripped = strip_nulls(doc);
                Ok(Some(Out::Text(if pg == PgType::Jsonb {
                    stripped.jsonb()
                } else {
                    stripped.json()
                })))
            },
        ));
    }
    fns.push(doc_fn(
        "jsonb_pretty",
        any(1),
        DataType::Utf8,
        None,
        |doc, _, _| {
            let mut out = String::new();
            pretty(&canonical(doc)?, 0, &mut out);
            Ok(Some(Out::Text(out)))
        },
    ));
    // Set-returning functions as lists; rewrite.rs unnests them.
    fns.push(doc_fn(
        "weft_json_elements",
        any(1),
        list_of_text(Some(PgType::Jsonb)),
        None,
        |doc, _, _| match doc {
            J::Arr(items) => Ok(Some(Out::List(
                items.into_iter().map(|v| Some(v.jsonb())).collect(),
            ))),
            J::Obj(_) => Err(invalid("cannot extract elements from an object")),
            _ => Err(invalid("cannot extract elements from a scalar")),
        },
    ));
    fns.push(doc_fn(
        "weft_json_elements_text",
        any(1),
        list_of_text(None),
        None,
        |doc, _, _| match doc {
            J::Arr(items) => Ok(Some(Out::List(items.iter().map(J::text).collect()))),
            J::Obj(_) => Err(invalid("cannot extract elements from an object")),
            _ => Err(invalid("cannot extract elements from a scalar")),
        },
    ));
    for (name, part) in [
        ("weft_json_keys", 0),
        ("weft_json_values", 1),
        ("weft_json_values_text", 2),
    ] {
        let pg = (part == 1).then_some(PgType::Jsonb);
        fns.push(doc_fn(
            name,
            any(1),
            list_of_text(pg),
            None,
            move |doc, _, _| match canonical(doc)? {
                J::Obj(pairs) => Ok(Some(Out::List(
                    pairs
                        .into_iter()
                        .map(|(k, v)| match part {
                            0 => Some(k),
                            1 => Some(v.jsonb()),
                            _ => v.text(),
                        })
                        .collect(),
                ))),
                J::Arr(_) => Err(invalid("cannot call this function on an array")),
                _ => Err(invalid("cannot call this function on a scalar")),
            },
        ));
    }
    fns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(text: &str) -> J {
        parse(text).expect("valid json")
    }

    #[test]
    fn numbers_print_as_jsonb_does() {
        assert_eq!(
            j(r#"{"b": 1e2, "c": 1.5e1, "d": 0.1e-2, "a": 7}"#).jsonb(),
            r#"{"a": 7, "b": 100, "c": 15, "d": 0.001}"#
        );
    }

    #[test]
    fn concat_and_delete_follow_postgres() {
        assert_eq!(concat(j("[1,2]"), j("[3]")).jsonb(), "[1, 2, 3]");
        assert_eq!(
            concat(j(r#"{"a":1}"#), j(r#"{"a":2,"b":3}"#)).jsonb(),
            r#"{"a": 2, "b": 3}"#
        );
        assert_eq!(concat(j("1"), j("[2]")).jsonb(), "[1, 2]");
        assert_eq!(
            concat(j(r#"{"a":1}"#), j("[2]")).jsonb(),
            r#"[{"a": 1}, 2]"#
        );
        let idx: Vec<ArrayRef> = vec![Arc::new(datafusion::arrow::array::Int64Array::from(vec![
            -1,
        ]))];
        assert_eq!(
            delete(j("[1,2,3]"), &idx, 0)
                .map(|v| v.jsonb())
                .ok()
                .as_deref(),
            Some("[1, 2]")
        );
        assert_eq!(
            delete(j(r#"{"a":1}"#), &idx, 0).unwrap_err().sqlstate(),
            "22023"
        );
    }

    #[test]
    fn set_paths_like_jsonb_set() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let s = |d: &str, path: &[&str], v: &str, c: bool| {
            set(j(d), &p(path), j(v), c).map(|v| v.jsonb()).ok()
        };
        assert_eq!(
            s(r#"{"a":{"b":1}}"#, &["a", "b"], "2", true).as_deref(),
            Some(r#"{"a": {"b": 2}}"#)
        );
        assert_eq!(
            s(r#"{"a":1}"#, &["c"], "3", false).as_deref(),
            Some(r#"{"a": 1}"#)
        );
        assert_eq!(s("[1,2]", &["5"], "9", true).as_deref(), Some("[1, 2, 9]"));
        assert_eq!(s("[1,2]", &["-5"], "9", true).as_deref(), Some("[9, 1, 2]"));
    }

    #[test]
    fn pretty_prints_four_spaces_a_level() {
        let mut out = String::new();
        pretty(
            &canonical(j(r#"{"a":1,"b":[1,{"c":2}],"d":{}}"#)).unwrap_or(J::Null),
            0,
            &mut out,
        );
        assert_eq!(
            out,
            "{\n    \"a\": 1,\n    \"b\": [\n        1,\n        {\n            \"c\": 2\n        }\n    ],\n    \"d\": {\n    }\n}"
        );
    }
}
