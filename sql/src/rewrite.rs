//! Rewrites of the parsed statement before DataFusion plans it: casts to types Arrow lacks
//! (`uuid`, `json`, `jsonb`) or reads differently (`bytea` input) become calls to the functions
//! that validate and normalize them; `FETCH FIRST n ROWS ONLY` becomes `LIMIT n`;
//! `SET (a, b) = (x, y)` becomes `SET a = x, b = y`; the column of an `ANY`/`ALL` subquery gets a
//! name of its own.

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
        Expr::Cast {
            expr, data_type, ..
        } => {
            return match data_type {
                DataType::Float8 | DataType::DoublePrecision | DataType::Double(_) => {
                    float_literal_scale(expr, false)
                }
                DataType::Float4 | DataType::Real => float_literal_scale(expr, true),
                _ => None,
            }
        }
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

/// A numeric literal in exponent form (`1e15`, `2.5e300`), which DataFusion reads as a decimal
/// of negative scale (which Arrow's casts mishandle) or not at all: a plain decimal where it fits
/// Decimal128 (`1.5e-5` as `0.000015`, `1e15` as `1000000000000000::numeric(16,0)`), else a
/// float8 where finite (PostgreSQL's numeric holds it; Weft's cannot). None: leave it as it is.
fn exponent_literal(n: &str) -> Option<Expr> {
    let (mantissa, exp) = n.split_once(['e', 'E'])?;
    let exp: i64 = exp.parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let all = format!("{int}{frac}");
    let digits = all.trim_start_matches('0');
    let sig = i64::try_from(digits.len()).ok()?;
    // The value is digits × 10^-scale.
    let scale = i64::try_from(frac.len()).ok()?.checked_sub(exp)?;
    if scale > 0 && sig.max(scale) <= 38 {
        let width = usize::try_from(scale + 1).ok()?;
        let padded = format!("{digits:0>width$}");
        let (i, f) = padded.split_at(padded.len() - (width - 1));
        return Some(Expr::value(ast::Value::Number(format!("{i}.{f}"), false)));
    }
    if scale <= 0 && (digits.is_empty() || sig - scale <= 38) {
        let (text, precision) = if digits.is_empty() {
            ("0".to_string(), 1)
        } else {
            let zeros = usize::try_from(-scale).ok()?;
            (format!("{digits}{}", "0".repeat(zeros)), sig - scale)
        };
        return Some(Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(Expr::value(ast::Value::Number(text, false))),
            data_type: DataType::Numeric(ast::ExactNumberInfo::PrecisionAndScale(
                u64::try_from(precision).ok()?,
                0,
            )),
            array: false,
            format: None,
        });
    }
    let f: f64 = n.parse().ok()?;
    f.is_finite().then(|| Expr::Cast {
        kind: ast::CastKind::DoubleColon,
        expr: Box::new(Expr::value(ast::Value::SingleQuotedString(n.to_string()))),
        data_type: DataType::DoublePrecision,
        array: false,
        format: None,
    })
}

/// The signed text of a numeric literal (`-1.5`, `'2e3'`).
fn literal_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => Some(n.clone()),
            ast::Value::SingleQuotedString(s) => Some(s.trim().to_string()),
            _ => None,
        },
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => literal_text(expr).map(|t| format!("-{t}")),
        Expr::UnaryOp {
            op: ast::UnaryOperator::Plus,
            expr,
        }
        | Expr::Nested(expr) => literal_text(expr),
        _ => None,
    }
}

/// The scale of `literal::float8::numeric` (or `::real::numeric`): PostgreSQL converts a float
/// to numeric through its text with `DBL_DIG` (15) or `FLT_DIG` (6) significant digits.
fn float_literal_scale(e: &Expr, real: bool) -> Option<u32> {
    let v: f64 = literal_text(e)?.parse().ok()?;
    let (v, digits) = if real {
        (f64::from(v as f32), 6)
    } else {
        (v, 15)
    };
    if !v.is_finite() {
        return None;
    }
    let text = format!("{:.*e}", digits - 1, v);
    let (mantissa, exp) = text.split_once('e')?;
    let exp: i64 = exp.parse().ok()?;
    let frac = mantissa
        .split_once('.')
        .map_or("", |(_, f)| f)
        .trim_end_matches('0');
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

/// `f(operand::element[])`: the operand (taken out of its cast) cast to an array of `element`,
/// then handed to the function that finishes the cast.
fn array_cast_call(
    f: &str,
    operand: &mut Box<Expr>,
    kind: &ast::CastKind,
    format: &Option<ast::CastFormat>,
    element: DataType,
    size: Option<u64>,
) -> Expr {
    let cast = Expr::Cast {
        kind: kind.clone(),
        expr: Box::new(std::mem::replace(
            operand.as_mut(),
            Expr::value(ast::Value::Null),
        )),
        data_type: DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(element),
            size,
        )),
        array: false,
        format: format.clone(),
    };
    call(f, cast)
}

/// A cast to `char(n)` or `varchar(n)` as (function, n): bpchar.rs.
fn char_cast(t: &DataType) -> Option<(&'static str, Option<u64>)> {
    let n = |l: &Option<ast::CharacterLength>| match l {
        Some(ast::CharacterLength::IntegerLength { length, .. }) => Some(*length),
        _ => None,
    };
    match t {
        DataType::Char(l) | DataType::Character(l) => Some(("weft_bpchar", n(l))),
        DataType::Varchar(l) | DataType::CharacterVarying(l) | DataType::CharVarying(l) => {
            Some(("weft_varchar", n(l)))
        }
        _ => None,
    }
}

/// A call's positional arguments (named ones and `*` left out).
fn unnamed_exprs(args: &[FunctionArg]) -> Vec<Expr> {
    args.iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// PostgreSQL functions DataFusion has under another name or as an operator.
fn postgres_function(f: &mut ast::Function) -> Option<Expr> {
    let name = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_lowercase())?;
    let exprs = match &f.args {
        FunctionArguments::List(l) => unnamed_exprs(&l.args),
        _ => return None,
    };
    if name == "make_interval" {
        return make_interval(f);
    }
    match (name.as_str(), exprs.as_slice()) {
        ("sign", [_]) => {
            f.name = ObjectName::from(vec![Ident::new("signum")]);
            None
        }
        // timezone(zone, t) is `t AT TIME ZONE zone`.
        ("timezone", [zone, t]) => Some(call_with(
            "weft_at_time_zone",
            vec![t.clone(), zone.clone()],
        )),
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
        // generate_subscripts(a, dim) in a select list: the subscripts of that dimension, as
        // rows beside the other set-returning calls (SQLAlchemy reads index keys so).
        ("generate_subscripts", [a, dim]) => {
            let bound = |f: &str| Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(call_with(f, vec![a.clone(), dim.clone()])),
                data_type: DataType::BigInt(None),
                array: false,
                format: None,
            };
            let upper = Expr::BinaryOp {
                left: Box::new(bound("array_upper")),
                op: ast::BinaryOperator::Plus,
                right: Box::new(Expr::value(ast::Value::Number("1".into(), false))),
            };
            let subscripts = call_with("range", vec![bound("array_lower"), upper]);
            Some(call("unnest", subscripts))
        }
        // PostgreSQL's array_remove removes every equal element, DataFusion's the first.
        ("array_remove", [_, _]) if f.name.0.len() == 1 => {
            f.name = ObjectName::from(vec![Ident::new("array_remove_all")]);
            None
        }
        // quote_nullable(x) is quote_literal(x), or the word NULL for NULL.
        ("quote_nullable", [x]) => Some(call_with(
            "coalesce",
            vec![
                call("quote_literal", x.clone()),
                Expr::value(ast::Value::SingleQuotedString("NULL".into())),
            ],
        )),
        ("json_agg" | "jsonb_agg", [_]) => Some(json_aggregate(f, name == "jsonb_agg")),
        ("json_object_agg" | "jsonb_object_agg", [_, _]) => {
            Some(json_aggregate(f, name == "jsonb_object_agg"))
        }
        ("every", [_]) => {
            f.name = ObjectName::from(vec![Ident::new("weft_every")]);
            None
        }
        ("variance", [_]) => {
            f.name = ObjectName::from(vec![Ident::new("weft_variance")]);
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

/// `make_interval(years, months, weeks, days, hours, mins, secs)`, each argument optional (0) and
/// nameable (`make_interval(days => 3)`), is `weft_make_interval` of all seven. A bare parameter
/// is typed as PostgreSQL infers it (int4; float8 for secs). Anything else is left for
/// DataFusion to refuse (42883), as PostgreSQL refuses an unknown name.
fn make_interval(f: &ast::Function) -> Option<Expr> {
    const NAMES: [&str; 7] = ["years", "months", "weeks", "days", "hours", "mins", "secs"];
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let mut slots: [Option<Expr>; 7] = Default::default();
    let mut named = false;
    for (i, arg) in list.args.iter().enumerate() {
        let (slot, e) = match arg {
            // A positional argument after a named one is refused, as PostgreSQL does.
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) if !named => (i, e),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            }
            | FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                named = true;
                (
                    NAMES
                        .iter()
                        .position(|n| name.value.eq_ignore_ascii_case(n))?,
                    e,
                )
            }
            _ => return None,
        };
        let place = slots.get_mut(slot)?;
        if place.is_some() {
            return None;
        }
        let typed = |t: DataType| Expr::Cast {
            kind: ast::CastKind::DoubleColon,
            expr: Box::new(e.clone()),
            data_type: t,
            array: false,
            format: None,
        };
        *place = Some(match (e, slot) {
            (Expr::Value(v), 6) if matches!(v.value, ast::Value::Placeholder(_)) => {
                typed(DataType::DoublePrecision)
            }
            (Expr::Value(v), _) if matches!(v.value, ast::Value::Placeholder(_)) => {
                typed(DataType::Int(None))
            }
            _ => e.clone(),
        });
    }
    let args = slots
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.unwrap_or_else(|| {
                let zero = if i == 6 { "0.0" } else { "0" };
                Expr::value(ast::Value::Number(zero.into(), false))
            })
        })
        .collect();
    Some(call_with("weft_make_interval", args))
}

/// `json_agg(x …)` is `weft_json_agg(array_agg(<x as json> …))`, and `json_object_agg(k, v …)`
/// `weft_json_object_agg(array_agg(named_struct('k', to_json(k), 'v', to_json(v)) …))`: the
/// aggregate keeps its ORDER BY, DISTINCT, FILTER and OVER; json_fn.rs finishes the text.
fn json_aggregate(f: &ast::Function, jsonb: bool) -> Expr {
    let mut inner = f.clone();
    inner.name = ObjectName::from(vec![Ident::new("array_agg")]);
    let object = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.to_lowercase().ends_with("object_agg"));
    let to_json = if jsonb { "to_jsonb" } else { "to_json" };
    if let FunctionArguments::List(list) = &mut inner.args {
        let exprs = unnamed_exprs(&list.args);
        let arg = match exprs.as_slice() {
            [k, v] if object => call_with(
                "named_struct",
                vec![
                    Expr::value(ast::Value::SingleQuotedString("k".into())),
                    call("to_json", k.clone()),
                    Expr::value(ast::Value::SingleQuotedString("v".into())),
                    call(to_json, v.clone()),
                ],
            ),
            [x] if jsonb => call("to_jsonb", x.clone()),
            [x] => call("weft_json_agg_element", x.clone()),
            _ => return Expr::Function(inner),
        };
        list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))];
    }
    let finish = match (object, jsonb) {
        (false, false) => "weft_json_agg",
        (false, true) => "weft_jsonb_agg",
        (true, false) => "weft_json_object_agg",
        (true, true) => "weft_jsonb_object_agg",
    };
    call(finish, Expr::Function(inner))
}

/// The list function(s) (json_fn.rs, regexp.rs) a set-returning function unnests, and the names
/// of the columns it returns in FROM (None: the column is named after the function, or its
/// alias).
fn list_set_function(
    name: &str,
) -> Option<(&'static [&'static str], &'static [Option<&'static str>])> {
    Some(match name {
        "jsonb_array_elements" | "json_array_elements" => {
            (&["weft_json_elements"], &[Some("value")])
        }
        "jsonb_array_elements_text" | "json_array_elements_text" => {
            (&["weft_json_elements_text"], &[Some("value")])
        }
        "jsonb_object_keys" | "json_object_keys" => (&["weft_json_keys"], &[None]),
        "jsonb_each" | "json_each" => (
            &["weft_json_keys", "weft_json_values"],
            &[Some("key"), Some("value")],
        ),
        "regexp_split_to_table" => (&["regexp_split_to_array"], &[None]),
        "string_to_table" => (&["string_to_array"], &[None]),
        "regexp_matches" => (&["weft_regexp_matches"], &[None]),
        "jsonb_each_text" | "json_each_text" => (
            &["weft_json_keys", "weft_json_values_text"],
            &[Some("key"), Some("value")],
        ),
        _ => return None,
    })
}

/// A set-returning function in FROM that unnests list functions: its name, arguments, alias,
/// list functions and column names (`list_set_function`).
#[allow(clippy::type_complexity)]
fn set_call(
    f: &ast::TableFactor,
) -> Option<(
    String,
    &ast::TableFunctionArgs,
    &Option<ast::TableAlias>,
    &'static [&'static str],
    &'static [Option<&'static str>],
)> {
    let ast::TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = f
    else {
        return None;
    };
    let fname = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(crate::ddl::ident)?;
    let (lists, columns) = list_set_function(&fname)?;
    Some((fname, args, alias, lists, columns))
}

/// `UNNEST(a, …) WITH ORDINALITY`, which DataFusion refuses, is `UNNEST(a, …, range(1, n + 1))`
/// with n the longest array's length: the ordinality column is one more zipped array, numbered
/// from 1 in the arrays' order (`FROM unnest($1::int[]) WITH ORDINALITY AS t(id, n)`). Without
/// column names PostgreSQL calls it `ordinality`.
fn unnest_with_ordinality(s: &mut ast::Select) {
    for factor in from_factors(&mut s.from) {
        let ast::TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality,
            ..
        } = factor
        else {
            continue;
        };
        if !*with_ordinality || array_exprs.is_empty() {
            continue;
        }
        let lengths: Vec<Expr> = array_exprs
            .iter()
            .map(|a| call("cardinality", a.clone()))
            .collect();
        let longest = match lengths.len() {
            1 => lengths
                .into_iter()
                .next()
                .unwrap_or(Expr::value(ast::Value::Null)),
            _ => call_with("greatest", lengths),
        };
        let upper = Expr::BinaryOp {
            left: Box::new(Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(longest),
                data_type: DataType::BigInt(None),
                array: false,
                format: None,
            }),
            op: ast::BinaryOperator::Plus,
            right: Box::new(Expr::value(ast::Value::Number("1".into(), false))),
        };
        let one = Expr::value(ast::Value::Number("1".into(), false));
        array_exprs.push(call_with("range", vec![one, upper]));
        *with_ordinality = false;
        if alias.is_none() && array_exprs.len() == 2 {
            *alias = Some(ast::TableAlias {
                explicit: true,
                name: Ident::new("unnest"),
                columns: vec![ast::TableAliasColumnDef::from_name("unnest")],
                at: None,
            });
        }
        if let Some(alias) = alias {
            if !alias.columns.is_empty() && alias.columns.len() < array_exprs.len() {
                alias
                    .columns
                    .push(ast::TableAliasColumnDef::from_name("ordinality"));
            }
        }
    }
}

/// `LATERAL f(…)` in FROM is parsed as its own kind of table factor; PostgreSQL's functions in
/// FROM are always lateral, so it is the plain call (`LATERAL unnest(…)` an UNNEST). A
/// `generate_series` whose bounds read columns of the tables before it becomes an UNNEST of the
/// select-list form's array, which lateral.rs then computes per row; so does one with a
/// parameter among its bounds (DataFusion calls a table function while planning, before the
/// parameter has a value). Integer bounds that fit in int4 with parameters give an int4 series,
/// as PostgreSQL infers such a parameter to be int4.
fn lateral_functions(s: &mut ast::Select) {
    for factor in from_factors(&mut s.from) {
        if let ast::TableFactor::Function {
            lateral: true,
            name,
            args,
            with_ordinality,
            alias,
        } = factor
        {
            let is_unnest = matches!(name.0.as_slice(), [p]
                if p.as_ident().is_some_and(|i| crate::ddl::ident(i) == "unnest"));
            *factor = if is_unnest {
                ast::TableFactor::UNNEST {
                    alias: alias.take(),
                    array_exprs: unnamed_exprs(args),
                    with_offset: false,
                    with_offset_alias: None,
                    with_ordinality: *with_ordinality,
                }
            } else {
                ast::TableFactor::Table {
                    name: name.clone(),
                    alias: alias.take(),
                    args: Some(ast::TableFunctionArgs {
                        args: std::mem::take(args),
                        settings: None,
                    }),
                    with_hints: vec![],
                    version: None,
                    with_ordinality: *with_ordinality,
                    partitions: vec![],
                    json_path: None,
                    sample: None,
                    index_hints: vec![],
                }
            };
        }
        let ast::TableFactor::Table {
            name,
            args: Some(args),
            alias,
            with_ordinality,
            ..
        } = factor
        else {
            continue;
        };
        if !is_generate_series(name) {
            continue;
        }
        let exprs = unnamed_exprs(&args.args);
        let params = has_params(&exprs);
        if !(reads_columns(&exprs) || params) || exprs.len() != args.args.len() {
            continue;
        }
        let int4 = params
            && exprs.iter().all(|e| match e {
                Expr::Value(v) => match &v.value {
                    ast::Value::Placeholder(_) => true,
                    ast::Value::Number(n, _) => n.parse::<i32>().is_ok(),
                    _ => false,
                },
                _ => false,
            });
        let mut series = call_with("generate_series", exprs);
        if int4 {
            series = Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(series),
                data_type: DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
                    Box::new(DataType::Int(None)),
                    None,
                )),
                array: false,
                format: None,
            };
        }
        let mut alias = alias.take().unwrap_or_else(|| ast::TableAlias {
            explicit: true,
            name: Ident::with_quote('"', "generate_series"),
            columns: Vec::new(),
            at: None,
        });
        if alias.columns.is_empty() {
            alias.columns.push(ast::TableAliasColumnDef::from_name(
                alias.name.value.clone(),
            ));
        }
        *factor = ast::TableFactor::UNNEST {
            alias: Some(alias),
            array_exprs: vec![series],
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: *with_ordinality,
        };
    }
}

/// `jsonb_to_record(j) AS r(a int, b text)` (and `json_to_record`, and the `…_to_recordset`
/// forms over an array of objects) is a derived table, LATERAL so that `j` may read the tables
/// before it, of each named key read as its column's type: `(j ->> 'a')::int`, and `j -> 'b'`
/// for a json or jsonb column, as PostgreSQL's populate functions read them (a key that is
/// absent is NULL). Without a column definition list the call is left for DataFusion to refuse.
fn json_record_functions_in_from(s: &mut ast::Select) {
    for factor in from_factors(&mut s.from) {
        let ast::TableFactor::Table {
            name,
            args: Some(args),
            alias: Some(alias),
            ..
        } = factor
        else {
            continue;
        };
        let Some(fname) = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(crate::ddl::ident)
        else {
            continue;
        };
        let set = match fname.as_str() {
            "jsonb_to_record" | "json_to_record" => false,
            "jsonb_to_recordset" | "json_to_recordset" => true,
            _ => continue,
        };
        let ([arg], false) = (args.args.as_slice(), alias.columns.is_empty()) else {
            continue;
        };
        let row = if set {
            format!("unnest(weft_json_elements({arg}))")
        } else {
            format!("({arg})")
        };
        let mut items = Vec::with_capacity(alias.columns.len());
        for column in &alias.columns {
            let Some(t) = &column.data_type else {
                continue;
            };
            let key = crate::ddl::ident(&column.name).replace('\'', "''");
            let json = matches!(t, DataType::JSON | DataType::JSONB);
            let value = if json {
                format!("({row} -> '{key}')::{t}")
            } else {
                format!("({row} ->> '{key}')::{t}")
            };
            items.push(format!(
                "{value} AS {}",
                Ident::with_quote('"', crate::ddl::ident(&column.name))
            ));
        }
        if items.len() != alias.columns.len() {
            continue;
        }
        let sql = format!("SELECT {}", items.join(", "));
        let Some(query) = parse_query(&sql) else {
            continue;
        };
        let alias = ast::TableAlias {
            columns: Vec::new(),
            ..alias.clone()
        };
        *factor = ast::TableFactor::Derived {
            lateral: true,
            subquery: query,
            alias: Some(alias),
            sample: None,
        };
    }
}

/// A set-returning JSON function in FROM becomes a derived table of `unnest`s of its list
/// function(s) (zipped), with PostgreSQL's column names.
fn json_set_functions_in_from(s: &mut ast::Select) {
    // Aliases whose one column is named after them, and the function's own column name, which
    // PostgreSQL also accepts (`e.value` of `jsonb_array_elements(x) e`).
    let mut renamed: Vec<(String, String)> = Vec::new();
    for factor in from_factors(&mut s.from) {
        let Some((fname, args, alias, lists, columns)) = set_call(factor) else {
            continue;
        };
        let alias = alias.clone();
        let arg_text: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
        if let ([list], [column]) = (lists, columns) {
            // One column: UNNEST, which may refer to the tables before it (LATERAL), its
            // column named after the alias if there is one (`… , jsonb_array_elements(x) e`
            // reads `e`), else `value` or the function's name.
            let Some(call) = parse_expr(&format!("{list}({})", arg_text.join(", "))) else {
                continue;
            };
            let given = alias.is_some();
            let mut alias = alias.clone().unwrap_or_else(|| ast::TableAlias {
                explicit: true,
                name: Ident::with_quote('"', fname.clone()),
                columns: Vec::new(),
                at: None,
            });
            if alias.columns.is_empty() {
                if let (true, Some(own)) = (given, column) {
                    renamed.push((crate::ddl::ident(&alias.name), own.to_string()));
                }
                let column = match column {
                    Some(c) if !given => c.to_string(),
                    _ => alias.name.value.clone(),
                };
                alias
                    .columns
                    .push(ast::TableAliasColumnDef::from_name(column));
            }
            *factor = ast::TableFactor::UNNEST {
                alias: Some(alias),
                array_exprs: vec![call],
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: false,
            };
            continue;
        }
        let alias = alias.clone().unwrap_or_else(|| ast::TableAlias {
            explicit: true,
            name: Ident::with_quote('"', fname.clone()),
            columns: Vec::new(),
            at: None,
        });
        let items: Vec<String> = lists
            .iter()
            .zip(columns.iter())
            .map(|(list, column)| {
                let column = column
                    .map(str::to_string)
                    .unwrap_or_else(|| alias.name.value.clone());
                format!(
                    "unnest({list}({})) AS {}",
                    arg_text.join(", "),
                    Ident::with_quote('"', column)
                )
            })
            .collect();
        let sql = format!("SELECT {}", items.join(", "));
        let Some(query) = parse_query(&sql) else {
            continue;
        };
        *factor = ast::TableFactor::Derived {
            lateral: true,
            subquery: query,
            alias: Some(alias),
            sample: None,
        };
    }
    if renamed.is_empty() {
        return;
    }
    let is_own = |parts: &[Ident]| match parts {
        [qualifier, column] => renamed
            .iter()
            .any(|(a, c)| *a == crate::ddl::ident(qualifier) && *c == crate::ddl::ident(column)),
        _ => false,
    };
    // In the select list the column keeps the name it was read by.
    for item in &mut s.projection {
        if let ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item {
            if is_own(parts) {
                let alias = Ident::with_quote('"', crate::ddl::ident(&parts[1]));
                let expr = Expr::CompoundIdentifier(parts.clone());
                *item = ast::SelectItem::ExprWithAlias { expr, alias };
            }
        }
    }
    let _ = visit_expressions_mut(s, |e: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = e {
            if let [qualifier, column] = parts.as_slice() {
                let q = crate::ddl::ident(qualifier);
                let own = renamed
                    .iter()
                    .any(|(a, c)| *a == q && *c == crate::ddl::ident(column));
                if own {
                    parts[1] = Ident::with_quote('"', q);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
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

/// Names the single output column of `x op ANY/ALL (SELECT …)` `__weft_any`. DataFusion builds
/// the comparison from the column's name; unnamed, `amount = ANY (SELECT amount FROM orders)` run
/// against `orders` compares a column with itself and drops the condition (every row matches).
fn name_compared_column(q: &mut Query) {
    fn name(body: &mut ast::SetExpr) {
        match body {
            ast::SetExpr::Select(s) => {
                if let [item] = s.projection.as_mut_slice() {
                    let expr = match item {
                        ast::SelectItem::UnnamedExpr(e) => e.clone(),
                        ast::SelectItem::ExprWithAlias { expr, .. } => expr.clone(),
                        _ => return,
                    };
                    *item = ast::SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::new("__weft_any"),
                    };
                }
            }
            ast::SetExpr::SetOperation { left, .. } => name(left),
            ast::SetExpr::Query(q) => name(&mut q.body),
            _ => {}
        }
    }
    name(&mut q.body);
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

/// `(a, b) IN (SELECT x, y …)` as a condition of a WHERE (one of its top-level ANDs) is
/// `EXISTS (SELECT 1 FROM (SELECT x, y …) AS __weft_in(c1, c2) WHERE c1 = a AND c2 = b)`:
/// DataFusion plans only single-column IN subqueries. A WHERE keeps a row only when the IN is
/// true, and so does the EXISTS; elsewhere (under NOT, in a select list) an IN that is NULL
/// would become false, so those are left for DataFusion to refuse.
fn row_in_as_exists(where_clause: &mut Expr) {
    match where_clause {
        Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            row_in_as_exists(left);
            row_in_as_exists(right);
        }
        Expr::Nested(e) => row_in_as_exists(e),
        Expr::InSubquery {
            expr,
            subquery,
            negated: false,
        } => {
            let Expr::Tuple(items) = expr.as_ref() else {
                return;
            };
            let columns: Vec<String> = (1..=items.len()).map(|i| format!("c{i}")).collect();
            let matches: Vec<String> = columns
                .iter()
                .zip(items)
                .map(|(c, item)| format!("__weft_in.{c} = ({item})"))
                .collect();
            let sql = format!(
                "EXISTS (SELECT 1 FROM ({subquery}) AS __weft_in({}) WHERE {})",
                columns.join(", "),
                matches.join(" AND ")
            );
            if let Some(exists) = parse_expr(&sql) {
                *where_clause = exists;
            }
        }
        _ => {}
    }
}

fn parse_query(sql: &str) -> Option<Box<Query>> {
    let dialect = crate::dialect::WeftDialect::default();
    datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .ok()
}

/// The items of a FROM list, joined ones included.
fn from_factors(from: &mut [ast::TableWithJoins]) -> impl Iterator<Item = &mut ast::TableFactor> {
    from.iter_mut().flat_map(|t| {
        std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation))
    })
}

fn parse_expr(sql: &str) -> Option<Expr> {
    let dialect = crate::dialect::WeftDialect::default();
    datafusion::sql::sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// The name a table factor's columns are qualified with: its alias, else its table's name.
fn factor_name(f: &ast::TableFactor) -> Option<Ident> {
    match f {
        ast::TableFactor::Table { alias: Some(a), .. }
        | ast::TableFactor::Derived { alias: Some(a), .. } => Some(a.name.clone()),
        ast::TableFactor::Table {
            name, alias: None, ..
        } => name.0.last().and_then(|p| p.as_ident()).cloned(),
        _ => None,
    }
}

/// In `SELECT … FROM a FULL JOIN b USING (k)`, an unqualified `k` is `COALESCE(a.k, b.k)`, as in
/// PostgreSQL (DataFusion reads it as `a.k`, NULL for the rows only `b` has). Only the simple
/// shape — one FROM item, one join — is rewritten.
fn full_join_using(s: &mut ast::Select) {
    let [from] = s.from.as_slice() else {
        return;
    };
    let [join] = from.joins.as_slice() else {
        return;
    };
    let ast::JoinOperator::FullOuter(ast::JoinConstraint::Using(names)) = &join.join_operator
    else {
        return;
    };
    let (Some(left), Some(right)) = (factor_name(&from.relation), factor_name(&join.relation))
    else {
        return;
    };
    let columns: Vec<Ident> = names
        .iter()
        .filter_map(|n| n.0.last().and_then(|p| p.as_ident()).cloned())
        .collect();
    let merged = |id: &Ident| -> Option<Expr> {
        let k = columns.iter().find(|c| c.value == id.value)?;
        parse_expr(&format!("COALESCE({left}.{k}, {right}.{k})"))
    };
    for item in &mut s.projection {
        if let ast::SelectItem::UnnamedExpr(Expr::Identifier(id)) = item {
            if let Some(e) = merged(id) {
                *item = ast::SelectItem::ExprWithAlias {
                    expr: e,
                    alias: id.clone(),
                };
            }
        }
    }
    let replace = |e: &mut Expr| {
        if let Expr::Identifier(id) = e {
            if let Some(m) = merged(id) {
                *e = m;
            }
        }
        ControlFlow::<()>::Continue(())
    };
    let _ = visit_expressions_mut(&mut s.projection, replace);
    let _ = visit_expressions_mut(&mut s.selection, replace);
    let _ = visit_expressions_mut(&mut s.having, replace);
    if let ast::GroupByExpr::Expressions(exprs, _) = &mut s.group_by {
        let _ = visit_expressions_mut(exprs, replace);
    }
}

/// A set-returning function in a select list expands to rows in PostgreSQL; DataFusion's
/// `generate_series` there returns one array, so it is unnested (several are zipped, as
/// PostgreSQL 10 and later do) under the function's name.
fn set_returning_in_select_list(s: &mut ast::Select) {
    for item in &mut s.projection {
        let (expr, alias) = match item {
            ast::SelectItem::UnnamedExpr(e) => (e, None),
            ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => continue,
        };
        let Expr::Function(f) = expr else { continue };
        let Some(name) = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(crate::ddl::ident)
        else {
            continue;
        };
        let schema = match f.name.0.as_slice() {
            [_] => None,
            [schema, _] => schema.as_ident().map(crate::ddl::ident),
            _ => continue,
        };
        if schema.is_some_and(|s| s != crate::pg_catalog::PG_CATALOG) {
            continue;
        }
        let list = match list_set_function(&name) {
            Some(([list], _)) => {
                let mut f = f.clone();
                f.name = ObjectName::from(vec![Ident::new(*list)]);
                Expr::Function(f)
            }
            _ if name == "generate_series" => {
                std::mem::replace(expr, Expr::value(ast::Value::Null))
            }
            _ => continue,
        };
        let small_integers = matches!(&list, Expr::Function(f) if name == "generate_series"
            && matches!(&f.args, FunctionArguments::List(l) if !l.args.is_empty()
                && l.args.iter().all(|a| matches!(a,
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))
                        if matches!(&v.value, ast::Value::Number(n, _)
                            if n.parse::<i32>().is_ok())))));
        let mut unnest = call("unnest", list);
        if small_integers {
            // int4 bounds give an int4 series, as in PostgreSQL (DataFusion's is int8).
            unnest = Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(unnest),
                data_type: DataType::Int(None),
                array: false,
                format: None,
            };
        }
        *item = ast::SelectItem::ExprWithAlias {
            expr: unnest,
            alias: alias.unwrap_or_else(|| Ident::with_quote('"', name)),
        };
    }
}

/// A table function without an alias names its one column after itself, as in PostgreSQL
/// (`SELECT * FROM generate_series(1, 3)` has a column `generate_series`, not `value`).
fn name_table_functions(s: &mut ast::Select) {
    for factor in from_factors(&mut s.from) {
        let (name, alias, unnest) = match factor {
            ast::TableFactor::Table {
                name,
                args: Some(_),
                alias,
                ..
            } => match name.0.last().and_then(|p| p.as_ident()) {
                Some(i) => (crate::ddl::ident(i), alias, false),
                None => continue,
            },
            ast::TableFactor::UNNEST {
                alias, array_exprs, ..
            } if array_exprs.len() == 1 => ("unnest".to_string(), alias, true),
            _ => continue,
        };
        let alias = alias.get_or_insert_with(|| ast::TableAlias {
            explicit: true,
            name: Ident::with_quote('"', name),
            columns: Vec::new(),
            at: None,
        });
        // DataFusion names a table function's column after a bare alias itself, not UNNEST's.
        if unnest && alias.columns.is_empty() {
            alias.columns.push(ast::TableAliasColumnDef::from_name(
                alias.name.value.clone(),
            ));
        }
    }
}

/// `generate_series(start, stop, step)` over timestamps or dates resolves an untyped string bound
/// to the other bound's type and an untyped step to `interval`, as PostgreSQL resolves unknown
/// literals (`generate_series('2020-01-01'::timestamp, '2020-01-31', '1 day')`); DataFusion
/// would take them as text and find no such function.
fn typed_series_args(s: &mut ast::Select) {
    let from = from_factors(&mut s.from).filter_map(|factor| match factor {
        ast::TableFactor::Table {
            name,
            args: Some(args),
            ..
        } if is_generate_series(name) => Some(&mut args.args),
        _ => None,
    });
    let mut lists: Vec<&mut Vec<FunctionArg>> = from.collect();
    for item in &mut s.projection {
        let expr = match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        if let Expr::Function(f) = expr {
            if is_generate_series(&f.name) {
                if let FunctionArguments::List(l) = &mut f.args {
                    lists.push(&mut l.args);
                }
            }
        }
    }
    for args in lists {
        let mut exprs: Vec<&mut Expr> = args
            .iter_mut()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect();
        if exprs.len() != 3 {
            continue;
        }
        let typed = |e: &Expr| match e {
            Expr::Cast { data_type, .. } => Some(data_type.clone()),
            Expr::TypedString(t) => Some(t.data_type.clone()),
            _ => None,
        };
        let Some(bound) = typed(exprs[0]).or_else(|| typed(exprs[1])) else {
            continue;
        };
        if !matches!(
            bound,
            DataType::Timestamp(..) | DataType::TimestampNtz(..) | DataType::Date
        ) {
            continue;
        }
        let untyped = |e: &Expr| matches!(e, Expr::Value(v) if matches!(v.value, ast::Value::SingleQuotedString(_)));
        let cast = |e: &mut Expr, data_type: DataType| {
            let inner = std::mem::replace(e, Expr::value(ast::Value::Null));
            *e = Expr::Cast {
                kind: ast::CastKind::DoubleColon,
                expr: Box::new(inner),
                data_type,
                array: false,
                format: None,
            };
        };
        for e in exprs.iter_mut().take(2) {
            if untyped(e) {
                cast(e, bound.clone());
            }
        }
        if untyped(exprs[2]) {
            cast(
                exprs[2],
                DataType::Interval {
                    fields: None,
                    precision: None,
                },
            );
        }
    }
}

fn is_generate_series(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(crate::ddl::ident))
        .collect();
    matches!(
        parts
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["generate_series"] | ["pg_catalog", "generate_series"]
    )
}

fn rewrite_select(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(s) => {
            full_join_using(s);
            lateral_functions(s);
            typed_series_args(s);
            set_returning_in_select_list(s);
            json_record_functions_in_from(s);
            json_set_functions_in_from(s);
            unnest_with_ordinality(s);
            name_table_functions(s);
            if let Some(w) = &mut s.selection {
                row_in_as_exists(w);
            }
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            rewrite_select(left);
            rewrite_select(right);
        }
        _ => {}
    }
}

/// `e` without its casts: what DataFusion names it by (`sum(CAST(x AS Int64))` is `sum(x)`).
fn without_casts(e: &Expr) -> String {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |e: &mut Expr| {
        if let Expr::Cast { expr, .. } = e {
            *e = take(expr);
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

/// DataFusion names a cast as it names its operand (apache/datafusion#18975), so two calls, or
/// two grouping expressions, of one SELECT that differ only in casts (`sum(x), sum(x::int8)`,
/// `GROUP BY x::int8, x`) have one name, which it refuses ("specified more than once"). In such
/// a SELECT every cast of the select list, DISTINCT ON, GROUP BY, HAVING, QUALIFY, WINDOW and
/// ORDER BY is wrapped in `weft_same` (misc_fn.rs), which passes its operand through and is
/// named after itself: the names differ, and an expression written alike in two clauses is still
/// alike. WHERE is left as it is (the point fast path reads its casts).
fn distinct_cast_names(q: &mut Query) {
    let ast::SetExpr::Select(s) = q.body.as_mut() else {
        return;
    };
    fn casts<T: ast::Visit>(node: &T) -> bool {
        ast::visit_expressions(node, |e: &Expr| match e {
            Expr::Cast { .. } => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    }
    // Names can only collide through a cast: most statements stop here.
    let any_cast = casts(&s.projection)
        || casts(&s.group_by)
        || casts(&s.having)
        || casts(&s.qualify)
        || casts(&q.order_by);
    if !any_cast {
        return;
    }
    let groups = match &s.group_by {
        ast::GroupByExpr::Expressions(exprs, _) => exprs.as_slice(),
        ast::GroupByExpr::All(_) => &[],
    };
    let mut names: std::collections::HashMap<String, String> = Default::default();
    let mut collide = false;
    let mut note = |e: &Expr| {
        let full = e.to_string();
        match names.entry(without_casts(e)) {
            std::collections::hash_map::Entry::Occupied(o) => collide |= *o.get() != full,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(full);
            }
        }
    };
    let calls = |e: &Expr, note: &mut dyn FnMut(&Expr)| {
        let _ = ast::visit_expressions(e, |e: &Expr| {
            if matches!(e, Expr::Function(_)) {
                note(e);
            }
            ControlFlow::<()>::Continue(())
        });
    };
    for e in groups {
        note(e);
        calls(e, &mut note);
    }
    let _ = ast::visit_expressions(&s.projection, |e: &Expr| {
        if matches!(e, Expr::Function(_)) {
            note(e);
        }
        ControlFlow::<()>::Continue(())
    });
    for e in s.having.iter().chain(&s.qualify) {
        calls(e, &mut note);
    }
    if let Some(ast::OrderByKind::Expressions(items)) = q.order_by.as_ref().map(|o| &o.kind) {
        for item in items {
            calls(&item.expr, &mut note);
        }
    }
    if !collide {
        return;
    }
    let wrap = |e: &mut Expr| {
        if let Expr::Cast { .. } = e {
            let cast = std::mem::replace(e, Expr::value(ast::Value::Null));
            *e = call("weft_same", cast);
        }
        ControlFlow::<()>::Continue(())
    };
    let _ = visit_expressions_mut(&mut s.projection, wrap);
    let _ = visit_expressions_mut(&mut s.distinct, wrap);
    let _ = visit_expressions_mut(&mut s.group_by, wrap);
    let _ = visit_expressions_mut(&mut s.having, wrap);
    let _ = visit_expressions_mut(&mut s.qualify, wrap);
    let _ = visit_expressions_mut(&mut s.named_window, wrap);
    let _ = visit_expressions_mut(&mut q.order_by, wrap);
}

struct Clauses;

impl VisitorMut for Clauses {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        fetch_as_limit(q);
        rewrite_select(&mut q.body);
        distinct_cast_names(q);
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

/// A FROM item's name used as a value (`SELECT t FROM t`, `row_to_json(t)`, `json_agg(t)`) is
/// the row of its columns, as in PostgreSQL: `named_struct('a', t.a, …)`. The columns come from
/// the catalog (a table) or from a derived table's select list when each item is named. Runs at
/// planning time, on the catalog the statement is planned against.
pub(crate) fn whole_rows(stmt: &mut ast::Statement, catalog: &weft_storage::Catalog) {
    struct Rows<'a>(&'a weft_storage::Catalog);
    impl VisitorMut for Rows<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            if let ast::SetExpr::Select(s) = q.body.as_mut() {
                whole_rows_in(s, self.0);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = stmt.visit(&mut Rows(catalog));
}

/// The columns of a FROM item, if known without planning.
fn factor_columns(f: &ast::TableFactor, catalog: &weft_storage::Catalog) -> Option<Vec<String>> {
    match f {
        ast::TableFactor::Derived { alias: Some(a), .. } if !a.columns.is_empty() => {
            Some(a.columns.iter().map(|c| ident(&c.name)).collect())
        }
        ast::TableFactor::Table {
            name, args: None, ..
        } => {
            let table = catalog.table(&crate::ddl::ident(name.0.last()?.as_ident()?))?;
            Some(
                table
                    .columns
                    .iter()
                    .filter(|c| !c.hidden)
                    .map(|c| c.name.clone())
                    .collect(),
            )
        }
        ast::TableFactor::Derived { subquery, .. } => {
            let ast::SetExpr::Select(s) = subquery.body.as_ref() else {
                return None;
            };
            let mut names = Vec::new();
            for item in &s.projection {
                match item {
                    ast::SelectItem::ExprWithAlias { alias, .. } => names.push(ident(alias)),
                    ast::SelectItem::UnnamedExpr(Expr::Identifier(i)) => names.push(ident(i)),
                    ast::SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                        names.push(ident(parts.last()?))
                    }
                    ast::SelectItem::Wildcard(_)
                        if s.from.len() == 1 && s.from[0].joins.is_empty() =>
                    {
                        names.extend(factor_columns(&s.from[0].relation, catalog)?)
                    }
                    _ => return None,
                }
            }
            Some(names)
        }
        _ => None,
    }
}

fn ident(i: &Ident) -> String {
    crate::ddl::ident(i)
}

fn whole_rows_in(s: &mut ast::Select, catalog: &weft_storage::Catalog) {
    let mut scope: Vec<(String, Option<Vec<String>>)> = Vec::new();
    // Items of an outer join may be NULL-extended, where PostgreSQL's row is NULL and a row of
    // NULL columns would be a wrong answer: their names are left alone (an error, 42703).
    let mut outer: Vec<String> = Vec::new();
    for t in &s.from {
        let inner = t.joins.iter().all(|j| {
            matches!(
                j.join_operator,
                ast::JoinOperator::Join(_)
                    | ast::JoinOperator::Inner(_)
                    | ast::JoinOperator::CrossJoin(_)
            )
        });
        for f in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let Some(name) = factor_name(f) {
                if !inner {
                    outer.push(ident(&name));
                }
                scope.push((ident(&name), factor_columns(f, catalog)));
            }
        }
    }
    if scope.is_empty() {
        return;
    }
    // A column of that name wins over the row, as in PostgreSQL; unknown columns: leave it.
    let is_column = |n: &str| {
        scope
            .iter()
            .any(|(_, cols)| cols.as_ref().is_none_or(|c| c.iter().any(|c| c == n)))
    };
    let rows: Vec<(String, Vec<String>)> = scope
        .iter()
        .filter_map(|(name, cols)| Some((name.clone(), cols.clone()?)))
        .filter(|(name, _)| !is_column(name) && !outer.contains(name))
        .collect();
    if rows.is_empty() {
        return;
    }
    for item in &mut s.projection {
        let expr = match item {
            ast::SelectItem::UnnamedExpr(e) => e,
            ast::SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => continue,
        };
        // `SELECT t FROM t` keeps the name `t`.
        if let Expr::Identifier(i) = expr {
            let name = ident(i);
            if rows.iter().any(|(n, _)| *n == name) {
                let i = i.clone();
                let value = std::mem::replace(expr, Expr::value(ast::Value::Null));
                *item = ast::SelectItem::ExprWithAlias {
                    expr: value,
                    alias: Ident::with_quote('"', ident(&i)),
                };
            }
        }
        let expr = match item {
            ast::SelectItem::UnnamedExpr(e) => e,
            ast::SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => continue,
        };
        let _ = visit_expressions_mut(expr, |e: &mut Expr| {
            if let Expr::Identifier(i) = e {
                let name = ident(i);
                if let Some((_, cols)) = rows.iter().find(|(n, _)| *n == name) {
                    let mut args = Vec::with_capacity(cols.len() * 2);
                    for c in cols {
                        args.push(Expr::value(ast::Value::SingleQuotedString(c.clone())));
                        args.push(Expr::CompoundIdentifier(vec![
                            Ident::with_quote('"', name.clone()),
                            Ident::with_quote('"', c.clone()),
                        ]));
                    }
                    *e = call_with("weft_row", args);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// Any column reference in `exprs`.
fn has_params(exprs: &[Expr]) -> bool {
    let mut found = false;
    let mut scan = exprs.to_vec();
    let _ = visit_expressions_mut(&mut scan, |e: &mut Expr| {
        found |= matches!(e, Expr::Value(v) if matches!(v.value, ast::Value::Placeholder(_)));
        ControlFlow::<()>::Continue(())
    });
    found
}

fn reads_columns(exprs: &[Expr]) -> bool {
    let mut found = false;
    let mut scan = exprs.to_vec();
    let _ = visit_expressions_mut(&mut scan, |e: &mut Expr| {
        found |= matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `t.col[1]`: the parser reads a qualified column before a subscript as a field access
/// (`t` then `.col`), which DataFusion plans only on struct values; as `(t.col)[1]` it is the
/// column's element.
fn qualified_subscript(root: &mut Box<Expr>, chain: &mut Vec<ast::AccessExpr>) -> Option<Expr> {
    let Expr::Identifier(first) = root.as_ref() else {
        return None;
    };
    let dots = chain
        .iter()
        .take_while(|a| matches!(a, ast::AccessExpr::Dot(Expr::Identifier(_))))
        .count();
    if dots == 0 || dots == chain.len() {
        return None;
    }
    let mut parts = vec![first.clone()];
    for access in chain.drain(..dots) {
        if let ast::AccessExpr::Dot(Expr::Identifier(i)) = access {
            parts.push(i);
        }
    }
    Some(Expr::CompoundFieldAccess {
        root: Box::new(Expr::CompoundIdentifier(parts)),
        access_chain: std::mem::take(chain),
    })
}

/// Rewrites every expression of a statement (or of an expression) in place.
pub(crate) fn rewrite<V: VisitMut>(node: &mut V) {
    let _ = node.visit(&mut Clauses);
    crate::pg_catalog::rewrite(node);
    crate::push::changes::rewrite(node);
    let _ = visit_expressions_mut(node, |e: &mut Expr| {
        let replacement = match e {
            // DataFusion plans an ARRAY[…] literal's elements without the enclosing query's
            // columns (`FROM t, unnest(ARRAY[t.a, t.b])`, `ARRAY[outer.x]` in a subquery:
            // "column does not exist"); make_array, what it becomes, is planned with them.
            Expr::Array(ast::Array { elem, .. }) if reads_columns(elem) => {
                Some(call_with("make_array", std::mem::take(elem)))
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                qualified_subscript(root, access_chain)
            }
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
            // `numeric[]`: elements at the unconstrained column's scale, each displayed at
            // its own (numeric_display.rs).
            Expr::Cast {
                expr,
                data_type: DataType::Array(ast::ArrayElemTypeDef::SquareBracket(element, size)),
                kind,
                format,
                ..
            } if matches!(
                element.as_ref(),
                DataType::Numeric(ast::ExactNumberInfo::None)
                    | DataType::Decimal(ast::ExactNumberInfo::None)
            ) =>
            {
                let element = DataType::Numeric(ast::ExactNumberInfo::PrecisionAndScale(38, 16));
                Some(array_cast_call(
                    "weft_numeric_array",
                    expr,
                    kind,
                    format,
                    element,
                    *size,
                ))
            }
            // `uuid[]`, `json[]`, `jsonb[]`: each element read as the scalar cast reads it.
            Expr::Cast {
                expr,
                data_type: DataType::Array(ast::ArrayElemTypeDef::SquareBracket(element, None)),
                kind,
                format,
                ..
            } if matches!(
                function_for(element),
                Some("weft_uuid" | "weft_json" | "weft_jsonb")
            ) =>
            {
                let f = match function_for(element) {
                    Some("weft_uuid") => "weft_uuid_array",
                    Some("weft_json") => "weft_json_array",
                    _ => "weft_jsonb_array",
                };
                Some(array_cast_call(f, expr, kind, format, DataType::Text, None))
            }
            Expr::Cast {
                expr,
                data_type,
                kind,
                ..
            } if char_cast(data_type).is_some() => char_cast(data_type).map(|(f, n)| {
                let operand = std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null));
                let text = Expr::Cast {
                    kind: kind.clone(),
                    expr: Box::new(operand),
                    data_type: DataType::Text,
                    array: false,
                    format: None,
                };
                let mut args = vec![text];
                args.extend(n.map(|n| Expr::value(ast::Value::Number(n.to_string(), false))));
                call_with(f, args)
            }),
            Expr::Cast {
                expr, data_type, ..
            } => function_for(data_type).map(|f| {
                call(
                    f,
                    std::mem::replace(expr.as_mut(), Expr::value(ast::Value::Null)),
                )
            }),
            // `INTERVAL '…'` without fields reads its text as `'…'::interval` (datetime_in.rs),
            // not with DataFusion's interval parser.
            Expr::Interval(ast::Interval {
                value,
                leading_field: None,
                leading_precision: None,
                last_field: None,
                fractional_seconds_precision: None,
            }) if matches!(
                value.as_ref(),
                Expr::Value(ast::ValueWithSpan {
                    value: ast::Value::SingleQuotedString(_),
                    ..
                })
            ) =>
            {
                Some(Expr::Cast {
                    kind: ast::CastKind::DoubleColon,
                    expr: Box::new(std::mem::replace(
                        value.as_mut(),
                        Expr::value(ast::Value::Null),
                    )),
                    data_type: DataType::Interval {
                        fields: None,
                        precision: None,
                    },
                    array: false,
                    format: None,
                })
            }
            Expr::Value(ast::ValueWithSpan {
                value: ast::Value::Number(n, _),
                ..
            }) if n.contains(['e', 'E']) => exponent_literal(n),
            // `numeric '1.10'` keeps the literal's scale, as `'1.10'::numeric` does (above).
            Expr::TypedString(ts)
                if matches!(
                    ts.data_type,
                    DataType::Numeric(ast::ExactNumberInfo::None)
                        | DataType::Decimal(ast::ExactNumberInfo::None)
                ) =>
            {
                let mut args = vec![Expr::Value(ts.value.clone())];
                if let Some(scale) = literal_scale(&args[0]) {
                    args.push(Expr::value(ast::Value::Number(scale.to_string(), false)));
                }
                Some(call_with("weft_numeric", args))
            }
            Expr::TypedString(ts) => {
                function_for(&ts.data_type).map(|f| call(f, Expr::Value(ts.value.clone())))
            }
            // PostgreSQL's prefix and postfix operators DataFusion does not plan, as the functions
            // they stand for under a unary `+` (which DataFusion plans as its numeric operand), so
            // that the column is named `?column?` as an operator's is; `~x` is `x # -1` (every
            // bit flipped).
            Expr::UnaryOp { op, expr } => {
                let operator = |f: &str, operand: Expr| {
                    Some(Expr::UnaryOp {
                        op: ast::UnaryOperator::Plus,
                        expr: Box::new(call(f, operand)),
                    })
                };
                match op {
                    ast::UnaryOperator::PGSquareRoot => operator("sqrt", take(expr)),
                    ast::UnaryOperator::PGCubeRoot => operator("cbrt", take(expr)),
                    ast::UnaryOperator::PGAbs => operator("abs", take(expr)),
                    ast::UnaryOperator::PGPostfixFactorial
                    | ast::UnaryOperator::PGPrefixFactorial => operator("factorial", take(expr)),
                    ast::UnaryOperator::BitwiseNot => {
                        Some(Expr::Nested(Box::new(Expr::BinaryOp {
                            left: Box::new(Expr::Nested(Box::new(take(expr)))),
                            op: ast::BinaryOperator::PGBitwiseXor,
                            right: Box::new(Expr::value(ast::Value::Number("-1".into(), false))),
                        })))
                    }
                    _ => None,
                }
            }
            // `localtime` and `localtimestamp` (keyword functions without parentheses): the
            // session's zone is UTC, so they are the time and timestamp without time zone of now.
            Expr::Function(f)
                if matches!(f.args, FunctionArguments::None)
                    && f.name.0.len() == 1
                    && ["localtime", "localtimestamp"].iter().any(|n| {
                        f.name.0[0].as_ident().is_some_and(|i| {
                            i.quote_style.is_none() && i.value.eq_ignore_ascii_case(n)
                        })
                    }) =>
            {
                let time = f.name.to_string().eq_ignore_ascii_case("localtime");
                parse_expr(if time {
                    "CAST(now() AS TIME)"
                } else {
                    "CAST(now() AS TIMESTAMP)"
                })
            }
            Expr::Function(f) => postgres_function(f),
            // `current_schema` is a keyword function in PostgreSQL, called without parentheses
            // too (a column of that name must be quoted).
            Expr::Identifier(i)
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("current_schema") =>
            {
                Some(call_with("current_schema", Vec::new()))
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                if let Expr::Subquery(q) = right.as_mut() {
                    name_compared_column(q);
                }
                None
            }
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
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn casts_to_uuid_and_jsonb_become_calls() {
        let mut stmts = Parser::parse_sql(
            &crate::dialect::WeftDialect::default(),
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

    #[test]
    fn float_to_numeric_scale_is_that_of_the_float_text() {
        let scale = |sql: &str| {
            let e = Parser::new(&crate::dialect::WeftDialect::default())
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_expr())
                .ok()?;
            literal_scale(&e)
        };
        assert_eq!(scale("1.5::float8"), Some(1));
        assert_eq!(scale("0.1::float8"), Some(1));
        assert_eq!(scale("(-2.25)::float8"), Some(2));
        assert_eq!(scale("1e15::float8"), Some(0));
        assert_eq!(scale("0.1::real"), Some(1));
        assert_eq!(scale("x::float8"), None);
    }

    #[test]
    fn exponent_literals_become_plain_decimals_or_floats() {
        let text = |n: &str| exponent_literal(n).map(|e| e.to_string());
        assert_eq!(text("1.5e-5").as_deref(), Some("0.000015"));
        assert_eq!(text("1e-4").as_deref(), Some("0.0001"));
        assert_eq!(
            text("1E15").as_deref(),
            Some("1000000000000000::NUMERIC(16,0)")
        );
        assert_eq!(text("1.5e1").as_deref(), Some("15::NUMERIC(2,0)"));
        assert_eq!(text("0e3").as_deref(), Some("0::NUMERIC(1,0)"));
        assert_eq!(text("1e308").as_deref(), Some("'1e308'::DOUBLE PRECISION"));
        assert_eq!(text("1e400"), None);
    }

    #[test]
    fn char_casts_become_calls_and_interval_literals_casts() {
        let mut stmts = Parser::parse_sql(
            &crate::dialect::WeftDialect::default(),
            "SELECT 'ab'::char(4), x::varchar(3), y::varchar, interval '1 day 02:03:04'",
        )
        .unwrap_or_default();
        assert_eq!(stmts.len(), 1);
        rewrite(&mut stmts[0]);
        let text = stmts[0].to_string();
        assert!(text.contains("weft_bpchar('ab'::TEXT, 4)"), "{text}");
        assert!(text.contains("weft_varchar(x::TEXT, 3)"), "{text}");
        assert!(text.contains("weft_varchar(y::TEXT)"), "{text}");
        assert!(text.contains("'1 day 02:03:04'::INTERVAL"), "{text}");
    }
}
