//! PostgreSQL's system catalogs: the `pg_catalog` and `information_schema` schemas, the system
//! functions over them, and the rewrites that let DataFusion plan the SQL psql and drivers send.
//!
//! ```text
//!   SQL ─► rewrite.rs (pg_catalog.f → f, ::regclass → function, ARRAY(subquery), …)
//!            │
//!            ▼  DataFusion plans against
//!   PgSchema("pg_catalog" | "information_schema") ─► SystemTable (table.rs)
//!            │                                            │ scan: rows built now
//!            ▼                                            ▼
//!   functions.rs, reg.rs (UDFs) ──────► Model (model.rs) ◄── storage Catalog (+ view columns)
//! ```
//!
//! Each table file formats the model as one catalog; `oids.rs` says where oids come from.

pub(crate) mod table;

pub(crate) mod array_literal;
mod attribute;
mod builtin;
mod class;
mod constraint;
pub(crate) mod describe;
mod empty;
mod functions;
mod index;
mod info_columns;
mod info_constraints;
mod info_schema;
mod model;
mod oids;
mod proc;
mod reg;
mod rewrite;
mod roles;
mod sequences;
mod settings;
mod subquery;
mod type_table;
mod types;
mod udf;
mod views;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableProvider;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::{Analyzer, AnalyzerRule};
use parking_lot::RwLock;
use weft_storage::{Catalog, CatalogEntry};

use self::model::{Model, ModelRef, RelKind, SystemRelations, ViewColumns};
use self::table::{SystemTable, TableDef};
use crate::pgtype::PgType;
use crate::shared::SessionShared;

pub(crate) use self::rewrite::rewrite;

/// The text form of a `regtype` value: the type's SQL name, or the number for an unknown oid.
pub(crate) fn regtype_name(oid: u32) -> String {
    match types::by_oid(oid) {
        Some(_) => types::format_type(oid, None),
        None => oid.to_string(),
    }
}

/// DataFusion's analyzer rules with Weft's around them: array literals are typed before type
/// coercion, subqueries reshaped and the aggregates DataFusion cannot decorrelate decorrelated
/// after it.
pub(crate) fn analyzer_rules() -> Vec<Arc<dyn AnalyzerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![
        Arc::new(array_literal::ArrayLiterals),
        Arc::new(crate::setops::MultisetSetOps),
        Arc::new(crate::typecheck::UnmatchedTypes),
        Arc::new(crate::any_decimal::AnyDecimal),
    ];
    rules.extend(Analyzer::new().rules);
    rules.push(Arc::new(subquery::ScalarSubqueryValue));
    rules.push(Arc::new(crate::lateral::LateralCalls));
    rules.push(Arc::new(crate::decorrelate::Decorrelate));
    rules
}

pub(crate) const PG_CATALOG: &str = "pg_catalog";
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";

/// The pg_catalog tables; PostgreSQL's views among them are marked so in pg_class.
fn pg_catalog_tables() -> Vec<(TableDef, RelKind)> {
    use RelKind::{Table as T, View as V};
    let mut tables = vec![
        (builtin::PG_NAMESPACE, T),
        (class::PG_CLASS, T),
        (attribute::PG_ATTRIBUTE, T),
        (attribute::PG_ATTRDEF, T),
        (type_table::PG_TYPE, T),
        (type_table::PG_ENUM, T),
        (type_table::PG_RANGE, T),
        (index::PG_INDEX, T),
        (constraint::PG_CONSTRAINT, T),
        (builtin::PG_AM, T),
        (builtin::PG_DESCRIPTION, T),
        (builtin::PG_DEPEND, T),
        (builtin::PG_COLLATION, T),
        (builtin::PG_TABLESPACE, T),
        (roles::PG_DATABASE, T),
        (roles::PG_AUTHID, T),
        (roles::PG_AUTH_MEMBERS, T),
        (roles::PG_ROLES, V),
        (roles::PG_USER, V),
        (settings::PG_SETTINGS, V),
        (proc::PG_PROC, T),
        (views::PG_TABLES, V),
        (views::PG_VIEWS, V),
        (views::PG_INDEXES, V),
        (sequences::PG_SEQUENCE, T),
        (sequences::PG_SEQUENCES, V),
    ];
    tables.extend(
        empty::EMPTY
            .iter()
            .map(|t| (*t, if t.name == "pg_matviews" { V } else { T })),
    );
    tables
}

fn information_schema_tables() -> Vec<(TableDef, RelKind)> {
    [
        info_schema::SCHEMATA,
        info_schema::TABLES,
        info_schema::VIEWS,
        info_columns::COLUMNS,
        info_constraints::TABLE_CONSTRAINTS,
        info_constraints::KEY_COLUMN_USAGE,
        info_constraints::CHECK_CONSTRAINTS,
        info_constraints::CONSTRAINT_COLUMN_USAGE,
        info_constraints::REFERENTIAL_CONSTRAINTS,
    ]
    .into_iter()
    .map(|t| (t, RelKind::View))
    .collect()
}

/// What the catalogs of one session need besides storage: its database, user and settings.
/// Kept in the session's DataFusion config, so the session can update user and settings
/// (see [`PgContext::of`]).
pub(crate) struct PgContext {
    shared: Weak<SessionShared>,
    database: String,
    user: RwLock<String>,
    settings: RwLock<Vec<(String, String)>>,
    /// What `pg_backend_pid()` returns: the pid the front end sent in BackendKeyData.
    pub backend_pid: std::sync::atomic::AtomicI32,
    system: Box<SystemRelations>,
}

impl fmt::Debug for PgContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgContext({})", self.database)
    }
}

impl PgContext {
    fn new(shared: &Arc<SessionShared>, database: &str) -> Self {
        static NEXT_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(1000);
        let user = "postgres".to_string();
        let mut system = Vec::new();
        for (def, kind) in pg_catalog_tables() {
            system.push((oids::PG_CATALOG_NAMESPACE, def.name, def.columns, kind));
        }
        for (def, kind) in information_schema_tables() {
            system.push((
                oids::INFORMATION_SCHEMA_NAMESPACE,
                def.name,
                def.columns,
                kind,
            ));
        }
        PgContext {
            shared: Arc::downgrade(shared),
            database: database.to_string(),
            settings: RwLock::new(crate::settings::Settings::new(&user).all()),
            user: RwLock::new(user),
            backend_pid: std::sync::atomic::AtomicI32::new(
                NEXT_PID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ),
            system: system.into_boxed_slice(),
        }
    }

    /// The context registered on a session's state.
    pub fn of(state: &SessionState) -> Option<Arc<PgContext>> {
        state.config().get_extension::<PgContext>()
    }

    pub fn set_backend_pid(&self, pid: i32) {
        self.backend_pid
            .store(pid, std::sync::atomic::Ordering::Relaxed);
    }

    /// The session's user, shown by `current_user`, pg_roles and as every object's owner.
    pub fn set_user(&self, user: &str) {
        *self.user.write() = user.to_string();
    }

    /// The session's parameters as pg_settings and `current_setting` show them.
    pub fn set_settings(&self, settings: Vec<(String, String)>) {
        *self.settings.write() = settings;
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn user(&self) -> String {
        self.user.read().clone()
    }

    pub fn setting(&self, name: &str) -> Option<String> {
        self.settings
            .read()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub(super) fn catalog(&self) -> Arc<Catalog> {
        self.shared
            .upgrade()
            .map(|s| s.catalog())
            .unwrap_or_default()
    }

    fn build(&self, catalog: &Catalog, views: &ViewColumns) -> Model {
        let system: &SystemRelations = &self.system;
        let mut m = Model::build(catalog, system, views, self.database.clone(), self.user());
        m.settings = self.settings.read().clone();
        if let Some(state) = self.shared.upgrade().and_then(|s| s.state()) {
            let mut fns: Vec<(String, char)> = state.udfs().into_iter().map(|n| (n, 'f')).collect();
            fns.extend(state.udafs().into_iter().map(|n| (n, 'a')));
            fns.extend(state.udwfs().into_iter().map(|n| (n, 'w')));
            fns.sort();
            fns.dedup_by(|a, b| a.0 == b.0);
            m.functions = fns;
        }
        m
    }

    /// The model without view column types, for functions (which cannot plan).
    pub fn model_without_views(&self) -> Model {
        self.build(&self.catalog(), &HashMap::new())
    }

    /// The model, with each view's columns from planning its query.
    pub async fn model(&self) -> ModelRef {
        let catalog = self.catalog();
        let mut views = ViewColumns::new();
        let state = self.shared.upgrade().and_then(|s| s.state());
        if let Some(state) = state {
            for entry in catalog.entries.values() {
                let (id, query, names) = match entry {
                    CatalogEntry::View(v) => (v.id, &v.query, v.columns.clone()),
                    CatalogEntry::LiveQuery(l) => (l.id, &l.query, Vec::new()),
                    CatalogEntry::Table(_) | CatalogEntry::Sequence(_) => continue,
                };
                let Ok(plan) = state.create_logical_plan(query).await else {
                    continue;
                };
                let fields = plan.schema().fields();
                let cols = fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let name = names.get(i).cloned().unwrap_or_else(|| f.name().clone());
                        (
                            name,
                            PgType::from_field(f),
                            view_column_typmod(&catalog, &plan, i),
                        )
                    })
                    .collect();
                views.insert(id, cols);
            }
        }
        Arc::new(self.build(&catalog, &views))
    }
}

/// The type modifier of a view's output column that is a table's column (`varchar(20)`), else -1.
fn view_column_typmod(catalog: &Catalog, plan: &LogicalPlan, i: usize) -> i32 {
    let LogicalPlan::Projection(p) = plan else {
        return -1;
    };
    let mut e = p.expr.get(i);
    while let Some(Expr::Alias(a)) = e {
        e = Some(a.expr.as_ref());
    }
    let Some(Expr::Column(c)) = e else { return -1 };
    let table = c.relation.as_ref().and_then(|r| catalog.table(r.table()));
    table
        .and_then(|t| t.columns.iter().find(|col| col.name == c.name))
        .map_or(-1, |col| crate::pgtype::type_modifier(col.data_type))
}

/// `pg_catalog` or `information_schema` as a DataFusion schema.
pub(crate) struct PgSchema {
    tables: Vec<TableDef>,
    ctx: Arc<PgContext>,
}

impl fmt::Debug for PgSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgSchema")
    }
}

#[async_trait]
impl SchemaProvider for PgSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.to_string()).collect()
    }

    async fn table(
        &self,
        name: &str,
    ) -> datafusion::common::Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.iter().find(|t| t.name == name).map(|t| {
            Arc::new(SystemTable::new(*t, Arc::clone(&self.ctx))) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t.name == name)
    }
}

/// The system schemas of a session, to register beside `public`.
pub(crate) struct SystemSchemas {
    pub ctx: Arc<PgContext>,
    pub pg_catalog: Arc<dyn SchemaProvider>,
    pub information_schema: Arc<dyn SchemaProvider>,
}

pub(crate) fn schemas(shared: &Arc<SessionShared>, database: &str) -> SystemSchemas {
    let ctx = Arc::new(PgContext::new(shared, database));
    let schema = |tables: Vec<(TableDef, RelKind)>| -> Arc<dyn SchemaProvider> {
        Arc::new(PgSchema {
            tables: tables.into_iter().map(|(t, _)| t).collect(),
            ctx: Arc::clone(&ctx),
        })
    };
    SystemSchemas {
        pg_catalog: schema(pg_catalog_tables()),
        information_schema: schema(information_schema_tables()),
        ctx: Arc::clone(&ctx),
    }
}

/// Registers the system functions on a session's state.
pub(crate) fn register_functions(state: &mut SessionState, ctx: &Arc<PgContext>) {
    let mut r = udf::Registry::new(Arc::clone(ctx));
    functions::register_all(&mut r);
    reg::register_all(&mut r);
    for f in r.fns {
        let _ = state.register_udf(f);
    }
}
