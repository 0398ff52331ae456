//! PostgreSQL functions and operators DataFusion lacks: `gen_random_uuid()`, `version()`,
//! `current_database()`, `weft_position()`, the jsonb `->`/`->>`/`?` operators, and the casts to
//! `uuid`/`jsonb` (which Arrow has no type for).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::planner::{
    ExprPlanner, PlannerResult, RawBinaryExpr, RawFieldAccessExpr,
};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::to_df;
use crate::json::{self, PathStep};
use crate::pgtype::{tagged_field, PgType};
use crate::settings::SERVER_VERSION;
use crate::shared::SessionShared;

type Body = dyn Fn(&ScalarFunctionArgs) -> DfResult<ColumnarValue> + Send + Sync;

/// A function defined by a closure; equal by name (one definition per name per session).
struct Udf {
    name: &'static str,
    signature: Signature,
    ret: DataType,
    pg: Option<PgType>,
    body: Arc<Body>,
}

impl fmt::Debug for Udf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Udf({})", self.name)
    }
}

impl PartialEq for Udf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Udf {}

impl Hash for Udf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.ret.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(match self.pg {
            Some(pg) => tagged_field(self.name, self.ret.clone(), pg),
            None => Arc::new(datafusion::arrow::datatypes::Field::new(
                self.name,
                self.ret.clone(),
                true,
            )),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        (self.body)(&args)
    }
}

pub(crate) fn udf(
    name: &'static str,
    signature: Signature,
    ret: DataType,
    pg: Option<PgType>,
    body: Arc<Body>,
) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Udf {
        name,
        signature,
        ret,
        pg,
        body,
    }))
}

/// Runs `fut` to completion from inside a function DataFusion calls synchronously (a sequence's
/// nextval, a cluster call, a lock or a sleep). The server runs queries on a multi-threaded
/// runtime, where `block_in_place` hands this worker's other tasks to another meanwhile.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> crate::Result<F::Output> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        crate::error::Error::internal("a waiting function called outside the runtime")
    })?;
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Err(crate::error::Error::internal(
            "waiting functions need the multi-threaded runtime",
        ));
    }
    Ok(tokio::task::block_in_place(|| handle.block_on(fut)))
}

/// The number of rows (at least one, for nullary calls) and each argument as an array of them.
fn arg_arrays(args: &ScalarFunctionArgs) -> DfResult<(usize, Vec<ArrayRef>)> {
    let n = args.number_rows.max(1);
    let arrays = args
        .args
        .iter()
        .map(|a| a.clone().into_array(n))
        .collect::<DfResult<Vec<_>>>()?;
    Ok((n, arrays))
}

/// Each row's argument values, scalar arguments repeated.
pub(crate) fn scalar_rows(args: &ScalarFunctionArgs) -> DfResult<Vec<Vec<ScalarValue>>> {
    let (n, arrays) = arg_arrays(args)?;
    (0..n)
        .map(|i| {
            arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, i))
                .collect()
        })
        .collect()
}

/// A function of any result type, registered as is.
pub(crate) fn udf_any(
    name: &'static str,
    signature: Signature,
    ret: DataType,
    body: Arc<Body>,
) -> Arc<ScalarUDF> {
    udf(name, signature, ret, None, body)
}

fn constant_text(name: &'static str, value: String) -> Arc<ScalarUDF> {
    udf(
        name,
        Signature::nullary(Volatility::Stable),
        DataType::Utf8,
        None,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                value.clone(),
            ))))
        }),
    )
}

/// Registers Weft's functions and operator planners on a session's state.
pub(crate) fn register(state: &mut SessionState, shared: &Arc<SessionShared>) {
    let mut fns = vec![
        constant_text(
            "version",
            format!("PostgreSQL {SERVER_VERSION} on x86_64-pc-linux-gnu"),
        ),
        constant_text("current_schema", "public".to_string()),
        udf(
            "gen_random_uuid",
            Signature::nullary(Volatility::Volatile),
            DataType::Utf8,
            Some(PgType::Uuid),
            Arc::new(|args| {
                let values: StringArray = (0..args.number_rows.max(1))
                    .map(|_| Some(uuid::Uuid::new_v4().to_string()))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(values)))
            }),
        ),
        text_fn("weft_uuid", Some(PgType::Uuid), uuid_in),
        text_fn("weft_jsonb", Some(PgType::Jsonb), jsonb_in),
        text_fn("weft_json", Some(PgType::Json), json_in),
        text_array_fn("weft_uuid_array", PgType::Uuid, uuid_in),
        text_array_fn("weft_jsonb_array", PgType::Jsonb, jsonb_in),
        text_array_fn("weft_json_array", PgType::Json, json_in),
        bytea_input(),
        json_op("weft_json_get", Some(PgType::Jsonb), false),
        json_op("weft_json_get_text", None, true),
    ];
    fns.extend(crate::json_fn::all());
    // regtype is an oid (as in reg.rs); its text form is the type's name (pgtype::regtype_name).
    fns.push(udf(
        "pg_typeof",
        Signature::any(1, Volatility::Immutable),
        DataType::Int64,
        Some(PgType::RegType),
        Arc::new(|args| {
            let oid = args
                .arg_fields
                .first()
                .map(|f| PgType::from_field(f).oid())
                .unwrap_or(PgType::Unknown.oid());
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(i64::from(
                oid,
            )))))
        }),
    ));
    let position_shared = Arc::clone(shared);
    fns.push(udf(
        "weft_position",
        Signature::nullary(Volatility::Stable),
        DataType::Int64,
        None,
        Arc::new(move |_| {
            let pos = match position_shared.read() {
                Some(v) => v.position,
                None => position_shared.storage.last_position(),
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(
                i64::try_from(pos).unwrap_or(i64::MAX),
            ))))
        }),
    ));
    let notify_shared = Arc::clone(shared);
    fns.push(udf(
        "pg_notify",
        Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Volatile),
        DataType::Utf8,
        None,
        Arc::new(move |args| {
            let (n, arrays) = arg_arrays(args)?;
            let (Some(channels), Some(payloads)) = (arrays.first(), arrays.get(1)) else {
                return Err(datafusion::common::DataFusionError::Internal(
                    "pg_notify takes two arguments".into(),
                ));
            };
            let (channels, payloads) = (channels.as_string::<i32>(), payloads.as_string::<i32>());
            for i in 0..n {
                let channel = if channels.is_null(i) {
                    ""
                } else {
                    channels.value(i)
                };
                let payload = if payloads.is_null(i) {
                    ""
                } else {
                    payloads.value(i)
                };
                crate::push::check_notify(channel, payload).map_err(crate::error::to_df)?;
                notify_shared.push_notify(channel.to_string(), payload.to_string());
            }
            let empty: StringArray = (0..n).map(|_| Some("")).collect();
            Ok(ColumnarValue::Array(Arc::new(empty)))
        }),
    ));
    fns.push(to_hex());
    fns.push(text_fn("quote_ident", None, |s| {
        Ok(Some(crate::format::quote_ident(s)))
    }));
    fns.push(text_fn("quote_literal", None, |s| {
        Ok(Some(crate::format::quote_literal(s)))
    }));
    fns.extend(crate::format::udfs());
    fns.extend(crate::cluster::udfs(shared));
    fns.extend(crate::sequence::udfs(shared));
    fns.extend(crate::advisory::udfs(shared));
    fns.extend(crate::misc_fn::udfs());
    fns.extend(crate::misc_fn::clocks(
        state.config_options(),
        &shared.statement_start,
    ));
    fns.push(crate::numeric_div::unconstrained_cast());
    fns.push(crate::numeric_display::array_udf());
    fns.push(crate::numeric_display::text_udf());
    fns.extend(crate::bpchar::functions());
    fns.push(Arc::new(crate::series::BoundedSeries::udf()));
    fns.push(crate::coalesce::udf());
    for f in fns {
        let _ = state.register_udf(f);
    }
    state.register_udtf("generate_series", Arc::new(crate::series::GenerateSeries));
    state.register_udtf(
        crate::push::changes::FUNCTION,
        Arc::new(crate::push::changes::ChangesFunction {
            shared: Arc::clone(shared),
        }),
    );
    let _ = state.register_expr_planner(Arc::new(JsonPlanner));
    let _ = state.register_expr_planner(Arc::new(crate::interval_arith::IntervalPlanner));
    let _ = state.register_expr_planner(Arc::new(crate::datetime_in::DateIntervalPlanner));
    let _ = state.register_expr_planner(Arc::new(crate::numeric_types::RealPromotionPlanner));
}

/// The database name is per session; registered once the session knows it.
pub(crate) fn register_database(state: &mut SessionState, database: &str) {
    let _ = state.register_udf(constant_text("current_database", database.to_string()));
}

/// A one-argument text function applied element-wise; NULL in, NULL out.
fn text_fn(
    name: &'static str,
    pg: Option<PgType>,
    f: fn(&str) -> crate::Result<Option<String>>,
) -> Arc<ScalarUDF> {
    udf(
        name,
        Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        DataType::Utf8,
        pg,
        Arc::new(move |args| {
            let input = args.args[0].clone().into_array(args.number_rows)?;
            let input = datafusion::arrow::compute::cast(&input, &DataType::Utf8)?;
            let strings = input.as_string::<i32>();
            let out = strings
                .iter()
                .map(|v| v.map(f).transpose().map(Option::flatten))
                .collect::<crate::Result<StringArray>>()
                .map_err(to_df)?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

fn uuid_in(s: &str) -> crate::Result<Option<String>> {
    uuid::Uuid::parse_str(s.trim())
        .map(|u| Some(u.to_string()))
        .map_err(|_| crate::Error::InvalidTextRepresentation {
            message: format!("invalid input syntax for type uuid: \"{s}\""),
        })
}

fn jsonb_in(s: &str) -> crate::Result<Option<String>> {
    json::normalize(s).map(Some)
}

fn json_in(s: &str) -> crate::Result<Option<String>> {
    json::normalize(s).map(|_| Some(s.to_string()))
}

/// A cast of an array (given as `text[]`) to `element[]`: `f` reads each element, as the
/// scalar cast does (`$1::jsonb[]`, `ARRAY['…']::uuid[]`).
fn text_array_fn(
    name: &'static str,
    element: PgType,
    f: fn(&str) -> crate::Result<Option<String>>,
) -> Arc<ScalarUDF> {
    let item = crate::pgtype::tagged_utf8_field("item", element);
    let ret = DataType::List(Arc::clone(&item));
    udf(
        name,
        Signature::any(1, Volatility::Immutable),
        ret.clone(),
        element.array(),
        Arc::new(move |args| {
            let input = args.args[0].clone().into_array(args.number_rows)?;
            let input = datafusion::arrow::compute::cast(
                &input,
                &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            )?;
            let list = input.as_list::<i32>();
            let values = list
                .values()
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(f).transpose().map(Option::flatten))
                .collect::<crate::Result<StringArray>>()
                .map_err(to_df)?;
            let out = datafusion::arrow::array::ListArray::try_new(
                Arc::clone(&item),
                list.offsets().clone(),
                Arc::new(values),
                list.nulls().cloned(),
            )?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// A cast to bytea: text is read as PostgreSQL's bytea input (`\\x` hex or the escape format);
/// binary values pass through.
fn bytea_input() -> Arc<ScalarUDF> {
    udf(
        "weft_bytea",
        Signature::any(1, Volatility::Immutable),
        DataType::Binary,
        None,
        Arc::new(|args| {
            let input = args.args[0].clone().into_array(args.number_rows)?;
            if matches!(input.data_type(), DataType::Binary) {
                return Ok(ColumnarValue::Array(input));
            }
            let input = datafusion::arrow::compute::cast(&input, &DataType::Utf8)?;
            let out = input
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(parse_bytea).transpose())
                .collect::<crate::Result<BinaryArray>>()
                .map_err(to_df)?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// PostgreSQL's byteain.
pub(crate) fn parse_bytea(s: &str) -> crate::Result<Vec<u8>> {
    let bad = || crate::Error::InvalidTextRepresentation {
        message: "invalid input syntax for type bytea".into(),
    };
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if digits.len() % 2 != 0 {
            return Err(crate::Error::InvalidParameterValue {
                message: "invalid hexadecimal data: odd number of digits".into(),
            });
        }
        return digits
            .chunks(2)
            .map(|p| {
                std::str::from_utf8(p)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| crate::Error::InvalidParameterValue {
                        message: format!(
                            "invalid hexadecimal digit: \"{}\"",
                            String::from_utf8_lossy(p)
                        ),
                    })
            })
            .collect();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).ok_or_else(bad)?;
            if !(b'0'..=b'3').contains(&oct[0])
                || !oct[1..].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                return Err(bad());
            }
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

fn json_op(name: &'static str, pg: Option<PgType>, as_text: bool) -> Arc<ScalarUDF> {
    udf(
        name,
        Signature::any(2, Volatility::Immutable),
        DataType::Utf8,
        pg,
        Arc::new(move |args| {
            let docs = args.args[0].clone().into_array(args.number_rows)?;
            let docs = datafusion::arrow::compute::cast(&docs, &DataType::Utf8)?;
            let keys: ArrayRef = args.args[1].clone().into_array(args.number_rows)?;
            let docs = docs.as_string::<i32>();
            let int_keys = datafusion::arrow::compute::cast(&keys, &DataType::Int64).ok();
            let text_keys = datafusion::arrow::compute::cast(&keys, &DataType::Utf8)?;
            let text_keys = text_keys.as_string::<i32>();
            let numeric = keys.data_type().is_integer();
            let mut out = Vec::with_capacity(docs.len());
            for i in 0..docs.len() {
                if docs.is_null(i) || keys.is_null(i) {
                    out.push(None);
                    continue;
                }
                let step = match (&int_keys, numeric) {
                    (Some(ints), true) => {
                        let ints = ints.as_any().downcast_ref::<Int64Array>();
                        PathStep::Index(ints.map(|a| a.value(i)).unwrap_or(0))
                    }
                    _ => PathStep::Key(text_keys.value(i)),
                };
                let r = if as_text {
                    json::get_text(docs.value(i), &step)
                } else {
                    json::get(docs.value(i), &step)
                };
                out.push(r.map_err(to_df)?);
            }
            Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
        }),
    )
}

/// `jsonb ? text`: whether the key (or array string element) exists at the top level.
fn json_has_key() -> Arc<ScalarUDF> {
    udf(
        "weft_jsonb_exists",
        Signature::any(2, Volatility::Immutable),
        DataType::Boolean,
        None,
        Arc::new(|args| {
            let docs = args.args[0].clone().into_array(args.number_rows)?;
            let docs = datafusion::arrow::compute::cast(&docs, &DataType::Utf8)?;
            let keys = args.args[1].clone().into_array(args.number_rows)?;
            let keys = datafusion::arrow::compute::cast(&keys, &DataType::Utf8)?;
            let (docs, keys) = (docs.as_string::<i32>(), keys.as_string::<i32>());
            let mut out = Vec::with_capacity(docs.len());
            for i in 0..docs.len() {
                if docs.is_null(i) || keys.is_null(i) {
                    out.push(None);
                } else {
                    out.push(Some(
                        json::has_key(docs.value(i), keys.value(i)).map_err(to_df)?,
                    ));
                }
            }
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
        }),
    )
}

/// `to_hex` of an integer or bigint in two's complement of its own width, as PostgreSQL's
/// (`to_hex(-1)` is `ffffffff`); DataFusion's widens an integer to bigint first.
fn to_hex() -> Arc<ScalarUDF> {
    use datafusion::arrow::datatypes::{Int32Type, Int64Type};
    use datafusion::logical_expr::TypeSignature;
    udf(
        "to_hex",
        Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Int32]),
                TypeSignature::Exact(vec![DataType::Int64]),
            ],
            Volatility::Immutable,
        ),
        DataType::Utf8,
        None,
        Arc::new(|args| {
            let values = args.args[0].clone().into_array(args.number_rows)?;
            let out: StringArray = match values.data_type() {
                DataType::Int32 => values
                    .as_primitive::<Int32Type>()
                    .iter()
                    .map(|v| v.map(|v| format!("{:x}", v.cast_unsigned())))
                    .collect(),
                _ => datafusion::arrow::compute::cast(&values, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|v| format!("{:x}", v.cast_unsigned())))
                    .collect(),
            };
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `jsonb @> jsonb`, and `<@` with the operands swapped.
fn json_contains() -> Arc<ScalarUDF> {
    udf(
        "weft_jsonb_contains",
        Signature::any(2, Volatility::Immutable),
        DataType::Boolean,
        None,
        Arc::new(|args| {
            let texts = |i: usize| -> DfResult<ArrayRef> {
                let a = args.args[i].clone().into_array(args.number_rows)?;
                Ok(datafusion::arrow::compute::cast(&a, &DataType::Utf8)?)
            };
            let (a, b) = (texts(0)?, texts(1)?);
            let (a, b) = (a.as_string::<i32>(), b.as_string::<i32>());
            let mut out = Vec::with_capacity(a.len());
            for i in 0..a.len() {
                if a.is_null(i) || b.is_null(i) {
                    out.push(None);
                } else {
                    out.push(Some(
                        json::contains_text(a.value(i), b.value(i)).map_err(to_df)?,
                    ));
                }
            }
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
        }),
    )
}

/// Whether `e` is jsonb (by its PostgreSQL type), so that `@>` and `<@` on it are jsonb
/// containment rather than DataFusion's array operators.
fn is_json(e: &Expr, schema: &DFSchema) -> bool {
    datafusion::logical_expr::ExprSchemable::to_field(e, schema)
        .is_ok_and(|(_, f)| PgType::from_field(&f) == PgType::Jsonb)
}

/// `@>`, `<@` and `&&` between arrays, as `array_has_all` / `array_has_any`, and comparisons
/// of an array; a string literal on one side is read as an array of the other side's element
/// type, as PostgreSQL types it (in a select list too, where DataFusion would find no common
/// type while planning, before any analyzer rule).
fn array_containment(expr: &RawBinaryExpr, schema: &DFSchema) -> DfResult<Option<Expr>> {
    use datafusion::functions_nested::expr_fn::{array_has_all, array_has_any};
    use datafusion::logical_expr::{BinaryExpr, ExprSchemable, Operator};
    let comparison = match expr.op {
        BinaryOperator::Eq => Some(Operator::Eq),
        BinaryOperator::NotEq => Some(Operator::NotEq),
        BinaryOperator::Lt => Some(Operator::Lt),
        BinaryOperator::LtEq => Some(Operator::LtEq),
        BinaryOperator::Gt => Some(Operator::Gt),
        BinaryOperator::GtEq => Some(Operator::GtEq),
        BinaryOperator::AtArrow | BinaryOperator::ArrowAt | BinaryOperator::PGOverlap => None,
        _ => return Ok(None),
    };
    let list = |e: &Expr| match e.get_type(schema) {
        Ok(t @ (DataType::List(_) | DataType::LargeList(_))) => Some(t),
        _ => None,
    };
    let (le, re) = (list(&expr.left), list(&expr.right));
    if le.is_none() && re.is_none() {
        return Ok(None);
    }
    // A string literal or an untyped parameter takes the other side's array type.
    let operand = |e: &Expr, other: &Option<DataType>| -> DfResult<Expr> {
        let Some(list @ (DataType::List(f) | DataType::LargeList(f))) = other else {
            return Ok(e.clone());
        };
        let element = f.data_type();
        match e {
            Expr::Literal(ScalarValue::Utf8(Some(text)), _) => {
                crate::pg_catalog::array_literal::parse(text, element)
                    .map(|v| Expr::Literal(v, None))
                    .ok_or_else(|| {
                        to_df(crate::error::Error::InvalidTextRepresentation {
                            message: format!("malformed array literal: \"{text}\""),
                        })
                    })
            }
            Expr::Placeholder(p) if p.field.is_none() => {
                let field = Field::new("", list.clone(), true);
                Ok(Expr::Placeholder(
                    datafusion::logical_expr::expr::Placeholder::new_with_field(
                        p.id.clone(),
                        Some(Arc::new(field)),
                    ),
                ))
            }
            _ => Ok(e.clone()),
        }
    };
    let left = operand(&expr.left, &re)?;
    let right = operand(&expr.right, &le)?;
    Ok(Some(match (comparison, &expr.op) {
        (Some(op), _) => Expr::BinaryExpr(BinaryExpr::new(Box::new(left), op, Box::new(right))),
        (None, BinaryOperator::AtArrow) => array_has_all(left, right),
        (None, BinaryOperator::ArrowAt) => array_has_all(right, left),
        (None, _) => array_has_any(left, right),
    }))
}

/// Plans subscripts as PostgreSQL reads them, ahead of DataFusion's planner: on jsonb, `j['k']`
/// and `j[0]` are `j -> 'k'` and `j -> 0` (PostgreSQL 14's jsonb subscripts); on an array, a
/// position that is not a positive integer literal becomes `nullif(greatest(i, 0), 0)`, because
/// PostgreSQL reads no element at 0 or below (NULL) where DataFusion's `array_element` counts
/// negative positions from the end.
#[derive(Debug)]
pub(crate) struct SubscriptPlanner;

impl ExprPlanner for SubscriptPlanner {
    fn plan_field_access(
        &self,
        expr: RawFieldAccessExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawFieldAccessExpr>> {
        use datafusion::logical_expr::{lit, GetFieldAccess};
        let RawFieldAccessExpr { expr, field_access } = expr;
        if is_json(&expr, schema) {
            let key = match field_access {
                GetFieldAccess::NamedStructField { name } => Expr::Literal(name, None),
                GetFieldAccess::ListIndex { key } => *key,
                other => {
                    return Ok(PlannerResult::Original(RawFieldAccessExpr {
                        expr,
                        field_access: other,
                    }))
                }
            };
            let get = json_op("weft_json_get", Some(PgType::Jsonb), false);
            return Ok(PlannerResult::Planned(Expr::ScalarFunction(
                datafusion::logical_expr::expr::ScalarFunction::new_udf(get, vec![expr, key]),
            )));
        }
        match field_access {
            GetFieldAccess::ListIndex { key }
                if matches!(
                    datafusion::logical_expr::ExprSchemable::get_type(&expr, schema),
                    Ok(DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..))
                ) =>
            {
                use datafusion::functions::expr_fn::{greatest, nullif};
                let key = if positive_literal(&key) {
                    *key
                } else {
                    nullif(greatest(vec![*key, lit(0i64)]), lit(0i64))
                };
                // array_element also of `(array_agg(x))[1]`, which DataFusion would plan as
                // nth_value and then refuse.
                Ok(PlannerResult::Planned(
                    datafusion::functions_nested::expr_fn::array_element(expr, key),
                ))
            }
            other => Ok(PlannerResult::Original(RawFieldAccessExpr {
                expr,
                field_access: other,
            })),
        }
    }
}

fn positive_literal(e: &Expr) -> bool {
    match e {
        Expr::Literal(v, _) => v
            .cast_to(&DataType::Int64)
            .is_ok_and(|v| matches!(v, ScalarValue::Int64(Some(n)) if n > 0)),
        _ => false,
    }
}

/// Plans `a -> b`, `a ->> b`, `a ? b`, and `@>` / `<@` on jsonb, as the jsonb functions; `@>`,
/// `<@` and `&&` on arrays as PostgreSQL reads them.
#[derive(Debug)]
struct JsonPlanner;

impl ExprPlanner for JsonPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let json = || is_json(&expr.left, schema) || is_json(&expr.right, schema);
        if let Some(planned) = array_containment(&expr, schema)? {
            return Ok(PlannerResult::Planned(planned));
        }
        if matches!(expr.op, BinaryOperator::AtArrow | BinaryOperator::ArrowAt) && json() {
            let (container, contained) = match expr.op {
                BinaryOperator::AtArrow => (expr.left, expr.right),
                _ => (expr.right, expr.left),
            };
            return Ok(PlannerResult::Planned(Expr::ScalarFunction(
                datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    json_contains(),
                    vec![container, contained],
                ),
            )));
        }
        let jsonb_op = match expr.op {
            BinaryOperator::HashArrow => Some("weft_json_path"),
            BinaryOperator::HashLongArrow => Some("weft_json_path_text"),
            BinaryOperator::StringConcat if is_json(&expr.left, schema) => {
                Some("weft_jsonb_concat")
            }
            BinaryOperator::Minus if is_json(&expr.left, schema) => Some("weft_jsonb_delete"),
            _ => None,
        };
        if let Some(f) = jsonb_op.and_then(crate::json_fn::function) {
            return Ok(PlannerResult::Planned(Expr::ScalarFunction(
                datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    f,
                    vec![expr.left, expr.right],
                ),
            )));
        }
        let f = match expr.op {
            BinaryOperator::Arrow => json_op("weft_json_get", Some(PgType::Jsonb), false),
            BinaryOperator::LongArrow => json_op("weft_json_get_text", None, true),
            BinaryOperator::Question => json_has_key(),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(f, vec![expr.left, expr.right]),
        )))
    }
}

/// `values` (one per row) as the result array of a call: of the call's return type when there
/// are none (`ScalarValue::iter_to_array` cannot tell the type of an empty list).
pub(crate) fn rows_to_array(
    args: &datafusion::logical_expr::ScalarFunctionArgs,
    values: impl IntoIterator<Item = ScalarValue>,
) -> DfResult<ColumnarValue> {
    let mut values = values.into_iter().peekable();
    if values.peek().is_none() {
        return Ok(ColumnarValue::Array(
            datafusion::arrow::array::new_empty_array(args.return_field.data_type()),
        ));
    }
    Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?))
}
