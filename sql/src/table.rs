//! The one bridge between DataFusion and storage: `WeftTable::scan(projection, filters, limit)`
//! becomes a storage read of the current transaction's snapshot — a point or range read when the
//! filters pin the primary key or an index (see `scan.rs`), a full scan otherwise.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session as DfSession;
use datafusion::common::{Constraint, Constraints, DataFusionError};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::RwLock;
use weft_storage::{DataType, TableDef};

use crate::pgtype::arrow_field;
use crate::scan::{choose_access, ScanGenerator};
use crate::shared::SessionShared;

/// A Weft table as DataFusion sees it.
pub(crate) struct WeftTable {
    def: Arc<TableDef>,
    schema: SchemaRef,
    /// Positions into `def.columns` of each schema field.
    columns: Vec<usize>,
    /// The primary key, when all its columns are in the schema: DataFusion then accepts a
    /// column of the table beside `GROUP BY <its primary key>`, as PostgreSQL does.
    constraints: Option<Constraints>,
    shared: Arc<SessionShared>,
}

impl fmt::Debug for WeftTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeftTable")
            .field("table", &self.def.name)
            .finish()
    }
}

impl WeftTable {
    /// `include_hidden` exposes a key-less table's hidden row id (DML planning only).
    pub fn new(def: &TableDef, include_hidden: bool, shared: Arc<SessionShared>) -> WeftTable {
        let columns: Vec<usize> = def
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| include_hidden || !c.hidden)
            .map(|(i, _)| i)
            .collect();
        let schema = table_schema(def, &columns);
        let key: Option<Vec<usize>> = def
            .primary_key
            .iter()
            .map(|k| columns.iter().position(|c| c == k))
            .collect();
        let constraints =
            key.map(|key| Constraints::new_unverified(vec![Constraint::PrimaryKey(key)]));
        WeftTable {
            def: Arc::new(def.clone()),
            schema,
            columns,
            constraints,
            shared,
        }
    }

    pub fn def(&self) -> &Arc<TableDef> {
        &self.def
    }

    /// Positions into `def().columns` of each schema field.
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }
}

/// The Arrow schema of the given columns of a table.
pub(crate) fn table_schema(def: &TableDef, columns: &[usize]) -> SchemaRef {
    let fields: Vec<_> = columns
        .iter()
        .map(|&i| {
            let c = &def.columns[i];
            arrow_field(&c.name, c.data_type, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[async_trait]
impl TableProvider for WeftTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: filters choose the access path; DataFusion still applies every one of them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let view = self.shared.read().ok_or_else(|| {
            DataFusionError::Internal("table scanned outside a transaction".into())
        })?;
        let fields: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let storage_projection: Vec<usize> = fields.iter().map(|&i| self.columns[i]).collect();
        let types: Vec<DataType> = storage_projection
            .iter()
            .map(|&i| self.def.columns[i].data_type)
            .collect();
        let schema = Arc::new(self.schema.project(&fields)?);
        let access = choose_access(&self.def, filters);
        let batch_size = state.config().batch_size();
        let generator = ScanGenerator::new(
            view.reader,
            Arc::clone(&self.def),
            access,
            storage_projection,
            types,
            Arc::clone(&schema),
            limit,
            batch_size,
        );
        let generator: Arc<RwLock<dyn LazyBatchGenerator>> = Arc::new(RwLock::new(generator));
        Ok(Arc::new(LazyMemoryExec::try_new(schema, vec![generator])?))
    }
}
