//! Scalar functions evaluated row by row on `ScalarValue`s: catalog functions are called on a
//! handful of rows, and taking any argument type (oids arrive as int4, int8 or text) matters more
//! than speed. A function may ask for the catalog model, built once per call batch.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::model::Model;
use super::PgContext;
use crate::pgtype::PG_TYPE_KEY;

/// What a function body sees besides its arguments.
pub struct Call<'a> {
    ctx: &'a PgContext,
    model: OnceCell<Model>,
}

impl Call<'_> {
    pub fn ctx(&self) -> &PgContext {
        self.ctx
    }

    /// The catalog as of now (without view column types, which need planning).
    pub fn model(&self) -> &Model {
        self.model.get_or_init(|| self.ctx.model_without_views())
    }
}

type Body = dyn Fn(&Call<'_>, &[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync;

pub struct PgFn {
    name: &'static str,
    signature: Signature,
    ret: DataType,
    /// PostgreSQL type of the result where Arrow's is ambiguous (`oid`, `name`).
    pg: Option<&'static str>,
    ctx: Arc<PgContext>,
    body: Arc<Body>,
}

impl fmt::Debug for PgFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}

impl PartialEq for PgFn {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PgFn {}

impl Hash for PgFn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for PgFn {
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
        let field = Field::new(self.name, self.ret.clone(), true);
        Ok(Arc::new(match self.pg {
            Some(pg) => {
                field.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), pg.to_string())]))
            }
            None => field,
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let call = Call {
            ctx: &self.ctx,
            model: OnceCell::new(),
        };
        let typed = |v: ScalarValue| -> DfResult<ScalarValue> {
            if v.is_null() {
                return ScalarValue::try_from(&self.ret);
            }
            if v.data_type() == self.ret {
                Ok(v)
            } else {
                v.cast_to(&self.ret)
            }
        };
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => ScalarValue::Null,
                })
                .collect();
            return Ok(ColumnarValue::Scalar(typed((self.body)(&call, &values)?)?));
        }
        let arrays = args
            .args
            .iter()
            .map(|a| a.clone().into_array(args.number_rows))
            .collect::<DfResult<Vec<_>>>()?;
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let values = arrays
                .iter()
                .map(|a| ScalarValue::try_from_array(a, row))
                .collect::<DfResult<Vec<_>>>()?;
            out.push(typed((self.body)(&call, &values)?)?);
        }
        crate::functions::rows_to_array(&args, out)
    }
}

/// Accepts any of the given argument counts, of any types.
pub fn arity(counts: &[usize], volatility: Volatility) -> Signature {
    let sigs = counts
        .iter()
        .map(|&n| {
            if n == 0 {
                TypeSignature::Nullary
            } else {
                TypeSignature::Any(n)
            }
        })
        .collect();
    Signature::one_of(sigs, volatility)
}

/// A function builder bound to one session's catalog context.
pub struct Registry {
    ctx: Arc<PgContext>,
    pub fns: Vec<Arc<ScalarUDF>>,
}

impl Registry {
    pub fn new(ctx: Arc<PgContext>) -> Self {
        Registry {
            ctx,
            fns: Vec::new(),
        }
    }

    pub fn add(
        &mut self,
        name: &'static str,
        counts: &[usize],
        ret: DataType,
        pg: Option<&'static str>,
        body: impl Fn(&Call<'_>, &[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
    ) {
        self.fns.push(Arc::new(ScalarUDF::new_from_impl(PgFn {
            name,
            signature: arity(counts, Volatility::Stable),
            ret,
            pg,
            ctx: Arc::clone(&self.ctx),
            body: Arc::new(body),
        })));
    }
}

/// An integer argument (oids arrive as any integer type, or as text like `'16384'`).
pub fn int(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(Some(i)) => Some(i64::from(*i)),
        ScalarValue::Int16(Some(i)) => Some(i64::from(*i)),
        ScalarValue::Int32(Some(i)) => Some(i64::from(*i)),
        ScalarValue::Int64(Some(i)) => Some(*i),
        ScalarValue::UInt8(Some(i)) => Some(i64::from(*i)),
        ScalarValue::UInt16(Some(i)) => Some(i64::from(*i)),
        ScalarValue::UInt32(Some(i)) => Some(i64::from(*i)),
        ScalarValue::UInt64(Some(i)) => i64::try_from(*i).ok(),
        other => text(other).and_then(|s| s.trim().parse().ok()),
    }
}

/// An oid argument.
pub fn oid(v: &ScalarValue) -> Option<u32> {
    int(v).and_then(|i| u32::try_from(i).ok())
}

pub fn text(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

pub fn boolean(v: &ScalarValue) -> Option<bool> {
    match v {
        ScalarValue::Boolean(b) => *b,
        _ => None,
    }
}

pub fn utf8(s: Option<impl Into<String>>) -> ScalarValue {
    ScalarValue::Utf8(s.map(Into::into))
}
