//! PostgreSQL functions and operators DataFusion lacks: `gen_random_uuid()`, `version()`,
//! `current_database()`, `weft_position()`, the jsonb `->`/`->>` operators, and the casts to
//! `uuid`/`jsonb` (which Arrow has no type for).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::to_df;
use crate::json::{self, PathStep};
use crate::pgtype::{tagged_utf8_field, PgType};
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
            Some(pg) => tagged_utf8_field(self.name, pg),
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

fn udf(
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
        text_fn("weft_uuid", Some(PgType::Uuid), |s| {
            uuid::Uuid::parse_str(s.trim())
                .map(|u| Some(u.to_string()))
                .map_err(|_| crate::Error::InvalidTextRepresentation {
                    message: format!("invalid input syntax for type uuid: \"{s}\""),
                })
        }),
        text_fn("weft_jsonb", Some(PgType::Jsonb), |s| {
            json::normalize(s).map(Some)
        }),
        json_op("weft_json_get", Some(PgType::Jsonb), false),
        json_op("weft_json_get_text", None, true),
    ];
    fns.push(udf(
        "pg_typeof",
        Signature::any(1, Volatility::Immutable),
        DataType::Utf8,
        Some(PgType::RegType),
        Arc::new(|args| {
            let name = args
                .arg_fields
                .first()
                .map(|f| PgType::from_field(f).display_name())
                .unwrap_or("unknown");
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                name.to_string(),
            ))))
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
            let n = args.number_rows.max(1);
            let arrays = args
                .args
                .iter()
                .map(|a| a.clone().into_array(n))
                .collect::<DfResult<Vec<_>>>()?;
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
    for f in fns {
        let _ = state.register_udf(f);
    }
    state.register_udtf(
        crate::push::changes::FUNCTION,
        Arc::new(crate::push::changes::ChangesFunction {
            shared: Arc::clone(shared),
        }),
    );
    let _ = state.register_expr_planner(Arc::new(JsonPlanner));
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

/// Plans `a -> b` and `a ->> b` as the jsonb lookup functions.
#[derive(Debug)]
struct JsonPlanner;

impl ExprPlanner for JsonPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let f = match expr.op {
            BinaryOperator::Arrow => json_op("weft_json_get", Some(PgType::Jsonb), false),
            BinaryOperator::LongArrow => json_op("weft_json_get_text", None, true),
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            datafusion::logical_expr::expr::ScalarFunction::new_udf(f, vec![expr.left, expr.right]),
        )))
    }
}
