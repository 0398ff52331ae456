//! Rewrites of the SQL that psql and drivers send to the catalogs, into what DataFusion plans:
//!
//! - `pg_catalog.f(...)` → `f(...)`; `OPERATOR(pg_catalog.~)` → `~`; `COLLATE pg_catalog.default`
//!   (and "C", "POSIX") dropped.
//! - casts to `oid`/`regclass`/`regtype`/`regnamespace`/`regproc` → functions (`reg.rs`): a
//!   literal or parameter is looked up to its oid, any other operand is shown as its name; casts
//!   to `pg_catalog.<type>`, `name` and `"char"` → the plain SQL type.
//! - `ARRAY(SELECT e FROM unnest(a) x [WHERE p])` → `array_transform(array_filter(a, x -> p), x -> e)`;
//!   other `ARRAY(subquery)` → `(SELECT array_agg(v) FROM (subquery) AS s(v))`.
//! - a set-returning function in FROM aliased without columns (`generate_series(1, 3) s`) names
//!   its column after the alias, as in PostgreSQL.
//! - a SELECT that inner-joins a catalog that is always empty (pg_policy, pg_publication, …)
//!   returns no rows, so its subqueries never run: they become NULL (DataFusion could not plan
//!   some of them, e.g. correlated set-returning functions).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, JoinOperator, LambdaFunction,
    LambdaFunctionParameter, LambdaSyntax, ObjectName, OneOrManyWithParens, OrderByKind, Query,
    Select, SelectItem, SetExpr, TableAliasColumnDef, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::empty::is_empty_table;

/// Applies every rewrite to a statement (or any other node).
pub fn rewrite<V: VisitMut>(node: &mut V) {
    let _ = node.visit(&mut Rewriter);
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        prune_empty_join(select);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        if let Some(derived) = partition_ancestors(tf) {
            *tf = derived;
            return ControlFlow::Continue(());
        }
        if let TableFactor::Table {
            name,
            args: Some(_),
            alias,
            ..
        } = tf
        {
            strip_pg_catalog(name);
            if let Some(alias) = alias {
                if alias.columns.is_empty() && is_single_column_srf(name) {
                    alias.columns.push(TableAliasColumnDef {
                        name: alias.name.clone(),
                        data_type: None,
                    });
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Some(new) = replacement(e) {
            *e = new;
        }
        ControlFlow::Continue(())
    }
}

/// `pg_partition_ancestors(rel)` in FROM (psql's `\d` asks it): no table is partitioned, so
/// its one row is the relation itself, as `relid`.
fn partition_ancestors(tf: &TableFactor) -> Option<TableFactor> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = tf
    else {
        return None;
    };
    if last_name(name) != "pg_partition_ancestors" {
        return None;
    }
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = args.args.as_slice() else {
        return None;
    };
    let sql = format!("SELECT weft_to_regclass({arg}) AS relid");
    let mut statements = Parser::parse_sql(&crate::dialect::WeftDialect::default(), &sql).ok()?;
    let Some(ast::Statement::Query(subquery)) = statements.pop() else {
        return None;
    };
    Some(TableFactor::Derived {
        lateral: false,
        subquery,
        alias: alias.clone(),
        sample: None,
    })
}

fn take(e: &mut Expr) -> Expr {
    std::mem::replace(e, Expr::value(Value::Null))
}

fn replacement(e: &mut Expr) -> Option<Expr> {
    match e {
        Expr::Function(f) => {
            strip_pg_catalog(&mut f.name);
            // In a select list, one row: the relation itself (see `partition_ancestors`).
            if last_name(&f.name) == "pg_partition_ancestors" {
                if let FunctionArguments::List(list) = &mut f.args {
                    if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] =
                        list.args.as_mut_slice()
                    {
                        return Some(call("weft_to_regclass", vec![take(arg)]));
                    }
                }
            }
            match &mut f.args {
                FunctionArguments::Subquery(q) if last_name(&f.name) == "array" => {
                    Some(if yields_no_rows(q) {
                        call("make_array", vec![])
                    } else {
                        array_subquery(q)
                    })
                }
                _ => None,
            }
        }
        Expr::Subquery(q) if yields_no_rows(q) => Some(Expr::value(Value::Null)),
        Expr::Exists { subquery, negated } if yields_no_rows(subquery) => {
            Some(Expr::value(Value::Boolean(*negated)))
        }
        Expr::BinaryOp {
            op: BinaryOperator::PGCustomBinaryOperator(parts),
            left,
            right,
        } => {
            let op = standard_operator(parts.last()?)?;
            Some(Expr::BinaryOp {
                left: Box::new(take(left)),
                op,
                right: Box::new(take(right)),
            })
        }
        Expr::Collate { expr, collation } => {
            let c = last_name(collation);
            matches!(c.as_str(), "default" | "c" | "posix" | "ucs_basic").then(|| take(expr))
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            if let Some((lookup, show)) = reg_functions(data_type) {
                let literal = matches!(**expr, Expr::Value(_)) || is_placeholder(expr);
                return Some(call(if literal { lookup } else { show }, vec![take(expr)]));
            }
            if let Some(t) = plain_type(data_type) {
                *data_type = t;
            }
            // `'t'::regclass::text` is the name, not the oid.
            if matches!(data_type, DataType::Text | DataType::Varchar(_)) {
                if let Expr::Function(f) = expr.as_ref() {
                    if let Some(show) = name_function(&last_name(&f.name)) {
                        **expr = call(show, vec![take(expr)]);
                    }
                }
            }
            None
        }
        _ => None,
    }
}

/// The function showing an oid found by a reg* lookup function as its name.
fn name_function(lookup: &str) -> Option<&'static str> {
    Some(match lookup {
        "weft_to_regclass" => "weft_regclass_name",
        "weft_to_regtype" | "pg_typeof" => "weft_regtype_name",
        "weft_to_regnamespace" => "weft_regnamespace_name",
        _ => return None,
    })
}

fn is_placeholder(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
}

fn ident_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(|i| i.value.to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect()
}

fn last_name(name: &ObjectName) -> String {
    ident_parts(name).pop().unwrap_or_default()
}

fn strip_pg_catalog(name: &mut ObjectName) {
    if name.0.len() == 2 && ident_parts(name)[0] == "pg_catalog" {
        name.0.remove(0);
    }
}

fn is_single_column_srf(name: &ObjectName) -> bool {
    name.0.len() == 1
        && matches!(
            last_name(name).as_str(),
            "generate_series"
                | "unnest"
                | "generate_subscripts"
                | "regexp_split_to_table"
                | "string_to_table"
        )
}

fn standard_operator(op: &str) -> Option<BinaryOperator> {
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "~~*" => BinaryOperator::PGILikeMatch,
        "!~~" => BinaryOperator::PGNotLikeMatch,
        "!~~*" => BinaryOperator::PGNotILikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        "*" => BinaryOperator::Multiply,
        "/" => BinaryOperator::Divide,
        "%" => BinaryOperator::Modulo,
        "||" => BinaryOperator::StringConcat,
        _ => return None,
    })
}

/// The name of a type PostgreSQL knows and sqlparser leaves as `Custom`: `pg_catalog.int4`,
/// `name`, `"char"`, `oid`, `regclass`.
fn custom_name(t: &DataType) -> Option<String> {
    match t {
        DataType::Regclass => Some("regclass".into()),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            let parts = ident_parts(name);
            match parts.as_slice() {
                [n] => Some(n.clone()),
                [schema, n] if schema == "pg_catalog" => Some(n.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// (function for a literal, function for any other operand) of a cast to an oid type.
fn reg_functions(t: &DataType) -> Option<(&'static str, &'static str)> {
    Some(match custom_name(t)?.as_str() {
        "oid" => ("weft_oid", "weft_oid"),
        "regclass" => ("weft_to_regclass", "weft_regclass_name"),
        "regtype" => ("weft_to_regtype", "weft_regtype_name"),
        "regnamespace" => ("weft_to_regnamespace", "weft_regnamespace_name"),
        "regproc" | "regprocedure" => ("weft_to_regproc", "weft_regproc_name"),
        _ => return None,
    })
}

/// The standard type a `pg_catalog.`-qualified or PostgreSQL-only type name means.
fn plain_type(t: &DataType) -> Option<DataType> {
    if let DataType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, size)) = t {
        let inner = plain_type(inner)?;
        return Some(DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(inner),
            *size,
        )));
    }
    let name = custom_name(t)?;
    match name.as_str() {
        "name" | "char" | "bpchar" | "regconfig" => Some(DataType::Text),
        "oid" | "regclass" | "regtype" | "regnamespace" | "regproc" | "regprocedure" => {
            Some(DataType::BigInt(None))
        }
        "int2vector" => Some(DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(DataType::SmallInt(None)),
            None,
        ))),
        "oidvector" => Some(DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(DataType::BigInt(None)),
            None,
        ))),
        _ if matches!(t, DataType::Custom(n, _) if n.0.len() == 2) => {
            Parser::new(&crate::dialect::WeftDialect::default())
                .try_with_sql(&name)
                .and_then(|mut p| p.parse_data_type())
                .ok()
        }
        _ => None,
    }
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    call_with(
        name,
        args.into_iter()
            .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
            .collect(),
        vec![],
    )
}

fn call_with(name: &str, args: Vec<FunctionArg>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn lambda(param: &Ident, body: Expr) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Lambda(LambdaFunction {
        params: OneOrManyWithParens::One(LambdaFunctionParameter {
            name: param.clone(),
            data_type: None,
        }),
        body: Box::new(body),
        syntax: LambdaSyntax::Arrow,
    })))
}

fn no_grouping(s: &Select) -> bool {
    matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        && s.having.is_none()
}

fn select_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

/// `ARRAY(SELECT e FROM unnest(a) x [WHERE p])` as array functions, if the subquery has that shape.
fn array_map(q: &Query) -> Option<Expr> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if q.order_by.is_some()
        || q.limit_clause.is_some()
        || q.with.is_some()
        || !no_grouping(s)
        || s.distinct.is_some()
    {
        return None;
    }
    let [item] = s.projection.as_slice() else {
        return None;
    };
    let [from] = s.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name,
        args: Some(args),
        alias: Some(alias),
        ..
    } = &from.relation
    else {
        return None;
    };
    if !from.joins.is_empty() || last_name(name) != "unnest" || name.0.len() != 1 {
        return None;
    }
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.args.as_slice() else {
        return None;
    };
    let var = match alias.columns.as_slice() {
        [] => &alias.name,
        [c] => &c.name,
        _ => return None,
    };
    let mut array = array.clone();
    if let Some(p) = &s.selection {
        array = call_with(
            "array_filter",
            vec![
                FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
                lambda(var, p.clone()),
            ],
            vec![],
        );
    }
    let e = select_expr(item)?;
    if matches!(e, Expr::Identifier(i) if i.value == var.value) {
        return Some(array);
    }
    Some(call_with(
        "array_transform",
        vec![
            FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
            lambda(var, e.clone()),
        ],
        vec![],
    ))
}

/// `ARRAY(SELECT e FROM … [ORDER BY …])` as `(SELECT array_agg(e ORDER BY …) FROM …)`, if the
/// subquery is a plain SELECT of one column.
fn array_agg_inline(q: &Query) -> Option<Expr> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if q.limit_clause.is_some()
        || q.with.is_some()
        || !no_grouping(s)
        || s.distinct.is_some()
        || has_aggregate(&s.projection)
    {
        return None;
    }
    let [item] = s.projection.as_slice() else {
        return None;
    };
    let e = select_expr(item)?.clone();
    let order = match &q.order_by {
        None => vec![],
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(exprs) => exprs
                .iter()
                .map(|by| {
                    let positional = matches!(&by.expr, Expr::Value(v) if v.value == Value::Number("1".into(), false));
                    ast::OrderByExpr {
                        expr: if positional { e.clone() } else { by.expr.clone() },
                        options: by.options,
                        with_fill: None,
                    }
                })
                .collect(),
            OrderByKind::All(_) => return None,
        },
    };
    let clauses = if order.is_empty() {
        vec![]
    } else {
        vec![FunctionArgumentClause::OrderBy(order)]
    };
    let agg = call_with(
        "array_agg",
        vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(e))],
        clauses,
    );
    // ARRAY() of no rows is an empty array, array_agg of none is NULL.
    let agg = call("coalesce", vec![agg, call("make_array", vec![])]);
    let mut q = q.clone();
    q.order_by = None;
    if let SetExpr::Select(s) = q.body.as_mut() {
        s.projection = vec![SelectItem::ExprWithAlias {
            expr: agg,
            alias: Ident::new("array"),
        }];
    }
    Some(Expr::Subquery(Box::new(q)))
}

fn array_subquery(q: &mut Query) -> Expr {
    if let Some(e) = array_map(q).or_else(|| array_agg_inline(q)) {
        return e;
    }
    let template = "(SELECT array_agg(weft_array.v) FROM (SELECT 1) AS weft_array(v))";
    let Ok(mut expr) = Parser::new(&crate::dialect::WeftDialect::default())
        .try_with_sql(template)
        .and_then(|mut p| p.parse_expr())
    else {
        return Expr::value(Value::Null);
    };
    // ORDER BY the one output column (PostgreSQL's `ORDER BY 1`) carries into the aggregate.
    let order = match (&q.order_by, q.body.as_ref()) {
        (Some(ob), SetExpr::Select(s)) => match &ob.kind {
            OrderByKind::Expressions(exprs) if exprs.len() == 1 => {
                let by = &exprs[0];
                let first = s.projection.first().and_then(select_expr);
                let same = matches!(&by.expr, Expr::Value(v) if v.value == Value::Number("1".into(), false))
                    || Some(&by.expr) == first;
                same.then(|| ast::OrderByExpr {
                    expr: Expr::CompoundIdentifier(vec![Ident::new("weft_array"), Ident::new("v")]),
                    options: by.options,
                    with_fill: None,
                })
            }
            _ => None,
        },
        _ => None,
    };
    if let Expr::Subquery(outer) = &mut expr {
        if let SetExpr::Select(s) = outer.body.as_mut() {
            if let (Some(o), Some(SelectItem::UnnamedExpr(Expr::Function(f)))) =
                (order, s.projection.first_mut())
            {
                if let FunctionArguments::List(l) = &mut f.args {
                    l.clauses.push(FunctionArgumentClause::OrderBy(vec![o]));
                }
            }
            if let Some(TableFactor::Derived { subquery, .. }) =
                s.from.first_mut().map(|f| &mut f.relation)
            {
                **subquery = q.clone();
            }
        }
    }
    expr
}

/// The catalog a FROM item names, if it is an always-empty one.
fn empty_catalog(tf: &TableFactor) -> bool {
    match tf {
        TableFactor::Table {
            name, args: None, ..
        } => {
            let parts = ident_parts(name);
            match parts.as_slice() {
                [n] | [_, n] if parts.len() == 1 || parts[0] == "pg_catalog" => is_empty_table(n),
                _ => false,
            }
        }
        _ => false,
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
];

/// Whether the items call an aggregate (outside subqueries).
fn has_aggregate(items: &[SelectItem]) -> bool {
    let mut found = false;
    let mut items = items.to_vec();
    let _ = ast::visit_expressions_mut(&mut items, null_subqueries);
    let _ = ast::visit_expressions_mut(&mut items, |e: &mut Expr| {
        if let Expr::Function(f) = e {
            found |= AGGREGATES.contains(&last_name(&f.name).as_str());
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn null_subqueries(e: &mut Expr) -> ControlFlow<()> {
    match e {
        Expr::Subquery(_) => *e = Expr::value(Value::Null),
        Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)) => {
            *e = Expr::value(Value::Null)
        }
        Expr::Exists { .. } | Expr::InSubquery { .. } => *e = Expr::value(Value::Boolean(false)),
        _ => {}
    }
    ControlFlow::Continue(())
}

/// Whether a SELECT inner-joins an always-empty catalog (and does not aggregate, which would
/// make a row of nothing).
fn select_is_empty(s: &Select) -> bool {
    let inner_only = s.from.iter().all(|t| {
        t.joins.iter().all(|j| {
            matches!(
                j.join_operator,
                JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
            )
        })
    });
    let reads_empty = s
        .from
        .iter()
        .any(|t| empty_catalog(&t.relation) || t.joins.iter().any(|j| empty_catalog(&j.relation)));
    !s.from.is_empty()
        && inner_only
        && reads_empty
        && no_grouping(s)
        && !has_aggregate(&s.projection)
}

fn yields_no_rows(q: &Query) -> bool {
    matches!(q.body.as_ref(), SetExpr::Select(s) if select_is_empty(s))
}

/// A SELECT inner-joining an always-empty catalog yields no rows: its subqueries become NULL.
fn prune_empty_join(s: &mut Select) {
    if !select_is_empty(s) {
        return;
    }
    let _ = ast::visit_expressions_mut(&mut s.projection, null_subqueries);
    let _ = ast::visit_expressions_mut(&mut s.selection, null_subqueries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmts =
            Parser::parse_sql(&crate::dialect::WeftDialect::default(), sql).unwrap_or_default();
        assert_eq!(stmts.len(), 1, "{sql}");
        rewrite(&mut stmts[0]);
        stmts[0].to_string()
    }

    #[test]
    fn psql_spellings_become_plain_sql() {
        let sql = rewritten(
            "SELECT pg_catalog.format_type(a, b) FROM pg_catalog.pg_class c \
             WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default",
        );
        assert_eq!(
            sql,
            "SELECT format_type(a, b) FROM pg_catalog.pg_class c WHERE c.relname ~ '^(t)$'"
        );
    }

    #[test]
    fn casts_to_oid_types_become_functions() {
        let sql = rewritten("SELECT c.oid::pg_catalog.regclass, 'pg_class'::regclass, '5'::oid, x::pg_catalog.text, y::name");
        assert_eq!(sql, "SELECT weft_regclass_name(c.oid), weft_to_regclass('pg_class'), weft_oid('5'), x::TEXT, y::TEXT");
        let sql = rewritten("SELECT 'int4'::regtype::text");
        assert_eq!(
            sql,
            "SELECT weft_regtype_name(weft_to_regtype('int4'))::TEXT"
        );
        let sql =
            rewritten("SELECT t.typ::pg_catalog.regtype::pg_catalog.text, a::pg_catalog.int2[]");
        assert_eq!(sql, "SELECT weft_regtype_name(t.typ)::TEXT, a::INT2[]");
    }

    #[test]
    fn array_subqueries() {
        let sql =
            rewritten("SELECT ARRAY(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x)");
        assert_eq!(
            sql,
            "SELECT array_transform(tc.reloptions, x -> 'toast.' || x)"
        );
        let sql =
            rewritten("SELECT ARRAY(SELECT b.rolname FROM r b WHERE b.oid = m.oid ORDER BY 1)");
        assert_eq!(
            sql,
            "SELECT (SELECT coalesce(array_agg(b.rolname ORDER BY b.rolname), make_array()) AS array \
             FROM r b WHERE b.oid = m.oid)"
        );
        let sql = rewritten("SELECT ARRAY(SELECT DISTINCT x FROM r ORDER BY 1)");
        assert_eq!(
            sql,
            "SELECT (SELECT array_agg(weft_array.v ORDER BY weft_array.v) FROM \
             (SELECT DISTINCT x FROM r ORDER BY 1) AS weft_array (v))"
        );
    }

    #[test]
    fn set_returning_functions_name_their_column_after_the_alias() {
        let sql = rewritten("SELECT s FROM pg_catalog.generate_series(1, 3) s");
        assert_eq!(sql, "SELECT s FROM generate_series(1, 3) s (s)");
    }

    #[test]
    fn subqueries_over_empty_catalogs_are_dropped() {
        let sql = rewritten(
            "SELECT p.x, (SELECT 1 FROM t) FROM pg_catalog.pg_publication p JOIN q ON true",
        );
        assert_eq!(
            sql,
            "SELECT p.x, NULL FROM pg_catalog.pg_publication p JOIN q ON true"
        );
        let kept = rewritten("SELECT count(*), (SELECT 1) FROM pg_catalog.pg_publication p");
        assert!(kept.contains("(SELECT 1)"), "{kept}");
        let sql =
            rewritten("SELECT (SELECT string_agg(a, ',') FROM t) FROM pg_catalog.pg_publication p");
        assert_eq!(sql, "SELECT NULL FROM pg_catalog.pg_publication p");
    }
}
