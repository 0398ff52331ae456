//! Element types through UNNEST.
//!
//! DataFusion gives each unnested column a bare field, dropping what Weft keeps in field
//! metadata: the PostgreSQL type of uuid, json, jsonb and character elements, and the display
//! mark of a `numeric[]` (numeric_display.rs). `unnest($1::uuid[])` was then described as text
//! and `unnest($1::numeric[])` printed sixteen decimals. This pass puts the metadata back on a
//! planned statement, before its RowDescription is derived; the nodes above take it up.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::Transformed;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{LogicalPlan, Unnest};

use crate::error::{Error, Result};

/// `plan` with each unnested list column's element metadata on its output field.
pub(crate) fn keep_element_types(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        found |= matches!(node, LogicalPlan::Unnest(_));
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .map_err(Error::from)?;
    if !found {
        return Ok(plan);
    }
    plan.transform_up_with_subqueries(|node| match node {
        LogicalPlan::Unnest(u) => with_element_fields(u).map(Transformed::yes),
        // The fields below may have changed.
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Distinct(_) => node.recompute_schema().map(Transformed::yes),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(Error::from)
}

fn with_element_fields(mut u: Unnest) -> datafusion::common::Result<LogicalPlan> {
    let input = u.input.schema();
    let mut changed = false;
    let fields: Vec<_> = u
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let source = u.dependency_indices.get(i).map(|&j| input.field(j));
            let Some(DataType::List(item) | DataType::LargeList(item)) =
                source.map(|s| s.data_type())
            else {
                return (qualifier.cloned(), Arc::clone(field));
            };
            if item.data_type() != field.data_type() {
                return (qualifier.cloned(), Arc::clone(field));
            }
            let mut metadata = field.metadata().clone();
            metadata.extend(item.metadata().clone());
            if let Some(list) = source {
                if crate::numeric_display::is_marked(list) {
                    metadata.extend(
                        crate::numeric_display::mark(Field::new("", DataType::Null, true))
                            .metadata()
                            .clone(),
                    );
                }
            }
            if metadata == *field.metadata() {
                return (qualifier.cloned(), Arc::clone(field));
            }
            changed = true;
            let field = field.as_ref().clone().with_metadata(metadata);
            (qualifier.cloned(), Arc::new(field))
        })
        .collect();
    if changed {
        let schema = DFSchema::new_with_metadata(fields, u.schema.metadata().clone())?
            .with_functional_dependencies(u.schema.functional_dependencies().clone())?;
        u.schema = Arc::new(schema);
    }
    Ok(LogicalPlan::Unnest(u))
}
