//! The `public` schema as DataFusion sees it: resolves names against the catalog of the session's
//! current transaction (or the latest committed one), so DDL is visible as soon as it commits.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::{TableProvider, ViewTable};
use weft_storage::CatalogEntry;

use crate::error::Error;
use crate::shared::SessionShared;
use crate::table::WeftTable;

pub(crate) const DEFAULT_SCHEMA: &str = "public";

pub(crate) struct PublicSchema {
    shared: Arc<SessionShared>,
    /// pg_catalog, which PostgreSQL's search path puts before `public`: unqualified catalog
    /// names (`pg_class`) resolve there first.
    fallback: Option<Arc<dyn SchemaProvider>>,
}

impl PublicSchema {
    pub fn new(shared: Arc<SessionShared>) -> Self {
        PublicSchema {
            shared,
            fallback: None,
        }
    }

    pub fn with_fallback(self, pg_catalog: Arc<dyn SchemaProvider>) -> Self {
        PublicSchema {
            fallback: Some(pg_catalog),
            ..self
        }
    }
}

impl fmt::Debug for PublicSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicSchema")
    }
}

#[async_trait]
impl SchemaProvider for PublicSchema {
    fn table_names(&self) -> Vec<String> {
        self.shared
            .catalog()
            .entries
            .values()
            .map(|e| e.name().to_string())
            .collect()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::common::Result<Option<Arc<dyn TableProvider>>> {
        if let Some(cte) = self.shared.cte_table(name) {
            return Ok(Some(cte));
        }
        if let Some(system) = &self.fallback {
            if system.table_exist(name) {
                return system.table(name).await;
            }
        }
        let catalog = self.shared.catalog();
        if name == crate::cluster::NODES_TABLE && catalog.get_by_name(name).is_none() {
            return Ok(Some(Arc::new(crate::cluster::NodesTable {
                shared: Arc::clone(&self.shared),
            })));
        }
        match catalog.get_by_name(name) {
            Some(CatalogEntry::Table(def)) => {
                let hidden = self.shared.dml_target() == Some(def.id);
                Ok(Some(Arc::new(WeftTable::new(
                    def,
                    hidden,
                    Arc::clone(&self.shared),
                ))))
            }
            Some(CatalogEntry::View(view)) => {
                let state = self
                    .shared
                    .state()
                    .ok_or_else(|| DataFusionError::Internal("session state not set".into()))?;
                let plan = state.create_logical_plan(&view.query).await?;
                Ok(Some(Arc::new(ViewTable::new(
                    plan,
                    Some(view.query.clone()),
                ))))
            }
            Some(CatalogEntry::LiveQuery(lq)) => {
                let state = self
                    .shared
                    .state()
                    .ok_or_else(|| DataFusionError::Internal("session state not set".into()))?;
                let plan = state.create_logical_plan(&lq.query).await?;
                Ok(Some(Arc::new(ViewTable::new(plan, Some(lq.query.clone())))))
            }
            Some(CatalogEntry::Sequence(s)) => {
                Err(crate::error::to_df(Error::unsupported(format!(
                    "reading sequence \"{}\" as a table (use nextval, currval or pg_sequences)",
                    s.name
                ))))
            }
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.shared.cte_table(name).is_some()
            || self.fallback.as_ref().is_some_and(|s| s.table_exist(name))
            || self.shared.catalog().get_by_name(name).is_some()
            || name == crate::cluster::NODES_TABLE
    }
}

/// The database as a DataFusion catalog: `public` plus the system schemas registered beside it.
pub(crate) struct WeftCatalog {
    public: Arc<dyn SchemaProvider>,
    others: Vec<(String, Arc<dyn SchemaProvider>)>,
}

impl WeftCatalog {
    pub fn new(
        public: Arc<dyn SchemaProvider>,
        others: Vec<(String, Arc<dyn SchemaProvider>)>,
    ) -> Self {
        WeftCatalog { public, others }
    }
}

impl fmt::Debug for WeftCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeftCatalog")
    }
}

impl CatalogProvider for WeftCatalog {
    fn schema_names(&self) -> Vec<String> {
        std::iter::once(DEFAULT_SCHEMA.to_string())
            .chain(self.others.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == DEFAULT_SCHEMA {
            return Some(Arc::clone(&self.public));
        }
        self.others
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| Arc::clone(s))
    }
}
