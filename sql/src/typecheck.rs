//! Branches that PostgreSQL refuses to unify: a CASE whose results, or a UNION whose columns, mix a number with a text value (42804, "CASE types integer and text
//! cannot be matched"). DataFusion would coerce both to text and answer.
//!
//! A quoted literal is left alone: PostgreSQL types `'5'` by its context (`unknown`), so
//! `CASE WHEN c THEN 1 ELSE '5' END` is an integer there, not an error.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

use crate::error::Error;

/// The analyzer rule; runs before type coercion.
#[derive(Debug, Default)]
pub(crate) struct UnmatchedTypes;

impl AnalyzerRule for UnmatchedTypes {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Union(u) = node {
                check_union(u)?;
            }
            let schema = input_schema(node);
            for e in node.expressions() {
                e.apply(|x| {
                    if let Expr::Case(c) = x {
                        check_case(c, &schema)?;
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "weft_unmatched_types"
    }
}

fn input_schema(node: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    schema
}

enum Kind {
    Number,
    Text,
}

fn kind(t: &DataType) -> Option<Kind> {
    match t {
        t if t.is_numeric() => Some(Kind::Number),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
        _ => None,
    }
}

fn word(t: &DataType) -> &'static str {
    crate::pgtype::PgType::from_arrow(t).display_name()
}

fn is_literal(e: &Expr) -> bool {
    match e {
        Expr::Literal(..) => true,
        Expr::Alias(a) => is_literal(&a.expr),
        _ => false,
    }
}

/// The types of the first number and the first non-literal text among `(type, literal)`
/// branches, in the order they came, when there are both.
fn mismatch(branches: impl Iterator<Item = (DataType, bool)>) -> Option<(DataType, DataType)> {
    let mut number: Option<(usize, DataType)> = None;
    let mut text: Option<(usize, DataType)> = None;
    for (i, (t, literal)) in branches.enumerate() {
        match kind(&t) {
            Some(Kind::Number) if number.is_none() => number = Some((i, t)),
            Some(Kind::Text) if !literal && text.is_none() => text = Some((i, t)),
            _ => {}
        }
    }
    let ((i, n), (j, t)) = (number?, text?);
    Some(if i < j { (n, t) } else { (t, n) })
}

fn refuse(what: &str, (a, b): (DataType, DataType)) -> DataFusionError {
    DataFusionError::External(Box::new(Error::DatatypeMismatch {
        message: format!(
            "{what} types {} and {} cannot be matched",
            word(&a),
            word(&b)
        ),
    }))
}

fn check_case(c: &Case, schema: &DFSchema) -> DfResult<()> {
    let results = c
        .when_then_expr
        .iter()
        .map(|(_, then)| then.as_ref())
        .chain(c.else_expr.as_deref());
    let mut branches = Vec::new();
    for e in results {
        // A type that cannot be worked out here is DataFusion's to report.
        let Ok(t) = e.get_type(schema) else {
            return Ok(());
        };
        branches.push((t, is_literal(e)));
    }
    match mismatch(branches.into_iter()) {
        Some(m) => Err(refuse("CASE", m)),
        None => Ok(()),
    }
}

fn check_union(u: &datafusion::logical_expr::Union) -> DfResult<()> {
    let width = u.schema.fields().len();
    for i in 0..width {
        let branches = u.inputs.iter().map(|input| {
            let t = input
                .schema()
                .fields()
                .get(i)
                .map_or(DataType::Null, |f| f.data_type().clone());
            let literal = match input.as_ref() {
                LogicalPlan::Projection(p) => p.expr.get(i).is_some_and(is_literal),
                _ => false,
            };
            (t, literal)
        });
        if let Some(m) = mismatch(branches) {
            return Err(refuse("UNION", m));
        }
    }
    Ok(())
}
