//! An UNNEST repeats each input row once per element, so a key of its input (a table's primary
//! key, which `WeftTable` declares) is no key of its output. DataFusion keeps the input's
//! functional dependencies on an Unnest all the same, and its optimizer then drops sort keys
//! that the key seems to determine: `SELECT id, unnest(tags) AS tag FROM t ORDER BY id, tag`
//! came back sorted by `id` alone.
//!
//! This optimizer rule, run before the rules that read functional dependencies, clears them on
//! every Unnest and rebuilds the schemas above it, which then derive theirs from the corrected
//! input.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{FunctionalDependencies, Result as DfResult};
use datafusion::logical_expr::{LogicalPlan, Unnest};
use datafusion::optimizer::optimizer::Optimizer;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub(crate) struct UnnestKeys;

impl OptimizerRule for UnnestKeys {
    fn name(&self) -> &str {
        "weft_unnest_keys"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        if !plan.exists(|n| Ok(keyed_unnest(n)))? {
            return Ok(Transformed::no(plan));
        }
        let original = plan.clone();
        let fixed = plan.transform_up(|node| match node {
            LogicalPlan::Unnest(u) if !u.schema.functional_dependencies().is_empty() => {
                let schema = u
                    .schema
                    .as_ref()
                    .clone()
                    .with_functional_dependencies(FunctionalDependencies::empty())?;
                Ok(Transformed::yes(LogicalPlan::Unnest(Unnest {
                    schema: Arc::new(schema),
                    ..u
                })))
            }
            other => Ok(Transformed::yes(other.recompute_schema()?)),
        });
        // A node whose schema cannot be rebuilt keeps the plan as DataFusion made it.
        Ok(fixed.unwrap_or_else(|_| Transformed::no(original)))
    }
}

fn keyed_unnest(n: &LogicalPlan) -> bool {
    matches!(n, LogicalPlan::Unnest(u) if !u.schema.functional_dependencies().is_empty())
}

/// DataFusion's optimizer rules with [`UnnestKeys`] before each that reads functional
/// dependencies.
pub(crate) fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Vec::new();
    for rule in Optimizer::new().rules {
        if matches!(
            rule.name(),
            "eliminate_duplicated_expr" | "optimize_projections"
        ) {
            rules.push(Arc::new(UnnestKeys) as Arc<dyn OptimizerRule + Send + Sync>);
        }
        rules.push(rule);
    }
    rules
}
