//! Rewrites of the parsed statement before DataFusion plans it: casts to types Arrow lacks
//! (`uuid`, `json`, `jsonb`) or reads differently (`bytea` input) become calls to the functions
//! that validate and normalize them; `FETCH FIRST n ROWS ONLY` becomes `LIMIT n`;
//! `SET (a, b) = (x, y)` becomes `SET a = x, b = y`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, visit_expressions_mut, Assignment, AssignmentTarget, DataType, Expr, FunctionArg,
    FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, LimitClause, ObjectName,
    Query, VisitMut, VisitorMut,
};

/// Moves an operand out of the expression being replaced.
fn take(e: &mut Box<Expr>) -> Expr {
    std::mem::replace(e.as_mut(), Expr::value(ast::Value::Null))
}

fn call(name: &str, arg: Expr) -> Expr {
    call_with(name, vec![arg])
}

/// The scale a numeric literal (`1.50`, `'2.5e-3'`, `-0.5`) has as PostgreSQL numeric input.
fn literal_scale(e: &Expr) -> Option<u32> {
    let text = match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n.clone(),
            ast::Value::SingleQuotedString(s) => s.trim().to_string(),
            _ => return None,
        },
        Expr::UnaryOp { expr, .. } => return literal_scale(expr),
        Expr::Nested(e) => return literal_scale(e),
        _ => return None,
    };
    let text = text.trim_start_matches(['+', '-']);
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let frac = mantissa.split_once('.').map_or("", |(_, f)| f);
    if !mantissa.chars().all(|c| c.is_ascii_digit() || c == '.') || mantissa.is_empty() {
        return None;
    }
    u32::try_from((i64::try_from(frac.len()).ok()? - exp).max(0)).ok()
}

fn call_with(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn function_for(t: &DataType) -> Option<&'static str> {
    match t {
        DataType::Uuid => Some("weft_uuid"),
        DataType::JSON => Some("weft_json"),
        DataType::JSONB => Some("weft_jsonb"),
        DataType::Bytea => Some("weft_bytea"),
        DataType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("jsonb") => {
            Some("weft_jsonb")
        }
        _ => None,
    }
}

/// PostgreSQL functions DataFusion has under another name or as an operator.
fn postgres_function(f: &mut ast::Function) -> Option<Expr> {
    let name = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())?;
    let args = match &f.args {
        FunctionArguments::List(l) => l.args.clone(),
        _ => return None,
    };
    let exprs: Vec<Expr> = args
        .into_iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    match (name.as_str(), exprs.as_slice()) {
        ("sign", [_]) => {
            f.name = ObjectName::from(vec![Ident::new("signum")]);
            None
        }
        // age(x) is age(current_date, x), as PostgreSQL defines it.
        ("age", [x]) => Some(call_with(
            "age",
            vec![
                Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(Expr::Function(ast::Function {
                        name: ObjectName::from(vec![Ident::new("current_date")]),
                        uses_odbc_syntax: false,
                        parameters: FunctionArguments::None,
                        args: FunctionArguments::None,
                        filter: None,
                        null_treatment: None,
                        over: None,
                        within_group: vec![],
                    })),
                    data_type: DataType::Timestamp(None, ast::TimezoneInfo::None),
                    array: false,
                    format: None,
                },
                x.clone(),
            ],
        )),
        ("variance", [_]) => {
            f.name = ObjectName::from(vec![Ident::new("var_samp")]);
            None
        }
        ("mod", [a, b]) => Some(Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(a.clone()),
            op: ast::BinaryOperator::Modulo,
            right: Box::new(b.clone()),
        }))),
        _ => None,
    }
}

/// `FETCH FIRST n ROWS ONLY` is `LIMIT n` (WITH TIES and PERCENT are left for DataFusion to refuse).
fn fetch_as_limit(q: &mut Query) {
    let Some(fetch) = q.fetch.take_if(|f| !f.with_ties && !f.percent) else {
        return;
    };
    let n = fetch
        .quantity
        .unwrap_or_else(|| Expr::value(ast::Value::Number("1".into(), false)));
    match &mut q.limit_clause {
        Some(LimitClause::LimitOffset { limit, .. }) if limit.is_none() => *limit = Some(n),
        Some(_) => {
            q.fetch = Some(ast::Fetch {
                quantity: Some(n),
                ..fetch
            })
        }
        None => {
            q.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(n),
                offset: None,
                limit_by: vec![],
            })
        }
    }
}

/// `SET (a, b) = (x, y)` is `SET a = x, b = y`; other multi-column forms are left as they are.
fn split_tuple_assignments(assignments: &mut Vec<Assignment>) {
    if !assignments
        .iter()
        .any(|a| matches!(a.target, AssignmentTarget::Tuple(_)))
    {
        return;
    }
    let mut out = Vec::with_capacity(assignments.len());
    for a in assignments.drain(..) {
        let values = match (&a.target, &a.value) {
            (AssignmentTarget::Tuple(cols), Expr::Tuple(values)) if cols.len() == values.len() => {
                values.clone()
            }
            (AssignmentTarget::Tuple(cols), Expr::Nested(v)) if cols.len() == 1 => {
                vec![(**v).clone()]
            }
            _ => {
                out.push(a);
                continue;
            }
        };
        let AssignmentTarget::Tuple(cols) = a.target else {
            continue;
        };
        out.extend(cols.into_iter().zip(values).map(|(c, v)| Assignment {
            target: AssignmentTarget::ColumnName(c),
            value: v,
        }));
    }
    *assignments = out;
}

struct Clauses;

impl VisitorMut for Clauses {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        fetch_as_limit(q);
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &mut ast::Statement) -> ControlFlow<()> {
        match s {
            ast::Statement::Update(u) => split_tuple_assignments(&mut u.assignments),
            ast::Statement::Insert(i) => {
                if let Some(ast::OnInsert::OnConflict(ast::OnConflict {
                    action: ast::OnConflictAction::DoUpdate(du),
                    ..
                })) = &mut i.on
                {
                    split_tuple_assignments(&mut du.assignments)
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites every expression of a statement (or of an expression) in place.
pub(crate) fn rewrite<V: VisitMut>(node: &mut V) {
    let _ = node.visit(&mut Clauses);
    crate::pg_catalog::rewrite(node);
    crate::push::changes::rewrite(node);
    let _ = visit_expressions_mut(node, |e: &mut Expr| {
        let replacement = match e {
            Expr::Cast {
                expr,
                data_type:
                    DataType::Numeric(ast::ExactNumberInfo::None)
                    | DataType::Decimal(ast::ExactNumberInfo::None),
                ..
            } => {
                let operand = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                let mut args = vec![operand];
                if let Some(scale) = literal_scale(&args[0]) {
                    args.push(Expr::value(ast::Value::Number(scale.to_string(), false)));
                }
                Some(call_with("weft_numeric", args))
            }
            Expr::Cast {
                expr, data_type, ..
            } => function_for(data_type).map(|f| {
                call(
                    f,
                    std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null)),
                )
            }),
            Expr::TypedString(ts) => {
                function_for(&ts.data_type).map(|f| call(f, Expr::Value(ts.value.clone())))
            }
            Expr::Function(f) => postgres_function(f),
            Expr::Extract { field, expr, .. } => Some(call_with(
                "weft_extract",
                vec![
                    Expr::value(ast::Value::SingleQuotedString(
                        field.to_string().to_lowercase(),
                    )),
                    take(expr),
                ],
            )),
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => Some(call_with(
                "weft_at_time_zone",
                vec![take(timestamp), take(time_zone)],
            )),
            Expr::SimilarTo {
                negated,
                expr,
                pattern,
                escape_char,
            } => {
                let mut args = vec![take(pattern)];
                args.extend(escape_char.take().map(Expr::Value));
                Some(Expr::BinaryOp {
                    left: Box::new(take(expr)),
                    op: if *negated {
                        ast::BinaryOperator::PGRegexNotMatch
                    } else {
                        ast::BinaryOperator::PGRegexMatch
                    },
                    right: Box::new(call_with("similar_to_escape", args)),
                })
            }
            _ => None,
        };
        if let Some(r) = replacement {
            *e = r;
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn casts_to_uuid_and_jsonb_become_calls() {
        let mut stmts = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT '{}'::jsonb, CAST(x AS uuid), jsonb '[1]'",
        )
        .unwrap_or_default();
        assert_eq!(stmts.len(), 1);
        rewrite(&mut stmts[0]);
        let text = stmts[0].to_string();
        assert!(text.contains("weft_jsonb('{}')"), "{text}");
        assert!(text.contains("weft_uuid(x)"), "{text}");
        assert!(text.contains("weft_jsonb('[1]')"), "{text}");
    }
}
