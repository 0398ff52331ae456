//! Push: LISTEN/UNLISTEN/NOTIFY as PostgreSQL does them, live queries (catalog objects matched
//! against the change stream), and `weft_changes` for resuming. The fan-out itself (who listens
//! where, per-connection queues) lives in the front end; this module decides what a statement
//! means and what a change record means for a live query.

pub(crate) mod changes;
pub mod live;

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast;
use weft_storage::{Catalog, CatalogEntry, LiveQueryDef, Txn};

use crate::ddl::{ident, object_name};
use crate::error::{Error, Result};
use crate::session::{ExecCtx, QueryOutput};

pub use live::{LiveChange, LiveOp, LiveQuery};

/// PostgreSQL refuses payloads of this many bytes or more.
pub const MAX_PAYLOAD: usize = 8000;
/// PostgreSQL's NAMEDATALEN - 1.
const MAX_CHANNEL: usize = 63;

/// A change to the set of channels a session listens on, as its statement made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenChange {
    Listen(String),
    Unlisten(String),
    UnlistenAll,
}

/// Where a session's LISTEN/UNLISTEN take effect: the front end's fan-out, for its connection.
pub trait ListenTarget: Send + Sync {
    /// Starts (`on`) or stops delivering `channel`'s notifications to the connection.
    fn listen(&self, channel: &str, on: bool);
    /// Undoes `listen(channel, true)` of a transaction whose COMMIT failed: as in PostgreSQL,
    /// where it never listened, nothing delivered on `channel` since reaches the client.
    fn revoke(&self, channel: &str) {
        self.listen(channel, false);
    }
}

/// The channels listened to once `changes` take effect on `now`.
pub(crate) fn listened_after(
    now: &std::collections::BTreeSet<String>,
    changes: &[ListenChange],
) -> std::collections::BTreeSet<String> {
    let mut set = now.clone();
    for c in changes {
        match c {
            ListenChange::Listen(ch) => {
                set.insert(ch.clone());
            }
            ListenChange::Unlisten(ch) => {
                set.remove(ch);
            }
            ListenChange::UnlistenAll => set.clear(),
        }
    }
    set
}

/// A channel name as PostgreSQL folds an identifier.
pub(crate) fn channel_name(i: &ast::Ident) -> String {
    ident(i)
}

pub(crate) fn check_notify(channel: &str, payload: &str) -> Result<()> {
    if channel.is_empty() {
        return Err(Error::InvalidParameterValue {
            message: "channel name cannot be empty".into(),
        });
    }
    if channel.len() > MAX_CHANNEL {
        return Err(Error::InvalidParameterValue {
            message: "channel name too long".into(),
        });
    }
    if payload.len() >= MAX_PAYLOAD {
        return Err(Error::InvalidParameterValue {
            message: "payload string too long".into(),
        });
    }
    Ok(())
}

/// `NOTIFY channel [, 'payload']`: queued in the transaction, sent when it commits.
pub(crate) fn notify(
    txn: &mut Txn,
    channel: &ast::Ident,
    payload: Option<&str>,
) -> Result<QueryOutput> {
    let channel = channel_name(channel);
    let payload = payload.unwrap_or("");
    check_notify(&channel, payload)?;
    txn.notify(&channel, payload);
    Ok(QueryOutput::Command {
        tag: "NOTIFY".into(),
    })
}

/// `CREATE LIVE QUERY name AS SELECT …`: checked and compiled now, stored as SQL text.
pub(crate) async fn create(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    cv: &ast::CreateView,
) -> Result<QueryOutput> {
    if !cv.columns.is_empty() {
        return Err(Error::unsupported("a column list in CREATE LIVE QUERY"));
    }
    let name = object_name(&cv.name)?;
    let catalog = txn.catalog();
    match catalog.get_by_name(&name) {
        Some(_) if cv.if_not_exists => {
            return Ok(QueryOutput::Command {
                tag: "CREATE LIVE QUERY".into(),
            })
        }
        Some(_) => {
            return Err(Error::DuplicateTable {
                message: format!("relation \"{name}\" already exists"),
            })
        }
        None => {}
    }
    let shape = live::shape(&cv.query)?;
    let table = match catalog.get_by_name(&shape.table) {
        Some(CatalogEntry::Table(t)) => t.clone(),
        Some(_) => {
            return Err(Error::unsupported(format!(
                "a live query over \"{}\", which is not a table",
                shape.table
            )))
        }
        None => {
            return Err(Error::UndefinedTable {
                message: format!("relation \"{}\" does not exist", shape.table),
            })
        }
    };
    LiveQuery::compile_shape(ctx.state, &table, &shape)?;
    // It must also plan as an ordinary query: `SELECT * FROM name` reads it like a view.
    let query = cv.query.to_string();
    let plan_check = datafusion::sql::parser::Statement::Statement(Box::new(
        ast::Statement::Query(cv.query.clone()),
    ));
    ctx.state.statement_to_plan(plan_check).await?;
    let id = txn.alloc_id()?;
    txn.put_entry(CatalogEntry::LiveQuery(LiveQueryDef {
        id,
        name,
        query,
        table: table.id,
    }))?;
    Ok(QueryOutput::Command {
        tag: "CREATE LIVE QUERY".into(),
    })
}

/// `DROP LIVE QUERY [IF EXISTS] name, …`.
pub(crate) fn drop(
    shared: &crate::shared::SessionShared,
    txn: &mut Txn,
    if_exists: bool,
    names: &[ast::ObjectName],
) -> Result<QueryOutput> {
    let catalog = txn.catalog();
    let mut ids = Vec::new();
    for n in names {
        let name = object_name(n)?;
        match catalog.get_by_name(&name) {
            Some(CatalogEntry::LiveQuery(l)) => ids.push(l.id),
            Some(_) => {
                return Err(Error::WrongObjectType {
                    message: format!("\"{name}\" is not a live query"),
                })
            }
            None if if_exists => shared.push_notice(
                "00000",
                format!("live query \"{name}\" does not exist, skipping"),
            ),
            None => {
                return Err(Error::UndefinedTable {
                    message: format!("live query \"{name}\" does not exist"),
                })
            }
        }
    }
    for id in ids {
        txn.drop_entry(id)?;
    }
    Ok(QueryOutput::Command {
        tag: "DROP LIVE QUERY".into(),
    })
}

/// Live queries that read `table_id` (to refuse dropping a table they depend on).
pub(crate) fn dependents(catalog: &Catalog, table_id: weft_storage::TableId) -> Vec<String> {
    catalog
        .entries
        .values()
        .filter_map(|e| match e {
            CatalogEntry::LiveQuery(l) if l.table == table_id => Some(l.name.clone()),
            _ => None,
        })
        .collect()
}

/// `SHOW LIVE QUERIES`: name, table, query.
pub(crate) fn show(catalog: &Catalog) -> Result<QueryOutput> {
    let mut rows: Vec<(String, String, String)> = catalog
        .entries
        .values()
        .filter_map(|e| match e {
            CatalogEntry::LiveQuery(l) => Some((
                l.name.clone(),
                catalog
                    .table_by_id(l.table)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                l.query.clone(),
            )),
            _ => None,
        })
        .collect();
    rows.sort();
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", ArrowType::Utf8, false),
        Field::new("table", ArrowType::Utf8, false),
        Field::new("query", ArrowType::Utf8, false),
    ]));
    let col = |f: fn(&(String, String, String)) -> &str| {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_new(schema, vec![col(|r| &r.0), col(|r| &r.1), col(|r| &r.2)])?;
    Ok(crate::query::rows_output(
        vec![
            crate::query::text_field("name"),
            crate::query::text_field("table"),
            crate::query::text_field("query"),
        ],
        vec![batch],
        "SHOW",
    ))
}

/// Compiles every live query of `catalog` (for the fan-out); a live query that no longer
/// compiles (its table was altered under it) comes back as its error.
pub fn compile_all(
    engine: &Arc<crate::Engine>,
    catalog: &Catalog,
) -> Vec<(String, Result<LiveQuery>)> {
    let defs: Vec<&LiveQueryDef> = catalog
        .entries
        .values()
        .filter_map(|e| match e {
            CatalogEntry::LiveQuery(l) => Some(l),
            _ => None,
        })
        .collect();
    if defs.is_empty() {
        return Vec::new();
    }
    let session = engine.new_session(&std::collections::HashMap::new());
    defs.into_iter()
        .map(|d| {
            (
                d.name.clone(),
                LiveQuery::compile(&session.state, catalog, d),
            )
        })
        .collect()
}
