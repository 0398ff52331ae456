//! Cancelling a statement inside operators that compute for a long time without returning.
//!
//! A running statement is raced against its cancel signal at every batch it produces
//! (`session::with_cancel`), which stops scans, sorts and aggregates promptly: their inputs yield
//! to tokio at least every batch budget. A nested loop join does not: for one batch from its
//! right side it joins every buffered left row in a single poll, and when its filter rejects
//! (nearly) every pair, no batch comes out for as long as the whole join takes
//! (`SELECT count(*) FROM big a, big b, big c WHERE a.x + b.x + c.x = -1` runs for minutes).
//!
//! Such joins get a filter that checks the statement's cancel flag each time it is evaluated
//! (once per left row or range of rows joined with the right batch) and stops the join with
//! 57014 once it is set, as PostgreSQL's `CHECK_FOR_INTERRUPTS` does inside its join loops.

use std::fmt::{self, Display, Formatter};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{NestedLoopJoinExec, NestedLoopJoinExecBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::session::CancelHandle;

/// `plan` with every nested loop join's filter made to stop when `cancel` fires.
pub(crate) fn interruptible(
    plan: Arc<dyn ExecutionPlan>,
    cancel: &CancelHandle,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(nlj) = node.downcast_ref::<NestedLoopJoinExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(filter) = nlj.filter() else {
            return Ok(Transformed::no(node));
        };
        if filter.expression().is::<Interruptible>() {
            return Ok(Transformed::no(node));
        }
        let checked = JoinFilter::new(
            Arc::new(Interruptible {
                inner: Arc::clone(filter.expression()),
                cancel: cancel.clone(),
            }),
            filter.column_indices().to_vec(),
            Arc::clone(filter.schema()),
        );
        let rebuilt = NestedLoopJoinExecBuilder::from(nlj)
            .with_filter(Some(checked))
            .build()?;
        Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// An expression that fails with the statement's cancel error once it is cancelled, and
/// otherwise evaluates `inner`.
#[derive(Debug)]
struct Interruptible {
    inner: Arc<dyn PhysicalExpr>,
    cancel: CancelHandle,
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("CancelHandle")
    }
}

impl PartialEq for Interruptible {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for Interruptible {}

impl Hash for Interruptible {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl Display for Interruptible {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        Display::fmt(&self.inner, f)
    }
}

impl PhysicalExpr for Interruptible {
    fn return_field(&self, input_schema: &Schema) -> DfResult<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        self.cancel
            .check()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        let inner = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("Interruptible has one child".into()))?;
        Ok(Arc::new(Interruptible {
            inner,
            cancel: self.cancel.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}
