//! Transaction control as PostgreSQL does it: BEGIN/COMMIT/ROLLBACK, savepoints, the failed-block
//! state (25P02 until ROLLBACK), and SET, which needs no transaction.

use datafusion::sql::sqlparser::ast;

use crate::error::{Error, Result};
use crate::session::{view_of, Block, BlockBarrier, QueryOutput, Session};
use crate::statement::Statement;

fn tag(t: &str) -> QueryOutput {
    QueryOutput::Command { tag: t.to_string() }
}

/// Runs a transaction-control statement; None if the statement is something else.
pub(crate) async fn execute(
    session: &mut Session,
    stmt: &Statement,
) -> Result<Option<QueryOutput>> {
    match &*stmt.ast {
        ast::Statement::StartTransaction { modes, .. } => begin(session, modes).await.map(Some),
        ast::Statement::Commit { chain: false, .. } => commit(session).await.map(Some),
        ast::Statement::Rollback {
            chain: false,
            savepoint: None,
        } => {
            if end_block(session).is_none() {
                session.notice("WARNING", "25P01", "there is no transaction in progress");
            }
            session.cursors.end_of_block(false);
            session.listen_pending.clear();
            session.shared.set_read(None);
            Ok(Some(tag("ROLLBACK")))
        }
        ast::Statement::Rollback {
            chain: false,
            savepoint: Some(name),
        } => rollback_to(session, &name.value).map(Some),
        ast::Statement::Commit { chain: true, .. }
        | ast::Statement::Rollback { chain: true, .. } => Err(Error::unsupported("AND CHAIN")),
        ast::Statement::Savepoint { name } => {
            let block = in_block(session, "SAVEPOINT")?;
            if block.failed {
                return Err(Error::InFailedTransaction);
            }
            let sp = block.txn.savepoint();
            block.savepoints.push((name.value.clone(), sp));
            Ok(Some(tag("SAVEPOINT")))
        }
        ast::Statement::ReleaseSavepoint { name } => {
            let block = in_block(session, "RELEASE SAVEPOINT")?;
            if block.failed {
                return Err(Error::InFailedTransaction);
            }
            let idx = find_savepoint(block, &name.value)?;
            block.savepoints.truncate(idx);
            Ok(Some(tag("RELEASE")))
        }
        _ => Ok(None),
    }
}

/// Ends the transaction block, if any: the next one starts from the session's defaults.
fn end_block(session: &mut Session) -> Option<Block> {
    let block = session.block.take()?;
    let default = session
        .settings
        .get("default_transaction_isolation")
        .unwrap_or("repeatable read")
        .to_string();
    // The default was validated when it was set.
    let _ = show_isolation(session, &default);
    Some(block)
}

/// Makes `transaction_isolation` show `level`, for SHOW and for current_setting().
fn show_isolation(session: &mut Session, level: &str) -> Result<()> {
    if session.settings.get("transaction_isolation") == Some(level) {
        return Ok(());
    }
    session.settings.set("transaction_isolation", level)?;
    if let Some(ctx) = crate::pg_catalog::PgContext::of(&session.state) {
        ctx.set_settings(session.settings.all());
    }
    Ok(())
}

/// The level's name as PostgreSQL's `SHOW transaction_isolation` prints it.
fn isolation_name(level: &ast::TransactionIsolationLevel) -> Result<&'static str> {
    use ast::TransactionIsolationLevel as Level;
    Ok(match level {
        Level::ReadUncommitted => "read uncommitted",
        Level::ReadCommitted => "read committed",
        Level::RepeatableRead => "repeatable read",
        Level::Serializable => "serializable",
        Level::Snapshot => return Err(Error::syntax("syntax error at or near \"SNAPSHOT\"")),
    })
}

/// Whether each statement of a block at this level reads a new snapshot: READ COMMITTED (and
/// READ UNCOMMITTED, which PostgreSQL runs as READ COMMITTED). REPEATABLE READ and SERIALIZABLE
/// keep the first statement's snapshot (Weft runs SERIALIZABLE as snapshot isolation).
pub(crate) fn reads_committed(level: &str) -> bool {
    matches!(level, "read committed" | "read uncommitted")
}

/// `SET TRANSACTION ISOLATION LEVEL …` or `SET transaction_isolation = …`: in a block, before
/// its first query, changes the block's level; after one it is 25001, as in PostgreSQL.
fn set_block_isolation(session: &mut Session, level: &str) -> Result<()> {
    let Some(b) = &mut session.block else {
        return Ok(());
    };
    if !b.untouched {
        return Err(Error::Detailed {
            code: "25001",
            message: "SET TRANSACTION ISOLATION LEVEL must be called before any query".into(),
            detail: None,
            hint: None,
            object: Default::default(),
        });
    }
    b.read_committed = reads_committed(level);
    show_isolation(session, level)
}

fn in_block<'a>(session: &'a mut Session, what: &str) -> Result<&'a mut Block> {
    session
        .block
        .as_mut()
        .ok_or_else(|| Error::NoActiveTransaction {
            message: format!("{what} can only be used in transaction blocks"),
        })
}

fn find_savepoint(block: &Block, name: &str) -> Result<usize> {
    block
        .savepoints
        .iter()
        .rposition(|(n, _)| n == name)
        .ok_or_else(|| Error::InvalidSavepoint {
            message: format!("savepoint \"{name}\" does not exist"),
        })
}

fn rollback_to(session: &mut Session, name: &str) -> Result<QueryOutput> {
    let block = in_block(session, "ROLLBACK TO SAVEPOINT")?;
    let idx = find_savepoint(block, name)?;
    let sp = block.savepoints[idx].1;
    block.txn.rollback_to(sp);
    block.savepoints.truncate(idx + 1);
    block.failed = false;
    let view = view_of(&block.txn);
    session.shared.set_read(Some(view));
    Ok(tag("ROLLBACK"))
}

async fn begin(session: &mut Session, modes: &[ast::TransactionMode]) -> Result<QueryOutput> {
    if session.block.is_some() {
        session.notice(
            "WARNING",
            "25001",
            "there is already a transaction in progress",
        );
        return Ok(tag("BEGIN"));
    }
    let mut read_only = session.settings.get("default_transaction_read_only") == Some("on");
    let mut isolation = session
        .settings
        .get("default_transaction_isolation")
        .unwrap_or("repeatable read")
        .to_string();
    for m in modes {
        match m {
            ast::TransactionMode::AccessMode(a) => {
                read_only = matches!(a, ast::TransactionAccessMode::ReadOnly);
            }
            ast::TransactionMode::IsolationLevel(level) => {
                isolation = isolation_name(level)?.to_string();
            }
        }
    }
    show_isolation(session, &isolation)?;
    // In a cluster the read barrier waits for the block's first statement that needs it.
    let barrier = if session.engine.cluster().is_some()
        && session.settings.get("weft.read_consistency") != Some("local")
    {
        BlockBarrier::Pending
    } else {
        BlockBarrier::Done
    };
    let txn = session.engine.storage().begin();
    session.shared.set_read(Some(view_of(&txn)));
    session.block = Some(Block {
        txn,
        failed: false,
        savepoints: Vec::new(),
        read_only,
        barrier,
        untouched: true,
        started: chrono::Utc::now(),
        read_committed: reads_committed(&isolation),
    });
    Ok(tag("BEGIN"))
}

async fn commit(session: &mut Session) -> Result<QueryOutput> {
    let out = commit_block(session).await;
    let committed = matches!(&out, Ok(QueryOutput::Command { tag }) if tag == "COMMIT");
    session.cursors.end_of_block(committed);
    out
}

async fn commit_block(session: &mut Session) -> Result<QueryOutput> {
    session.shared.set_read(None);
    match end_block(session) {
        None => {
            session.notice("WARNING", "25P01", "there is no transaction in progress");
            Ok(tag("COMMIT"))
        }
        Some(b) if b.failed => {
            session.listen_pending.clear();
            Ok(tag("ROLLBACK"))
        }
        Some(mut b) => {
            // Deferred foreign keys: a violation fails the COMMIT, which rolls back.
            if let Err(e) = session.check_deferred(&mut b, crate::dml::foreign::Deferred::AtCommit)
            {
                session.listen_pending.clear();
                return Err(e);
            }
            b.txn.set_origin(session.pid);
            let pending = std::mem::take(&mut session.listen_pending);
            let listening = session.listen_begin(&pending);
            let committed = b.txn.commit().await;
            session.listen_end(listening, committed.is_ok());
            committed?;
            Ok(tag("COMMIT"))
        }
    }
}

/// `SET CONSTRAINTS { ALL | name, … } { DEFERRED | IMMEDIATE }` (`names` empty for ALL): the
/// mode of deferrable foreign keys for the rest of the transaction. Made IMMEDIATE, their
/// pending checks run now, as in PostgreSQL. Outside a transaction block it only warns.
pub(crate) fn set_constraints(
    session: &mut Session,
    names: &[Vec<String>],
    deferred: bool,
) -> Result<QueryOutput> {
    let Some(b) = &mut session.block else {
        session.notice(
            "WARNING",
            "25P01",
            "SET CONSTRAINTS can only be used in transaction blocks",
        );
        return Ok(tag("SET CONSTRAINTS"));
    };
    let catalog = b.txn.catalog();
    let mut keys = Vec::new();
    for parts in names {
        let database = crate::pg_catalog::PgContext::of(&session.state)
            .map(|c| c.database().to_string())
            .unwrap_or_default();
        let (schema, name) = match &parts[..] {
            [name] => (None, name),
            [schema, name] => (Some(schema), name),
            [db, schema, name] if *db == database => (Some(schema), name),
            [_, _, _] => {
                return Err(Error::Detailed {
                    code: "0A000",
                    message: format!(
                        "cross-database references are not implemented: \"{}\"",
                        parts.join(".")
                    ),
                    detail: None,
                    hint: None,
                    object: Default::default(),
                })
            }
            _ => {
                return Err(Error::Syntax {
                    message: format!(
                        "improper qualified name (too many dotted names): {}",
                        parts.join(".")
                    ),
                    position: None,
                })
            }
        };
        if let Some(schema) = schema.filter(|s| *s != "public") {
            return Err(Error::Detailed {
                code: "3F000",
                message: format!("schema \"{schema}\" does not exist"),
                detail: None,
                hint: None,
                object: Default::default(),
            });
        }
        let not_deferrable = || Error::WrongObjectType {
            message: format!("constraint \"{name}\" is not deferrable"),
        };
        // As in PostgreSQL, a constraint that is not deferrable may be named IMMEDIATE (it is
        // already), not DEFERRED.
        let mut found = false;
        for def in catalog.tables() {
            for fk in def.foreign_keys.iter().filter(|fk| fk.name == *name) {
                found = true;
                if fk.deferrable {
                    keys.push((def.id, fk.name.clone()));
                } else if deferred {
                    return Err(not_deferrable());
                }
            }
            let pkey = def.pkey_name == *name
                && def
                    .primary_key
                    .iter()
                    .all(|&p| def.columns.get(p).is_some_and(|c| !c.hidden));
            let unique = def
                .indexes
                .iter()
                .any(|ix| ix.name == *name && ix.constraint);
            if pkey || unique || def.checks.iter().any(|c| c.name == *name) {
                found = true;
                if deferred {
                    return Err(not_deferrable());
                }
            }
        }
        if !found {
            return Err(Error::UndefinedObject {
                message: format!("constraint \"{name}\" does not exist"),
            });
        }
    }
    // The modes live in the transaction: its snapshot can no longer be swapped for a new one.
    b.untouched = false;
    if names.is_empty() {
        b.txn.set_fk_mode(None, deferred);
    }
    for key in keys {
        b.txn.set_fk_mode(Some(key), deferred);
    }
    if !deferred {
        if let Some(mut b) = session.block.take() {
            let checked =
                session.check_deferred(&mut b, crate::dml::foreign::Deferred::NowImmediate);
            session.block = Some(b);
            checked?;
        }
    }
    Ok(tag("SET CONSTRAINTS"))
}

fn set_value_text(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn execute_set(session: &mut Session, set: &ast::Set) -> Result<QueryOutput> {
    match set {
        ast::Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = variable.to_string();
            let is_default = values.len() == 1
                && matches!(&values[0], ast::Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default"));
            if name.eq_ignore_ascii_case("transaction_isolation") {
                // Validated and spelled as the setting does; it applies to the block only, and
                // DEFAULT is the session's default level.
                let mut check = session.settings.clone();
                if is_default {
                    let default = check
                        .get("default_transaction_isolation")
                        .unwrap_or("repeatable read")
                        .to_string();
                    check.set(&name, &default)?;
                } else {
                    check.set(
                        &name,
                        &values
                            .iter()
                            .map(set_value_text)
                            .collect::<Vec<_>>()
                            .join(", "),
                    )?;
                }
                let level = check.get(&name).unwrap_or_default().to_string();
                set_block_isolation(session, &level)?;
                return Ok(tag("SET"));
            }
            if is_default {
                session.settings.reset(&name)?;
            } else {
                let value = values
                    .iter()
                    .map(set_value_text)
                    .collect::<Vec<_>>()
                    .join(", ");
                session.settings.set(&name, &value)?;
            }
        }
        ast::Set::SetTimeZone { value, .. } => {
            session.settings.set("TimeZone", &set_value_text(value))?
        }
        ast::Set::SetNames { charset_name, .. } => session
            .settings
            .set("client_encoding", &charset_name.value)?,
        ast::Set::SetTransaction {
            modes,
            session: true,
            ..
        } => {
            for m in modes {
                match m {
                    ast::TransactionMode::AccessMode(a) => {
                        let ro = matches!(a, ast::TransactionAccessMode::ReadOnly);
                        let value = if ro { "on" } else { "off" };
                        session
                            .settings
                            .set("default_transaction_read_only", value)?;
                    }
                    ast::TransactionMode::IsolationLevel(level) => {
                        let level = isolation_name(level)?;
                        session
                            .settings
                            .set("default_transaction_isolation", level)?;
                    }
                }
            }
        }
        ast::Set::SetTransaction { modes, .. } => {
            if session.block.is_none() {
                session.notice(
                    "WARNING",
                    "25P01",
                    "SET TRANSACTION can only be used in transaction blocks",
                );
            }
            for m in modes {
                match m {
                    ast::TransactionMode::AccessMode(a) => {
                        let ro = matches!(a, ast::TransactionAccessMode::ReadOnly);
                        if let Some(b) = &mut session.block {
                            b.read_only = ro;
                        }
                    }
                    ast::TransactionMode::IsolationLevel(level) => {
                        set_block_isolation(session, isolation_name(level)?)?;
                    }
                }
            }
        }
        other => return Err(Error::unsupported(format!("SET form \"{other}\""))),
    }
    Ok(tag("SET"))
}

/// `SELECT [pg_catalog.]set_config('name', 'value', is_local)` alone, with constant arguments,
/// as pg_dump and ORMs send it: the setting's name and value. It changes the session, so it is
/// run as a SET rather than as a function inside a query.
pub(crate) fn set_config_call(stmt: &ast::Statement) -> Option<(String, String)> {
    let ast::Statement::Query(q) = stmt else {
        return None;
    };
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if !s.from.is_empty() || s.selection.is_some() || s.projection.len() != 1 || q.with.is_some() {
        return None;
    }
    let expr = match &s.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    let ast::Expr::Function(f) = expr else {
        return None;
    };
    let name: Vec<String> = f
        .name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    if !matches!(name.as_slice(), [n] | [_, n] if n == "set_config")
        || !matches!(name.as_slice(), [_] | [_, _])
        || (name.len() == 2 && name[0] != "pg_catalog")
    {
        return None;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let text = |a: &ast::FunctionArg| match a {
        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))) => {
            match &v.value {
                ast::Value::SingleQuotedString(s) => Some(s.clone()),
                _ => None,
            }
        }
        _ => None,
    };
    match list.args.as_slice() {
        [n, v, _] => Some((text(n)?, text(v)?)),
        _ => None,
    }
}
