//! The catalog as PostgreSQL's system tables describe it: relations (tables, views, indexes, the
//! system catalogs themselves), their attributes, and constraints, with oids. Built from storage's
//! catalog on every scan of a catalog table; each table file only formats what is here.

use std::collections::HashMap;
use std::sync::Arc;

use weft_storage::{Catalog, CatalogEntry, SequenceDef, TableDef, TableId};

use super::oids::{self, CHECK_SLOT, FK_SLOT};
use super::table::Col;
use super::types::storage_type_oid;
use crate::pgtype::{type_modifier, PgType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelKind {
    Table,
    View,
    Index,
    Sequence,
}

impl RelKind {
    pub fn relkind(self) -> char {
        match self {
            RelKind::Table => 'r',
            RelKind::View => 'v',
            RelKind::Index => 'i',
            RelKind::Sequence => 'S',
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub num: i16,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub not_null: bool,
    /// DEFAULT expression as SQL text.
    pub default: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Index {
    pub table_oid: u32,
    /// Attribute numbers of the table's columns, in key order.
    pub keys: Vec<i16>,
    pub unique: bool,
    pub primary: bool,
    /// Per key, the expression an expression index keys on (`lower(email)`, its key 0); empty
    /// if none. (`pg_index.indexprs` stays NULL.)
    pub exprs: Vec<Option<String>>,
    /// A partial index's conditions, each as SQL without parentheses (`deleted_at IS NULL`)
    /// and with them (`(deleted_at IS NULL)`, but `active` bare), as pg_get_indexdef writes it
    /// pretty and plain.
    pub predicate: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: u32,
    pub namespace: u32,
    pub name: String,
    pub kind: RelKind,
    pub columns: Vec<Attribute>,
    pub index: Option<Index>,
    /// A view's defining query.
    pub view_sql: Option<String>,
    pub has_index: bool,
    pub checks: usize,
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub oid: u32,
    pub name: String,
    /// p primary key, u unique, c check.
    pub kind: char,
    pub table_oid: u32,
    pub keys: Vec<i16>,
    pub index_oid: u32,
    /// A check constraint's expression as SQL text.
    pub check: Option<String>,
    /// A foreign key's referenced side.
    pub foreign: Option<Foreign>,
}

/// What a foreign key (`f`) references, and its actions as pg_constraint's letters.
#[derive(Debug, Clone)]
pub struct Foreign {
    pub table_oid: u32,
    pub keys: Vec<i16>,
    pub on_update: char,
    pub on_delete: char,
    pub deferrable: bool,
    pub deferred: bool,
}

/// pg_constraint's letter for a referential action.
fn action_letter(a: weft_storage::FkAction) -> char {
    match a {
        weft_storage::FkAction::NoAction => 'a',
        weft_storage::FkAction::Restrict => 'r',
        weft_storage::FkAction::Cascade => 'c',
        weft_storage::FkAction::SetNull => 'n',
        weft_storage::FkAction::SetDefault => 'd',
    }
}

/// A column's attribute number (its place among the visible columns), by column id.
fn attnum(def: &TableDef, id: u32) -> Option<i16> {
    let pos = def.visible_columns().position(|(_, c)| c.id == id)?;
    i16::try_from(pos + 1).ok()
}

/// The attnums of the columns a CHECK expression reads, in column order (conkey).
fn check_columns(def: &TableDef, expr: &str) -> Vec<i16> {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
    use std::ops::ControlFlow;
    let dialect = crate::dialect::WeftDialect::default();
    let Ok(parsed) = datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
    else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    let _ = visit_expressions(&parsed, |e: &Expr| {
        match e {
            Expr::Identifier(i) => names.push(crate::ddl::ident(i)),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    names.push(crate::ddl::ident(last));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    def.visible_columns()
        .enumerate()
        .filter(|(_, (_, c))| names.contains(&c.name))
        .filter_map(|(i, _)| i16::try_from(i + 1).ok())
        .collect()
}

/// The column names, types and type modifiers of a view, from planning its query.
pub type ViewColumns = HashMap<TableId, Vec<(String, PgType, i32)>>;

/// Catalog tables this model lists as relations: (namespace, name, columns).
pub type SystemRelations = [(u32, &'static str, &'static [(&'static str, Col)], RelKind)];

pub struct Model {
    pub database: String,
    pub user: String,
    pub settings: Vec<(String, String)>,
    pub relations: Vec<Relation>,
    pub constraints: Vec<Constraint>,
    /// Functions a session can call (pg_proc): name and kind (`f` function, `a` aggregate,
    /// `w` window), in name order.
    pub functions: Vec<(String, char)>,
    /// Sequences, each with the (table, column) whose serial or identity default it feeds.
    pub sequences: Vec<(SequenceDef, Option<(String, String)>)>,
    /// COMMENT ON texts of relations (pg_description): (relation oid, attribute number or 0).
    pub comments: std::collections::BTreeMap<(u32, i32), String>,
    /// Sequences owned by a column (pg_depend): (sequence oid, table oid, attribute number,
    /// `a` for serial and OWNED BY or `i` for an identity column).
    pub owned_sequences: Vec<(u32, u32, i16, char)>,
    by_oid: HashMap<u32, usize>,
}

impl Model {
    pub fn build(
        catalog: &Catalog,
        system: &SystemRelations,
        views: &ViewColumns,
        database: String,
        user: String,
    ) -> Model {
        let mut m = Model {
            database,
            user,
            settings: Vec::new(),
            relations: Vec::new(),
            constraints: Vec::new(),
            functions: Vec::new(),
            sequences: Vec::new(),
            comments: std::collections::BTreeMap::new(),
            owned_sequences: Vec::new(),
            by_oid: HashMap::new(),
        };
        for (i, (ns, name, cols, kind)) in system.iter().enumerate() {
            let oid = oids::system_relation(name).unwrap_or(12100 + u32::try_from(i).unwrap_or(0));
            m.relations
                .push(system_relation(oid, *ns, name, cols, *kind));
        }
        for def in catalog.tables() {
            m.add_foreign_keys(catalog, def);
        }
        for entry in catalog.entries.values() {
            match entry {
                CatalogEntry::Table(def) => {
                    for (&key, text) in &def.comments {
                        let num = if key == 0 { Some(0) } else { attnum(def, key) };
                        if let Some(num) = num {
                            m.comments.insert((def.id, i32::from(num)), text.clone());
                        }
                    }
                    m.add_table(def)
                }
                CatalogEntry::View(v) => {
                    for (&key, text) in &v.comments {
                        if let Ok(num) = i32::try_from(key) {
                            m.comments.insert((v.id, num), text.clone());
                        }
                    }
                    m.add_view(v.id, &v.name, &v.query, views)
                }
                CatalogEntry::LiveQuery(l) => m.add_view(l.id, &l.name, &l.query, views),
                CatalogEntry::Sequence(s) => {
                    m.relations.push(Relation {
                        oid: s.id,
                        namespace: oids::PUBLIC_NAMESPACE,
                        name: s.name.clone(),
                        kind: RelKind::Sequence,
                        columns: Vec::new(),
                        index: None,
                        view_sql: None,
                        has_index: false,
                        checks: 0,
                    });
                    let owner = s.owned_by.and_then(|(table, column)| {
                        let t = catalog.table_by_id(table)?;
                        let c = t.columns.iter().find(|c| c.id == column)?;
                        if let Some(num) = attnum(t, column) {
                            let kind = if c.identity.is_some() { 'i' } else { 'a' };
                            m.owned_sequences.push((s.id, t.id, num, kind));
                        }
                        Some((t.name.clone(), c.name.clone()))
                    });
                    m.sequences.push((s.clone(), owner));
                }
            }
        }
        m.by_oid = m
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| (r.oid, i))
            .collect();
        m
    }

    pub fn relation(&self, oid: u32) -> Option<&Relation> {
        self.by_oid.get(&oid).map(|&i| &self.relations[i])
    }

    /// A relation by name, optionally schema-qualified, as a search path of (public, pg_catalog) sees it.
    pub fn relation_by_name(&self, schema: Option<&str>, name: &str) -> Option<&Relation> {
        let ns = match schema {
            Some("public") => Some(oids::PUBLIC_NAMESPACE),
            Some("pg_catalog") => Some(oids::PG_CATALOG_NAMESPACE),
            Some("information_schema") => Some(oids::INFORMATION_SCHEMA_NAMESPACE),
            Some(_) => return None,
            None => None,
        };
        let matching = |r: &&Relation| r.name == name && ns.is_none_or(|n| r.namespace == n);
        match ns {
            Some(_) => self.relations.iter().find(matching),
            None => self
                .relations
                .iter()
                .filter(|r| r.namespace != oids::INFORMATION_SCHEMA_NAMESPACE)
                .filter(matching)
                .min_by_key(|r| r.namespace != oids::PUBLIC_NAMESPACE),
        }
    }

    pub fn constraint(&self, oid: u32) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.oid == oid)
    }

    /// User tables and views (not indexes, not the system catalogs).
    pub fn user_relations(&self) -> impl Iterator<Item = &Relation> {
        self.relations
            .iter()
            .filter(|r| r.namespace == oids::PUBLIC_NAMESPACE)
    }

    pub fn attribute(&self, rel: u32, num: i16) -> Option<&Attribute> {
        self.relation(rel)?.columns.iter().find(|a| a.num == num)
    }

    fn add_foreign_keys(&mut self, catalog: &Catalog, def: &TableDef) {
        for (i, fk) in def.foreign_keys.iter().enumerate() {
            let Some(parent) = catalog.table_by_id(fk.ref_table) else {
                continue;
            };
            let keys: Option<Vec<i16>> = fk.columns.iter().map(|&c| attnum(def, c)).collect();
            let ref_keys: Option<Vec<i16>> =
                fk.ref_columns.iter().map(|&c| attnum(parent, c)).collect();
            let (Some(keys), Some(ref_keys)) = (keys, ref_keys) else {
                continue;
            };
            // The referenced key's index: the primary key's, or the unique index's.
            let index_id = crate::dml::foreign::positions(parent, &fk.ref_columns)
                .ok()
                .and_then(|refs| crate::dml::foreign::unique_key(parent, &refs))
                .map(|k| k.index_id());
            self.constraints.push(Constraint {
                oid: oids::constraint_oid(def.id, FK_SLOT + u32::try_from(i).unwrap_or(0)),
                name: fk.name.clone(),
                kind: 'f',
                table_oid: def.id,
                keys,
                index_oid: index_id.map_or(0, |id| oids::index_oid(parent.id, id)),
                check: None,
                foreign: Some(Foreign {
                    table_oid: parent.id,
                    keys: ref_keys,
                    on_update: action_letter(fk.on_update),
                    on_delete: action_letter(fk.on_delete),
                    deferrable: fk.deferrable,
                    deferred: fk.deferred,
                }),
            });
        }
    }

    fn add_table(&mut self, def: &TableDef) {
        // Attribute numbers count visible columns; the hidden row id has none.
        let mut attnum: Vec<Option<i16>> = Vec::with_capacity(def.columns.len());
        let mut columns = Vec::new();
        for c in &def.columns {
            if c.hidden {
                attnum.push(None);
                continue;
            }
            let num = i16::try_from(columns.len() + 1).unwrap_or(i16::MAX);
            attnum.push(Some(num));
            columns.push(Attribute {
                num,
                name: c.name.clone(),
                type_oid: storage_type_oid(c.data_type),
                typmod: type_modifier(c.data_type),
                not_null: !c.nullable,
                default: c.default.clone(),
            });
        }
        let keys_of = |positions: &[usize]| -> Option<Vec<i16>> {
            positions
                .iter()
                .map(|&p| attnum.get(p).copied().flatten())
                .collect()
        };
        let table_oid = def.id;
        let mut indexes: Vec<(u32, String, Index)> = Vec::new();
        if let Some(keys) = keys_of(&def.primary_key) {
            let oid = oids::constraint_oid(table_oid, 0);
            let index_oid = oids::index_oid(table_oid, 0);
            self.constraints.push(Constraint {
                oid,
                name: def.pkey_name.clone(),
                kind: 'p',
                table_oid,
                keys: keys.clone(),
                index_oid,
                check: None,
                foreign: None,
            });
            let index = Index {
                table_oid,
                keys,
                unique: true,
                primary: true,
                exprs: Vec::new(),
                predicate: Vec::new(),
            };
            indexes.push((index_oid, def.pkey_name.clone(), index));
        }
        for ix in &def.indexes {
            let Some(mut keys) = keys_of(&ix.columns) else {
                continue;
            };
            // An expression's key is 0 in pg_index.indkey, as in PostgreSQL (so that Django's
            // introspection, for one, does not take `lower(email)` for a unique `email`).
            for (i, k) in keys.iter_mut().enumerate() {
                if ix.function(i).is_some() {
                    *k = 0;
                }
            }
            let index_oid = oids::index_oid(table_oid, ix.id);
            // Catalogs written before `constraint` was recorded: a UNIQUE constraint's index has
            // PostgreSQL's `<table>_<columns>_key` name, which CREATE INDEX never generates.
            if ix.constraint || (ix.unique && ix.is_plain_and_total() && ix.name.ends_with("_key"))
            {
                self.constraints.push(Constraint {
                    oid: oids::constraint_oid(table_oid, ix.id),
                    name: ix.name.clone(),
                    kind: 'u',
                    table_oid,
                    keys: keys.clone(),
                    index_oid,
                    check: None,
                    foreign: None,
                });
            }
            indexes.push((
                index_oid,
                ix.name.clone(),
                Index {
                    table_oid,
                    keys,
                    unique: ix.unique,
                    primary: false,
                    exprs: if ix.is_plain() {
                        Vec::new()
                    } else {
                        ix.columns
                            .iter()
                            .enumerate()
                            .map(|(i, &p)| {
                                // As pg_get_indexdef deparses it: `lower((email)::text)` of a
                                // varchar column.
                                let c = &def.columns[p];
                                let name = crate::format::quote_ident(&c.name);
                                let name = match c.data_type {
                                    weft_storage::DataType::Varchar(_)
                                    | weft_storage::DataType::Char(_) => format!("({name})"),
                                    _ => name,
                                };
                                ix.function(i).map(|_| ix.key_name(i, &name, c.data_type))
                            })
                            .collect()
                    },
                    predicate: ix
                        .predicate
                        .iter()
                        .map(|c| {
                            let name = crate::format::quote_ident(&def.columns[c.column()].name);
                            (c.sql(&name, false), c.sql(&name, true))
                        })
                        .collect(),
                },
            ));
        }
        for (i, chk) in def.checks.iter().enumerate() {
            self.constraints.push(Constraint {
                oid: oids::constraint_oid(table_oid, CHECK_SLOT + u32::try_from(i).unwrap_or(0)),
                name: chk.name.clone(),
                kind: 'c',
                table_oid,
                keys: check_columns(def, &chk.expr),
                index_oid: 0,
                check: Some(chk.expr.clone()),
                foreign: None,
            });
        }
        self.relations.push(Relation {
            oid: table_oid,
            namespace: oids::PUBLIC_NAMESPACE,
            name: def.name.clone(),
            kind: RelKind::Table,
            columns: columns.clone(),
            index: None,
            view_sql: None,
            has_index: !indexes.is_empty(),
            checks: def.checks.len(),
        });
        for (oid, name, index) in indexes {
            let cols = index
                .keys
                .iter()
                .enumerate()
                .filter_map(|(i, k)| {
                    let a = columns.iter().find(|a| a.num == *k)?;
                    Some(Attribute {
                        num: i16::try_from(i + 1).unwrap_or(i16::MAX),
                        default: None,
                        ..a.clone()
                    })
                })
                .collect();
            self.relations.push(Relation {
                oid,
                namespace: oids::PUBLIC_NAMESPACE,
                name,
                kind: RelKind::Index,
                columns: cols,
                index: Some(index),
                view_sql: None,
                has_index: false,
                checks: 0,
            });
        }
    }

    fn add_view(&mut self, id: TableId, name: &str, query: &str, views: &ViewColumns) {
        let columns = views
            .get(&id)
            .map(|cols| {
                cols.iter()
                    .enumerate()
                    .map(|(i, (n, t, typmod))| Attribute {
                        num: i16::try_from(i + 1).unwrap_or(i16::MAX),
                        name: n.clone(),
                        type_oid: t.oid(),
                        typmod: *typmod,
                        not_null: false,
                        default: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.relations.push(Relation {
            oid: id,
            namespace: oids::PUBLIC_NAMESPACE,
            name: name.to_string(),
            kind: RelKind::View,
            columns,
            index: None,
            view_sql: Some(query.to_string()),
            has_index: false,
            checks: 0,
        });
    }
}

fn system_relation(
    oid: u32,
    namespace: u32,
    name: &str,
    cols: &[(&str, Col)],
    kind: RelKind,
) -> Relation {
    let columns = cols
        .iter()
        .enumerate()
        .map(|(i, (n, c))| Attribute {
            num: i16::try_from(i + 1).unwrap_or(i16::MAX),
            name: n.to_string(),
            type_oid: col_type_oid(*c),
            typmod: -1,
            not_null: false,
            default: None,
        })
        .collect();
    Relation {
        oid,
        namespace,
        name: name.to_string(),
        kind,
        columns,
        index: None,
        view_sql: None,
        has_index: false,
        checks: 0,
    }
}

/// The PostgreSQL type oid of a catalog column kind.
pub fn col_type_oid(c: Col) -> u32 {
    match c {
        Col::Oid => 26,
        Col::Name => 19,
        Col::Char => 18,
        Col::Text => 25,
        Col::Varchar => 1043,
        Col::Bool => 16,
        Col::Int2 => 21,
        Col::Int4 => 23,
        Col::Int8 => 20,
        Col::Float4 => 700,
        Col::TimestampTz => 1184,
        Col::OidArray => 1028,
        Col::Int2Array => 1005,
        Col::Int2Vector => 22,
        Col::OidVector => 30,
        Col::TextArray => 1009,
        Col::CharArray => 1002,
    }
}

/// Shared, immutable: several catalog scans in one query may use one model.
pub type ModelRef = Arc<Model>;
