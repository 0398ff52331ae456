//! Output column names as PostgreSQL gives them. PostgreSQL allows two output columns with one name
//! and names an expression by its function (`count`), cast type (`int4`) or `?column?`; DataFusion
//! requires unique names. The leftmost SELECT of a query gets unique internal aliases before
//! planning, and the PostgreSQL names are put back on the result's fields.

use std::collections::{HashMap, HashSet};

use datafusion::sql::sqlparser::ast;

use crate::ddl::ident;

const PREFIX: &str = "__weft_col";

/// Internal alias → PostgreSQL name.
pub(crate) type Names = HashMap<String, String>;

/// PostgreSQL's FigureColname: the name an unaliased select-list expression gets.
pub(crate) fn figure_name(e: &ast::Expr) -> Option<String> {
    figure(e).map(|(name, _)| name)
}

/// A name and whether it is strong (a column or function name) rather than a cast's type name,
/// which an enclosing cast overrides (`'1'::int4::text` is `text`, `x::int4::text` is `x`).
fn figure(e: &ast::Expr) -> Option<(String, bool)> {
    match e {
        ast::Expr::Identifier(i) => Some((ident(i), true)),
        ast::Expr::CompoundIdentifier(parts) => parts.last().map(|p| (ident(p), true)),
        ast::Expr::Function(f) => {
            let name = f.name.0.last().and_then(|p| p.as_ident()).map(ident)?;
            if name == "weft_same" {
                // A cast wrapped by rewrite.rs (`distinct_cast_names`).
                return first_arg(f).and_then(figure);
            }
            match cast_type_of(&name) {
                // A cast rewritten into a call (rewrite.rs) is named like the cast.
                Some(t) => Some(cast_name(first_arg(f), t.into())),
                // Syntax rewritten into a call (rewrite.rs) is named as PostgreSQL names it.
                None => Some((rewritten_syntax(&name).map_or(name, String::from), true)),
            }
        }
        ast::Expr::Substring { shorthand, .. } => {
            Some((if *shorthand { "substr" } else { "substring" }.into(), true))
        }
        ast::Expr::Position { .. } => Some(("position".into(), true)),
        ast::Expr::Trim { trim_where, .. } => Some((
            match trim_where {
                Some(ast::TrimWhereField::Leading) => "ltrim",
                Some(ast::TrimWhereField::Trailing) => "rtrim",
                _ => "btrim",
            }
            .into(),
            true,
        )),
        ast::Expr::Ceil { .. } => Some(("ceil".into(), true)),
        ast::Expr::Floor { .. } => Some(("floor".into(), true)),
        ast::Expr::Overlay { .. } => Some(("overlay".into(), true)),
        ast::Expr::Extract { .. } => Some(("extract".into(), true)),
        ast::Expr::AtTimeZone { .. } => Some(("timezone".into(), true)),
        ast::Expr::Array(_) => Some(("array".into(), true)),
        ast::Expr::Tuple(_) => Some(("row".into(), true)),
        ast::Expr::TypedString(ts) => Some((type_name(&ts.data_type), false)),
        ast::Expr::Cast {
            expr, data_type, ..
        } => Some(cast_name(Some(expr), type_name(data_type))),
        ast::Expr::Nested(e) => figure(e),
        ast::Expr::CompoundFieldAccess { root, .. } => figure(root),
        ast::Expr::Case { .. } => Some(("case".into(), false)),
        ast::Expr::Exists { .. } => Some(("exists".into(), true)),
        ast::Expr::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => s.projection.first().and_then(|item| match item {
                ast::SelectItem::UnnamedExpr(e) => figure(e),
                ast::SelectItem::ExprWithAlias { alias, .. } => Some((ident(alias), true)),
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    }
}

fn cast_name(operand: Option<&ast::Expr>, type_name: String) -> (String, bool) {
    match operand.and_then(figure) {
        Some((name, true)) => (name, true),
        _ => (type_name, false),
    }
}

/// The type a cast rewritten into a call of `function` (rewrite.rs, pg_catalog/rewrite.rs) casts to.
fn cast_type_of(function: &str) -> Option<&'static str> {
    Some(match function {
        "weft_uuid" => "uuid",
        "weft_json" => "json",
        "weft_jsonb" => "jsonb",
        "weft_bytea" => "bytea",
        "weft_numeric" => "numeric",
        "weft_to_regclass" | "weft_regclass_name" => "regclass",
        "weft_to_regtype" | "weft_regtype_name" => "regtype",
        "weft_oid" => "oid",
        "weft_varchar" => "varchar",
        "weft_bpchar" => "bpchar",
        "weft_numeric_array" => "numeric",
        "weft_uuid_array" => "uuid",
        "weft_json_array" => "json",
        "weft_jsonb_array" => "jsonb",
        _ => return None,
    })
}

/// The name PostgreSQL gives the syntax that rewrite.rs turns into a call of `function`.
fn rewritten_syntax(function: &str) -> Option<&'static str> {
    Some(match function {
        "weft_extract" => "extract",
        "array_remove_all" => "array_remove",
        "signum" => "sign",
        "weft_at_time_zone" => "timezone",
        "weft_make_interval" => "make_interval",
        "weft_json_agg" => "json_agg",
        "weft_every" => "every",
        "weft_variance" => "variance",
        "weft_jsonb_agg" => "jsonb_agg",
        "weft_json_object_agg" => "json_object_agg",
        "weft_jsonb_object_agg" => "jsonb_object_agg",
        _ => return None,
    })
}

fn first_arg(f: &ast::Function) -> Option<&ast::Expr> {
    match &f.args {
        ast::FunctionArguments::List(l) => match l.args.first()? {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        },
        _ => None,
    }
}

fn type_name(t: &ast::DataType) -> String {
    use ast::DataType as T;
    match t {
        T::Int(_) | T::Integer(_) | T::Int4(_) => "int4".into(),
        T::BigInt(_) | T::Int8(_) => "int8".into(),
        T::SmallInt(_) | T::Int2(_) => "int2".into(),
        T::Real | T::Float4 => "float4".into(),
        T::Double(_) | T::DoublePrecision | T::Float8 => "float8".into(),
        T::Numeric(_) | T::Decimal(_) | T::Dec(_) => "numeric".into(),
        T::Text => "text".into(),
        T::Varchar(_) | T::CharacterVarying(_) => "varchar".into(),
        T::Char(_) | T::Character(_) => "bpchar".into(),
        T::Bool | T::Boolean => "bool".into(),
        T::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            "timestamptz".into()
        }
        T::Timestamp(..) => "timestamp".into(),
        other => other.to_string().to_lowercase(),
    }
}

fn leftmost_select(body: &mut ast::SetExpr) -> Option<&mut ast::Select> {
    match body {
        ast::SetExpr::Select(s) => Some(s),
        ast::SetExpr::Query(q) => leftmost_select(&mut q.body),
        ast::SetExpr::SetOperation { left, .. } => leftmost_select(left),
        _ => None,
    }
}

/// Gives every select-list expression of the leftmost SELECT a unique internal alias; returns the
/// PostgreSQL names to restore.
pub(crate) fn alias_outputs(stmt: &mut ast::Statement) -> Names {
    let mut names = Names::new();
    let ast::Statement::Query(q) = stmt else {
        return names;
    };
    let _ = ast::VisitMut::visit(q.as_mut(), &mut NameInner);
    let shadowing = qualified_order_names(q);
    let mut renamed: HashMap<String, Option<String>> = HashMap::new();
    let Some(select) = leftmost_select(&mut q.body) else {
        return names;
    };
    let mut seen: HashSet<String> = HashSet::new();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let internal = format!("{PREFIX}{i}");
        // An output named like a column that ORDER BY reads qualified (`SELECT b.id::text …
        // ORDER BY b.id`) takes an internal name: DataFusion sorts by a column it adds to the
        // projection, and a projection may not have both `id` and `b.id`. ORDER BY `id` alone
        // still means the output column, as in PostgreSQL (rewritten below).
        if let ast::SelectItem::ExprWithAlias { alias, .. } = item {
            let name = ident(alias);
            if shadowing.contains(&name) {
                seen.insert(name.clone());
                // Two outputs of that name: a bare ORDER BY of it is ambiguous, left as it is.
                renamed
                    .entry(name.clone())
                    .and_modify(|r| *r = None)
                    .or_insert_with(|| Some(internal.clone()));
                names.insert(internal.clone(), name);
                *alias = ast::Ident::new(internal);
                continue;
            }
        }
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                let plain_column = matches!(
                    e,
                    ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
                );
                let name = figure_name(e).unwrap_or_else(|| "?column?".into());
                if plain_column && seen.insert(name.clone()) {
                    continue;
                }
                seen.insert(name.clone());
                names.insert(internal.clone(), name);
                let expr = std::mem::replace(e, ast::Expr::value(ast::Value::Null));
                *item = ast::SelectItem::ExprWithAlias {
                    expr,
                    alias: ast::Ident::new(internal),
                };
            }
            ast::SelectItem::ExprWithAlias { alias, .. } => {
                let name = ident(alias);
                if !seen.insert(name.clone()) {
                    names.insert(internal.clone(), name);
                    *alias = ast::Ident::new(internal);
                }
            }
            _ => {}
        }
    }
    if let Some(ast::OrderByKind::Expressions(items)) = q.order_by.as_mut().map(|o| &mut o.kind) {
        for item in items {
            if let ast::Expr::Identifier(i) = &item.expr {
                if let Some(Some(internal)) = renamed.get(&ident(i)) {
                    item.expr = ast::Expr::Identifier(ast::Ident::new(internal.clone()));
                }
            }
        }
    }
    names
}

/// The column names a query's own ORDER BY reads qualified (`b.id`), where its body is a SELECT.
fn qualified_order_names(q: &ast::Query) -> HashSet<String> {
    let mut out = HashSet::new();
    let (Some(ast::OrderByKind::Expressions(items)), ast::SetExpr::Select(_)) =
        (q.order_by.as_ref().map(|o| &o.kind), q.body.as_ref())
    else {
        return out;
    };
    for item in items {
        let _ = ast::Visit::visit(&item.expr, &mut QualifiedNames(&mut out));
    }
    out
}

struct QualifiedNames<'a>(&'a mut HashSet<String>);

impl ast::Visitor for QualifiedNames<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &ast::Expr) -> std::ops::ControlFlow<()> {
        if let ast::Expr::CompoundIdentifier(parts) = e {
            if parts.len() > 1 {
                self.0.extend(parts.last().map(ident));
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// Names the select-list expressions of every SELECT as PostgreSQL does (`count`, `?column?`), so
/// that a derived table, a CTE or a subquery shows them under those names (`SELECT * FROM (SELECT
/// count(*) FROM t) s` has a column `count`). The outermost query's leftmost SELECT is then given
/// internal aliases over these by [`alias_outputs`].
struct NameInner;

impl ast::VisitorMut for NameInner {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> std::ops::ControlFlow<()> {
        name_selects(&mut q.body);
        std::ops::ControlFlow::Continue(())
    }
}

fn name_selects(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(s) => name_select(s),
        ast::SetExpr::SetOperation { left, right, .. } => {
            name_selects(left);
            name_selects(right);
        }
        _ => {}
    }
}

/// Aliases each unnamed non-column expression of `select` with its PostgreSQL name, unless another
/// item already has that name (DataFusion needs unique names). An alias equal to an input column's
/// name changes nothing else: GROUP BY and HAVING prefer the input column, ORDER BY the output one,
/// in DataFusion as in PostgreSQL.
fn name_select(select: &mut ast::Select) {
    let mut taken: HashSet<String> = HashSet::new();
    for item in &select.projection {
        match item {
            ast::SelectItem::ExprWithAlias { alias, .. } => {
                taken.insert(ident(alias));
            }
            ast::SelectItem::UnnamedExpr(
                e @ (ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)),
            ) => {
                taken.extend(figure_name(e));
            }
            _ => {}
        }
    }
    for item in select.projection.iter_mut() {
        let ast::SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        if matches!(
            e,
            ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_)
        ) {
            continue;
        }
        let name = figure_name(e).unwrap_or_else(|| "?column?".into());
        if !taken.insert(name.clone()) {
            continue;
        }
        let expr = std::mem::replace(e, ast::Expr::value(ast::Value::Null));
        *item = ast::SelectItem::ExprWithAlias {
            expr,
            alias: ast::Ident::with_quote('"', name),
        };
    }
}

/// The name a result field shows to the client.
pub(crate) fn output_name<'a>(names: &'a Names, field: &'a str) -> &'a str {
    names.get(field).map(String::as_str).unwrap_or(field)
}
