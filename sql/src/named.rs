//! SQL-level prepared statements: `PREPARE name [(types)] AS statement`, `EXECUTE name[(args)]`,
//! `DEALLOCATE [PREPARE] name | ALL`. A session keeps them by name beside the extended
//! protocol's (which the front end keeps); both are the same [`Prepared`], planned once at
//! PREPARE. EXECUTE's arguments are constant expressions, cast to the parameter types and
//! evaluated when the EXECUTE runs.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::sql::sqlparser::ast;

use crate::error::{Error, ErrorObject, Result};
use crate::session::Prepared;

/// The session's statements prepared with PREPARE, by name.
#[derive(Default)]
pub(crate) struct Named {
    by_name: HashMap<String, Arc<Prepared>>,
}

fn error(code: &'static str, message: String) -> Error {
    Error::Detailed {
        code,
        message,
        detail: None,
        hint: None,
        object: ErrorObject::default(),
    }
}

impl Named {
    pub(crate) fn check_free(&self, name: &str) -> Result<()> {
        if self.by_name.contains_key(name) {
            return Err(error(
                "42P05",
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        Ok(())
    }

    pub(crate) fn insert(&mut self, name: String, prepared: Arc<Prepared>) -> Result<()> {
        self.check_free(&name)?;
        self.by_name.insert(name, prepared);
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<Prepared>> {
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| undefined(name))
    }

    /// `DEALLOCATE name` (`ALL`: every one).
    pub(crate) fn deallocate(&mut self, name: &ast::Ident) -> Result<()> {
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            self.by_name.clear();
            return Ok(());
        }
        let name = crate::ddl::ident(name);
        self.by_name
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| undefined(&name))
    }

    pub(crate) fn clear(&mut self) {
        self.by_name.clear();
    }
}

fn undefined(name: &str) -> Error {
    error(
        "26000",
        format!("prepared statement \"{name}\" does not exist"),
    )
}

/// The OIDs of PREPARE's declared parameter types.
pub(crate) fn param_oids(types: &[ast::DataType]) -> Result<Vec<u32>> {
    types
        .iter()
        .map(|t| crate::ddl::column_type(t).map(|t| crate::pgtype::PgType::from_storage(t).oid()))
        .collect()
}

/// EXECUTE's arguments, evaluated and cast to the statement's parameter types.
pub(crate) fn arguments(
    state: &SessionState,
    name: &str,
    prepared: &Prepared,
    exprs: &[ast::Expr],
) -> Result<Vec<ScalarValue>> {
    if exprs.len() != prepared.param_types.len() {
        return Err(error(
            "42601",
            format!(
                "wrong number of parameters for prepared statement \"{name}\": expected {}, got {}",
                prepared.param_types.len(),
                exprs.len()
            ),
        ));
    }
    let one_row = crate::eval::rows_only(1)?;
    exprs
        .iter()
        .zip(&prepared.param_types)
        .map(|(e, t)| {
            // `arg::type`, so that a string is read by the type's input function (`'{a,b}'` for
            // text[], `'epoch'` for a date), as PostgreSQL reads an unknown literal.
            let data_type = datafusion::sql::sqlparser::parser::Parser::new(
                &crate::dialect::WeftDialect::default(),
            )
            .try_with_sql(t.display_name())
            .and_then(|mut p| p.parse_data_type())
            .map_err(|e| Error::internal(format!("parameter type {}: {e}", t.display_name())))?;
            let mut e = ast::Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(e.clone()),
                data_type,
                array: false,
                format: None,
            };
            crate::rewrite::rewrite(&mut e);
            let value = crate::eval::compile(state, &e, &DFSchema::empty())?.evaluate(&one_row)?;
            let value = ScalarValue::try_from_array(&value, 0).map_err(Error::from)?;
            crate::query::cast_param(value, &t.to_arrow())
        })
        .collect()
}
