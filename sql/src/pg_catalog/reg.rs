//! The object-identifier types: casts to `oid`, `regclass`, `regtype`, `regnamespace`, `regproc`
//! become these functions (see `rewrite.rs`). A name (`'t'::regclass`) is looked up to its oid;
//! an oid (`c.oid::regclass`) is shown as its name, which is what the cast is for when its
//! operand is a column.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::model::{Model, Relation};
use super::oids;
use super::proc;
use super::types;
use super::udf::{oid, text, utf8, Registry};
use super::views::namespace_name;
use crate::error::{to_df, Error};

/// Splits `schema.name`, folding unquoted parts to lower case.
pub(super) fn split_name(name: &str) -> (Option<String>, String) {
    let fold = |p: &str| {
        let p = p.trim();
        match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(q) => q.replace("\"\"", "\""),
            None => p.to_lowercase(),
        }
    };
    match name.split_once('.') {
        Some((s, n)) if !name.starts_with('"') || name.find("\".").is_some() => {
            (Some(fold(s)), fold(n))
        }
        _ => (None, fold(name)),
    }
}

pub fn lookup_relation<'a>(m: &'a Model, name: &str) -> Option<&'a Relation> {
    let (schema, name) = split_name(name);
    m.relation_by_name(schema.as_deref(), &name)
}

/// regclass output: the name, schema-qualified when not on the search path.
fn relation_name(m: &Model, oid: u32) -> String {
    match m.relation(oid) {
        Some(r) if r.namespace == oids::INFORMATION_SCHEMA_NAMESPACE => {
            format!("information_schema.{}", r.name)
        }
        Some(r) => super::describe::quote_ident(&r.name),
        None => oid.to_string(),
    }
}

fn namespace_oid(name: &str) -> Option<u32> {
    match split_name(name).1.as_str() {
        "pg_catalog" => Some(oids::PG_CATALOG_NAMESPACE),
        "public" => Some(oids::PUBLIC_NAMESPACE),
        "information_schema" => Some(oids::INFORMATION_SCHEMA_NAMESPACE),
        "pg_toast" => Some(oids::PG_TOAST_NAMESPACE),
        _ => None,
    }
}

/// Text that is a number stands for the oid itself, as PostgreSQL's reg* input functions accept.
fn numeric(v: &ScalarValue) -> Option<Option<u32>> {
    match text(v) {
        Some(s) if s.trim().chars().all(|c| c.is_ascii_digit()) && !s.trim().is_empty() => {
            Some(oid(v))
        }
        Some(_) => None,
        None => Some(oid(v)),
    }
}

pub fn register_all(r: &mut Registry) {
    let oid_type = DataType::Int64;
    r.add("weft_oid", &[1], oid_type.clone(), Some("oid"), |_, a| {
        Ok(ScalarValue::Int64(a.first().and_then(oid).map(i64::from)))
    });
    r.add(
        "weft_to_regclass",
        &[1],
        oid_type.clone(),
        Some("oid"),
        |c, a| {
            let v = a.first().unwrap_or(&ScalarValue::Null);
            if let Some(o) = numeric(v) {
                return Ok(ScalarValue::Int64(o.map(i64::from)));
            }
            let name = text(v).unwrap_or_default();
            // A user relation's id is its oid: no model to build (a serial column's DEFAULT
            // casts its sequence's name for every row). pg_catalog comes first on the search
            // path, so its names take the long way.
            let (schema, short) = split_name(name);
            if schema.as_deref().is_none_or(|s| s == "public") && !short.starts_with("pg_") {
                if let Some(e) = c.ctx().catalog().get_by_name(&short) {
                    return Ok(ScalarValue::Int64(Some(i64::from(e.id()))));
                }
            }
            match lookup_relation(c.model(), name) {
                Some(r) => Ok(ScalarValue::Int64(Some(i64::from(r.oid)))),
                None => Err(to_df(Error::UndefinedTable {
                    message: format!("relation \"{name}\" does not exist"),
                })),
            }
        },
    );
    r.add(
        "to_regclass",
        &[1],
        oid_type.clone(),
        Some("oid"),
        |c, a| {
            let found = a
                .first()
                .and_then(text)
                .and_then(|n| lookup_relation(c.model(), n));
            Ok(ScalarValue::Int64(found.map(|r| i64::from(r.oid))))
        },
    );
    r.add("weft_regclass_name", &[1], DataType::Utf8, None, |c, a| {
        Ok(utf8(
            a.first().and_then(oid).map(|o| relation_name(c.model(), o)),
        ))
    });
    r.add(
        "weft_to_regtype",
        &[1],
        oid_type.clone(),
        Some("oid"),
        |_, a| {
            let v = a.first().unwrap_or(&ScalarValue::Null);
            if let Some(o) = numeric(v) {
                return Ok(ScalarValue::Int64(o.map(i64::from)));
            }
            let name = text(v).unwrap_or_default();
            match types::by_name(name) {
                Some(t) => Ok(ScalarValue::Int64(Some(i64::from(t.oid)))),
                None => Err(to_df(Error::UndefinedObject {
                    message: format!("type \"{name}\" does not exist"),
                })),
            }
        },
    );
    r.add("to_regtype", &[1], oid_type.clone(), Some("oid"), |_, a| {
        Ok(ScalarValue::Int64(
            a.first()
                .and_then(text)
                .and_then(types::by_name)
                .map(|t| i64::from(t.oid)),
        ))
    });
    r.add("weft_regtype_name", &[1], DataType::Utf8, None, |_, a| {
        Ok(utf8(a.first().and_then(oid).map(|o| {
            match types::by_oid(o) {
                Some(_) => types::format_type(o, None),
                None => o.to_string(),
            }
        })))
    });
    r.add(
        "weft_to_regnamespace",
        &[1],
        oid_type.clone(),
        Some("oid"),
        |_, a| {
            let v = a.first().unwrap_or(&ScalarValue::Null);
            if let Some(o) = numeric(v) {
                return Ok(ScalarValue::Int64(o.map(i64::from)));
            }
            let name = text(v).unwrap_or_default();
            match namespace_oid(name) {
                Some(o) => Ok(ScalarValue::Int64(Some(i64::from(o)))),
                None => Err(to_df(Error::UndefinedObject {
                    message: format!("schema \"{name}\" does not exist"),
                })),
            }
        },
    );
    r.add(
        "weft_regnamespace_name",
        &[1],
        DataType::Utf8,
        None,
        |_, a| {
            Ok(utf8(a.first().and_then(oid).map(|o| match o {
                oids::PG_CATALOG_NAMESPACE
                | oids::PUBLIC_NAMESPACE
                | oids::INFORMATION_SCHEMA_NAMESPACE
                | oids::PG_TOAST_NAMESPACE => namespace_name(o).to_string(),
                other => other.to_string(),
            })))
        },
    );
    // regproc columns (pg_type.typinput, …) hold names here, so a regproc literal stays a name:
    // `typinput = 'pg_catalog.array_in'::regproc` compares names.
    r.add("weft_to_regproc", &[1], DataType::Utf8, None, |_, a| {
        let v = a.first().unwrap_or(&ScalarValue::Null);
        Ok(utf8(text(v).map(|name| {
            split_name(name.split('(').next().unwrap_or(name)).1
        })))
    });
    r.add("weft_regproc_name", &[1], DataType::Utf8, None, |c, a| {
        let v = a.first().unwrap_or(&ScalarValue::Null);
        if numeric(v).is_none() {
            return Ok(utf8(text(v)));
        }
        Ok(utf8(oid(v).map(|o| match o {
            0 => "-".to_string(),
            o => proc::proc_name(c.model(), o).map_or_else(|| o.to_string(), str::to_string),
        })))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_and_fold() {
        assert_eq!(split_name("T"), (None, "t".to_string()));
        assert_eq!(
            split_name("public.T"),
            (Some("public".to_string()), "t".to_string())
        );
        assert_eq!(split_name("\"T\""), (None, "T".to_string()));
        assert_eq!(
            split_name("pg_catalog.pg_class"),
            (Some("pg_catalog".to_string()), "pg_class".to_string())
        );
    }
}
