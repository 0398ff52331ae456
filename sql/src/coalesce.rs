//! `coalesce` typing a string literal from an array argument: `coalesce(tags, '{}')` is
//! `coalesce(tags, '{}'::text[])` in PostgreSQL, where an unknown literal takes the other
//! arguments' type. DataFusion's coalesce finds no common type for a list and a string, and the
//! statement fails to plan. This wrapper answers that the string is coerced to the list type;
//! DataFusion then casts it, and the cast is read as PostgreSQL's array input
//! (datetime_in.rs). Everything else is DataFusion's coalesce.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgCoalesce {
    inner: Arc<ScalarUDF>,
}

/// `coalesce`, replacing DataFusion's.
pub(crate) fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(PgCoalesce {
        inner: datafusion::functions::core::coalesce(),
    }))
}

/// The list type the arguments take when one is a list and the others are strings or NULL.
fn list_of(arg_types: &[DataType]) -> Option<DataType> {
    let list = arg_types
        .iter()
        .find(|t| matches!(t, DataType::List(_) | DataType::LargeList(_)))?;
    arg_types
        .iter()
        .all(|t| {
            t == list
                || matches!(
                    t,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                )
        })
        .then(|| list.clone())
}

impl ScalarUDFImpl for PgCoalesce {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match list_of(arg_types) {
            Some(list) => Ok(vec![list; arg_types.len()]),
            None => self.inner.coerce_types(arg_types),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn a_string_beside_a_list_takes_the_list_type() {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        assert_eq!(
            list_of(&[list.clone(), DataType::Utf8, DataType::Null]),
            Some(list.clone())
        );
        assert_eq!(list_of(&[DataType::Int32, DataType::Utf8]), None);
        assert_eq!(list_of(&[list, DataType::Int64]), None);
    }
}
