//! `UNION ALL` returns its branches' rows in the order the branches are written, as PostgreSQL's
//! Append node does: `SELECT 1 UNION ALL SELECT 2` gives 1 then 2.
//!
//! DataFusion plans a union as one output partition per branch and merges partitions with
//! `CoalescePartitionsExec`, which runs them concurrently and interleaves their batches in
//! whatever order they finish (`SELECT 1 UNION ALL SELECT 2` answered 2, 1). Sessions plan with a
//! single target partition, so the union is the only source of several partitions; each
//! coalesce is replaced by [`InOrderExec`], which runs the partitions one after the other, and a
//! plan that ends with several partitions gets one on top:
//!
//! ```text
//!   CoalescePartitionsExec(fetch)        InOrderExec(fetch)
//!     UnionExec                    ─►      UnionExec
//!       branch 1, branch 2, …                branch 1, then branch 2, then …
//! ```
//!
//! A plan that repartitions is left as it is: its partitions feed from shared channels and must
//! be drained together.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

/// `plan` with its partitions merged in order (see the module's comment).
pub(crate) fn in_order(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    let mut repartitions = false;
    plan.apply(|node| {
        repartitions |= node.is::<RepartitionExec>();
        Ok(if repartitions {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    if repartitions {
        return Ok(plan);
    }
    let plan = plan
        .transform_up(|node| {
            let Some(coalesce) = node.downcast_ref::<CoalescePartitionsExec>() else {
                return Ok(Transformed::no(node));
            };
            let merged = InOrderExec::new(Arc::clone(coalesce.input()), coalesce.fetch());
            Ok(Transformed::yes(Arc::new(merged) as Arc<dyn ExecutionPlan>))
        })?
        .data;
    if plan.output_partitioning().partition_count() > 1 {
        return Ok(Arc::new(InOrderExec::new(plan, None)));
    }
    Ok(plan)
}

/// One partition: every partition of `input`, the first to the last, up to `fetch` rows.
#[derive(Debug)]
pub(crate) struct InOrderExec {
    input: Arc<dyn ExecutionPlan>,
    fetch: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl InOrderExec {
    fn new(input: Arc<dyn ExecutionPlan>, fetch: Option<usize>) -> Self {
        // The partitions' own orderings do not hold across them.
        let mut eq = input.equivalence_properties().clone();
        eq.clear_orderings();
        eq.clear_per_partition_constants();
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(1),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        InOrderExec {
            input,
            fetch,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for InOrderExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match self.fetch {
            Some(n) => write!(f, "InOrderExec: fetch={n}"),
            None => write!(f, "InOrderExec"),
        }
    }
}

impl ExecutionPlan for InOrderExec {
    fn name(&self) -> &str {
        "InOrderExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("InOrderExec has one child".into())
        })?;
        Ok(Arc::new(InOrderExec::new(input, self.fetch)))
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = Arc::clone(&self.input);
        let count = input.output_partitioning().partition_count();
        let batches = futures::stream::iter(0..count)
            .map(move |i| input.execute(i, Arc::clone(&context)))
            .try_flatten();
        let schema = self.schema();
        let Some(fetch) = self.fetch else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)));
        };
        let limited = batches.scan(fetch, |left, batch| {
            let item = match batch {
                Err(e) => Some(Err(e)),
                Ok(_) if *left == 0 => None,
                Ok(b) => {
                    let rows = b.num_rows().min(*left);
                    *left -= rows;
                    Some(Ok(b.slice(0, rows)))
                }
            };
            futures::future::ready(item)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, limited)))
    }

    fn fetch(&self) -> Option<usize> {
        self.fetch
    }
}
