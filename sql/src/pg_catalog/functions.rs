//! The system functions psql and drivers call: visibility, privileges, sizes, settings, users,
//! comments (none), and the `pg_get_*def` family.

use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result as DfResult, ScalarValue};

use super::describe;
use super::oids;
use super::roles::{role_name, UTF8_ENCODING};
use super::types;
use super::udf::{boolean, int, oid, text, utf8, Call, Registry};
use crate::error::{to_df, Error};

fn null_text(_: &Call<'_>, _: &[ScalarValue]) -> DfResult<ScalarValue> {
    Ok(ScalarValue::Utf8(None))
}

fn arg(args: &[ScalarValue], i: usize) -> &ScalarValue {
    args.get(i).unwrap_or(&ScalarValue::Null)
}

/// `pg_size_pretty`: bytes, kB, MB, GB, TB, rounding half up past 10240 of a unit.
pub fn size_pretty(bytes: i64) -> String {
    let mut size = bytes;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if size.abs() < 10 * 1024 || unit == "TB" {
            return format!("{size} {unit}");
        }
        size = (size + if size < 0 { -512 } else { 512 }) / 1024;
    }
    format!("{size} PB")
}

pub fn register_all(r: &mut Registry) {
    let bool_true = |_: &Call<'_>, _: &[ScalarValue]| Ok(ScalarValue::Boolean(Some(true)));
    for name in [
        "has_table_privilege",
        "has_schema_privilege",
        "has_database_privilege",
        "has_column_privilege",
        "has_any_column_privilege",
        "has_function_privilege",
        "has_sequence_privilege",
        "has_type_privilege",
        "pg_has_role",
    ] {
        r.add(name, &[2, 3, 4], DataType::Boolean, None, bool_true);
    }
    for name in [
        "pg_function_is_visible",
        "pg_type_is_visible",
        "pg_collation_is_visible",
    ] {
        r.add(name, &[1], DataType::Boolean, None, bool_true);
    }
    r.add(
        "pg_get_serial_sequence",
        &[2],
        DataType::Utf8,
        None,
        |c, a| {
            let (Some(table), Some(column)) = (text(arg(a, 0)), text(arg(a, 1))) else {
                return Ok(ScalarValue::Utf8(None));
            };
            let table = super::reg::split_name(table).1;
            Ok(ScalarValue::Utf8(super::sequences::serial_sequence(
                c.model(),
                &table,
                column,
            )))
        },
    );
    r.add(
        "pg_relation_is_publishable",
        &[1],
        DataType::Boolean,
        None,
        |_, _| Ok(ScalarValue::Boolean(Some(false))),
    );
    r.add(
        "pg_is_in_recovery",
        &[0],
        DataType::Boolean,
        None,
        |_, _| Ok(ScalarValue::Boolean(Some(false))),
    );
    r.add(
        "pg_table_is_visible",
        &[1],
        DataType::Boolean,
        None,
        |c, a| {
            let visible = oid(arg(a, 0))
                .and_then(|o| c.model().relation(o))
                .map(|r| r.namespace != oids::INFORMATION_SCHEMA_NAMESPACE);
            Ok(ScalarValue::Boolean(visible))
        },
    );
    // A comment of a relation (the catalog named, if any, is pg_class) or of one of its columns.
    r.add("obj_description", &[1, 2], DataType::Utf8, None, |c, a| {
        let of_class = a.len() < 2 || text(arg(a, 1)) == Some("pg_class");
        let found = oid(arg(a, 0))
            .filter(|_| of_class)
            .and_then(|o| c.model().comments.get(&(o, 0)).cloned());
        Ok(ScalarValue::Utf8(found))
    });
    r.add("col_description", &[2], DataType::Utf8, None, |c, a| {
        let found = match (
            oid(arg(a, 0)),
            int(arg(a, 1)).and_then(|n| i32::try_from(n).ok()),
        ) {
            (Some(o), Some(n)) if n > 0 => c.model().comments.get(&(o, n)).cloned(),
            _ => None,
        };
        Ok(ScalarValue::Utf8(found))
    });
    r.add(
        "shobj_description",
        &[1, 2],
        DataType::Utf8,
        None,
        null_text,
    );
    for name in [
        "pg_get_statisticsobjdef_columns",
        "pg_get_partkeydef",
        "pg_get_triggerdef",
        "pg_get_ruledef",
    ] {
        r.add(name, &[1, 2], DataType::Utf8, None, null_text);
    }
    for name in [
        "pg_get_function_result",
        "pg_get_function_arguments",
        "pg_get_function_identity_arguments",
    ] {
        r.add(name, &[1], DataType::Utf8, None, |_, _| Ok(utf8(Some(""))));
    }
    r.add(
        "pg_tablespace_location",
        &[1],
        DataType::Utf8,
        None,
        |_, _| Ok(utf8(Some(""))),
    );
    for name in [
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_table_size",
        "pg_indexes_size",
    ] {
        r.add(name, &[1, 2], DataType::Int64, None, |_, a| {
            Ok(ScalarValue::Int64(int(arg(a, 0)).map(|_| 0)))
        });
    }
    r.add("pg_size_pretty", &[1], DataType::Utf8, None, |_, a| {
        Ok(utf8(int(arg(a, 0)).map(size_pretty)))
    });
    r.add("pg_encoding_to_char", &[1], DataType::Utf8, None, |_, a| {
        Ok(utf8(int(arg(a, 0)).map(|e| match e {
            0 => "SQL_ASCII",
            e if e == i64::from(UTF8_ENCODING) => "UTF8",
            _ => "",
        })))
    });
    r.add(
        "pg_char_to_encoding",
        &[1],
        DataType::Int32,
        None,
        |_, a| {
            Ok(ScalarValue::Int32(text(arg(a, 0)).map(|e| {
                if e.eq_ignore_ascii_case("utf8") {
                    UTF8_ENCODING
                } else {
                    -1
                }
            })))
        },
    );
    r.add(
        "pg_get_userbyid",
        &[1],
        DataType::Utf8,
        Some("name"),
        |c, a| Ok(utf8(oid(arg(a, 0)).map(|o| role_name(c.model(), o)))),
    );
    for name in [
        "current_user",
        "session_user",
        "user",
        "current_role",
        "getpgusername",
    ] {
        r.add(name, &[0], DataType::Utf8, Some("name"), |c, _| {
            Ok(utf8(Some(c.ctx().user())))
        });
    }
    r.add("pg_backend_pid", &[0], DataType::Int32, None, |c, _| {
        Ok(ScalarValue::Int32(Some(
            c.ctx()
                .backend_pid
                .load(std::sync::atomic::Ordering::Relaxed),
        )))
    });
    r.add("current_setting", &[1, 2], DataType::Utf8, None, |c, a| {
        let Some(name) = text(arg(a, 0)) else {
            return Ok(ScalarValue::Utf8(None));
        };
        match c.ctx().setting(name) {
            Some(v) => Ok(utf8(Some(v))),
            None if boolean(arg(a, 1)) == Some(true) => Ok(ScalarValue::Utf8(None)),
            None => Err(to_df(Error::UnrecognizedParameter {
                message: format!("unrecognized configuration parameter \"{name}\""),
            })),
        }
    });
    r.add("format_type", &[2], DataType::Utf8, None, |_, a| {
        let typmod = int(arg(a, 1)).and_then(|m| i32::try_from(m).ok());
        Ok(utf8(oid(arg(a, 0)).map(|o| types::format_type(o, typmod))))
    });
    r.add("pg_get_expr", &[2, 3], DataType::Utf8, None, |_, a| {
        Ok(utf8(text(arg(a, 0))))
    });
    r.add("pg_get_indexdef", &[1, 3], DataType::Utf8, None, |c, a| {
        let column = int(arg(a, 1))
            .and_then(|k| i32::try_from(k).ok())
            .unwrap_or(0);
        Ok(utf8(oid(arg(a, 0)).and_then(|o| {
            describe::index_def(c.model(), o, column, boolean(arg(a, 2)) == Some(true))
        })))
    });
    r.add(
        "pg_get_constraintdef",
        &[1, 2],
        DataType::Utf8,
        None,
        |c, a| {
            Ok(utf8(oid(arg(a, 0)).and_then(|o| {
                describe::constraint_def(c.model(), o, boolean(arg(a, 1)) == Some(true))
            })))
        },
    );
    r.add("pg_get_viewdef", &[1, 2], DataType::Utf8, None, |c, a| {
        let m = c.model();
        let rel = match arg(a, 0) {
            v @ (ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_))
                if int(v).is_none() =>
            {
                text(v)
                    .and_then(|n| super::reg::lookup_relation(m, n))
                    .map(|r| r.oid)
            }
            v => oid(v),
        };
        Ok(utf8(rel.and_then(|o| describe::view_def(m, o))))
    });
    r.add("quote_ident", &[1], DataType::Utf8, None, |_, a| {
        Ok(utf8(text(arg(a, 0)).map(describe::quote_ident)))
    });
    // int8 where PostgreSQL says int4: DataFusion's generate_series takes only int8 bounds, and
    // `generate_series(1, array_upper(a, 1))` is how drivers walk an array.
    r.add("array_upper", &[2], DataType::Int64, None, |_, a| {
        Ok(ScalarValue::Int64(array_len(arg(a, 0)).map(i64::from)))
    });
    r.add("array_lower", &[2], DataType::Int64, None, |_, a| {
        Ok(ScalarValue::Int64(array_len(arg(a, 0)).map(|_| 1)))
    });
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    r.add("current_schemas", &[1], list, None, |_, a| {
        let mut schemas = Vec::new();
        if boolean(arg(a, 0)) == Some(true) {
            schemas.push(utf8(Some("pg_catalog")));
        }
        schemas.push(utf8(Some("public")));
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &schemas,
            &DataType::Utf8,
        )))
    });
}

/// PostgreSQL's array_upper(a, 1) for a one-dimensional array: its length, NULL when empty.
fn array_len(v: &ScalarValue) -> Option<i32> {
    let n = match v {
        ScalarValue::List(l) => (!l.is_null(0)).then(|| l.value_length(0)),
        ScalarValue::LargeList(l) => {
            (!l.is_null(0)).then(|| i32::try_from(l.value_length(0)).unwrap_or(i32::MAX))
        }
        _ => None,
    }?;
    (n > 0).then_some(n)
}
