//! The database and its roles: pg_database (the session's database), pg_roles, pg_authid,
//! pg_user, pg_auth_members. Weft has one superuser role: the session's user.

use super::builtin::DATABASE_OWNER_ROLE;
use super::model::Model;
use super::oids::{DATABASE, DEFAULT_TABLESPACE, SUPERUSER_ROLE};
use super::table::{no_rows, Col, Row, TableDef};
use crate::pg_row;

/// PostgreSQL's encoding number for UTF8.
pub const UTF8_ENCODING: i32 = 6;

pub const PG_DATABASE: TableDef = TableDef {
    name: "pg_database",
    columns: &[
        ("oid", Col::Oid),
        ("datname", Col::Name),
        ("datdba", Col::Oid),
        ("encoding", Col::Int4),
        ("datlocprovider", Col::Char),
        ("datistemplate", Col::Bool),
        ("datallowconn", Col::Bool),
        ("datconnlimit", Col::Int4),
        ("datfrozenxid", Col::Int8),
        ("datminmxid", Col::Int8),
        ("dattablespace", Col::Oid),
        ("datcollate", Col::Text),
        ("datctype", Col::Text),
        ("daticulocale", Col::Text),
        ("datcollversion", Col::Text),
        ("datacl", Col::TextArray),
    ],
    rows: databases,
};

fn databases(m: &Model) -> Vec<Row> {
    vec![pg_row![
        DATABASE,
        m.database.as_str(),
        SUPERUSER_ROLE,
        UTF8_ENCODING,
        'c',
        false,
        true,
        -1i32,
        0i64,
        1i64,
        DEFAULT_TABLESPACE,
        "C",
        "C",
        None::<String>,
        None::<String>,
        None::<String>,
    ]]
}

/// (oid, name, superuser, can log in)
fn roles(m: &Model) -> [(u32, &str, bool, bool); 2] {
    [
        (SUPERUSER_ROLE, m.user.as_str(), true, true),
        (DATABASE_OWNER_ROLE, "pg_database_owner", false, false),
    ]
}

/// `pg_get_userbyid`.
pub fn role_name(m: &Model, oid: u32) -> String {
    roles(m)
        .iter()
        .find(|r| r.0 == oid)
        .map_or_else(|| format!("unknown (OID={oid})"), |r| r.1.to_string())
}

pub const PG_ROLES: TableDef = TableDef {
    name: "pg_roles",
    columns: &[
        ("rolname", Col::Name),
        ("rolsuper", Col::Bool),
        ("rolinherit", Col::Bool),
        ("rolcreaterole", Col::Bool),
        ("rolcreatedb", Col::Bool),
        ("rolcanlogin", Col::Bool),
        ("rolreplication", Col::Bool),
        ("rolconnlimit", Col::Int4),
        ("rolpassword", Col::Text),
        ("rolvaliduntil", Col::TimestampTz),
        ("rolbypassrls", Col::Bool),
        ("rolconfig", Col::TextArray),
        ("oid", Col::Oid),
    ],
    rows: pg_roles,
};

fn pg_roles(m: &Model) -> Vec<Row> {
    roles(m)
        .iter()
        .map(|&(oid, name, sup, login)| {
            pg_row![
                name,
                sup,
                true,
                sup,
                sup,
                login,
                sup,
                -1i32,
                "********",
                None::<i64>,
                sup,
                None::<String>,
                oid
            ]
        })
        .collect()
}

pub const PG_AUTHID: TableDef = TableDef {
    name: "pg_authid",
    columns: &[
        ("oid", Col::Oid),
        ("rolname", Col::Name),
        ("rolsuper", Col::Bool),
        ("rolinherit", Col::Bool),
        ("rolcreaterole", Col::Bool),
        ("rolcreatedb", Col::Bool),
        ("rolcanlogin", Col::Bool),
        ("rolreplication", Col::Bool),
        ("rolbypassrls", Col::Bool),
        ("rolconnlimit", Col::Int4),
        ("rolpassword", Col::Text),
        ("rolvaliduntil", Col::TimestampTz),
    ],
    rows: authid,
};

fn authid(m: &Model) -> Vec<Row> {
    roles(m)
        .iter()
        .map(|&(oid, name, sup, login)| {
            pg_row![
                oid,
                name,
                sup,
                true,
                sup,
                sup,
                login,
                sup,
                sup,
                -1i32,
                None::<String>,
                None::<i64>
            ]
        })
        .collect()
}

pub const PG_USER: TableDef = TableDef {
    name: "pg_user",
    columns: &[
        ("usename", Col::Name),
        ("usesysid", Col::Oid),
        ("usecreatedb", Col::Bool),
        ("usesuper", Col::Bool),
        ("userepl", Col::Bool),
        ("usebypassrls", Col::Bool),
        ("passwd", Col::Text),
        ("valuntil", Col::TimestampTz),
        ("useconfig", Col::TextArray),
    ],
    rows: users,
};

fn users(m: &Model) -> Vec<Row> {
    vec![pg_row![
        m.user.as_str(),
        SUPERUSER_ROLE,
        true,
        true,
        true,
        true,
        "********",
        None::<i64>,
        None::<String>
    ]]
}

pub const PG_AUTH_MEMBERS: TableDef = TableDef {
    name: "pg_auth_members",
    columns: &[
        ("roleid", Col::Oid),
        ("member", Col::Oid),
        ("grantor", Col::Oid),
        ("admin_option", Col::Bool),
    ],
    rows: no_rows,
};
