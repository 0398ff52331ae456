//! Query execution on a runtime of its own.
//!
//! ```text
//!   session task (main runtime) ── physical plan ──▶ weft-query runtime: execute_stream, poll
//!        ▲                                                 │ record batches
//!        └──────────── bounded channel (2 batches) ◀───────┘
//! ```
//!
//! Some DataFusion operators compute for a long time inside one poll: a nested loop join joins
//! every buffered row with a batch from its other side before it returns (see interrupt.rs).
//! On the runtime that also runs the client connections, two such polls would hold both
//! workers of a 2-vCPU machine, and nothing else on the node would run until they return: not
//! other sessions, not the accept loop, so not even the CancelRequest meant to stop them. Run
//! here, they hold only some of this runtime's workers (it has more than the cores): the
//! connection loops and other queries keep running, a CancelRequest sets the statement's
//! flag, and the join's interruptible filter sees it.
//! Dropping the stream (the client went away, the portal was closed) stops the work at its next
//! batch.

use std::sync::{Arc, OnceLock};

use datafusion::execution::TaskContext;
use datafusion::physical_plan::{execute_stream, ExecutionPlan};
use futures::{FutureExt, StreamExt};

use crate::error::{Error, Result};
use crate::session::RowStream;

/// Batches computed ahead of the client.
const AHEAD: usize = 2;

/// Worker threads of the query runtime: more than the cores, so that a few long polls (each
/// holds a worker until it returns) leave workers for everyone else's queries, and the kernel
/// shares the cores among them by time slices, as it does among PostgreSQL's backends. An idle
/// worker costs a parked thread.
const WORKERS: usize = 16;

fn runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .thread_name("weft-query")
                .enable_all()
                .build()
            {
                Ok(rt) => Some(rt),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the query runtime; queries run on the connections' runtime");
                    None
                }
            }
        })
        .as_ref()
}

/// The message a panic carried.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// Executes `plan` on the query runtime; its batches arrive on the returned stream.
pub(crate) fn execute(plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> RowStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<_>>(AHEAD);
    let on_panic = tx.clone();
    let work = async move {
        let ordered = crate::union_order::in_order(plan);
        let mut stream = match ordered.and_then(|plan| execute_stream(plan, task)) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(Error::from(e))).await;
                return;
            }
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = tx.closed() => return,
            };
            let Some(item) = item else { return };
            let failed = item.is_err();
            if tx.send(item.map_err(Error::from)).await.is_err() || failed {
                return;
            }
        }
    };
    // A panic in the plan (arrow's "offset overflow" once a string column passes 2 GiB, say)
    // must reach the client as an error: the stream would otherwise just end, and the query
    // would answer fewer rows, or none, as if it had succeeded.
    let work = async move {
        if let Err(panic) = std::panic::AssertUnwindSafe(work).catch_unwind().await {
            let what = panic_text(panic.as_ref());
            let _ = on_panic
                .send(Err(Error::internal(format!(
                    "query execution failed: {what}"
                ))))
                .await;
        }
    };
    match runtime() {
        Some(rt) => drop(rt.spawn(work)),
        None => drop(tokio::spawn(work)),
    }
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::execution::SendableRecordBatchStream;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

    use super::*;

    /// A partition whose stream panics when polled.
    #[derive(Debug)]
    struct Panics(SchemaRef);

    impl PartitionStream for Panics {
        fn schema(&self) -> &SchemaRef {
            &self.0
        }

        fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
            let rows = futures::stream::once(async {
                panic!("offset overflow");
            });
            Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.0), rows))
        }
    }

    #[tokio::test]
    async fn a_plan_that_panics_ends_the_stream_with_an_error() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
        let plan = StreamingTableExec::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Panics(schema))],
            None,
            Vec::new(),
            false,
            None,
        )
        .expect("a plan");
        let mut rows = execute(Arc::new(plan), Arc::new(TaskContext::default()));
        let first = rows.next().await;
        assert!(
            matches!(&first, Some(Err(e)) if e.to_string().contains("offset overflow")),
            "an error, not an empty result: {first:?}"
        );
        assert!(rows.next().await.is_none());
    }
}
