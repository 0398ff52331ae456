//! Parsing: SQL text into statements, with PostgreSQL's error positions.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace, Word};

use crate::error::{Error, Result};

/// Nesting deeper than this is refused (54001-like) instead of overflowing the stack.
const RECURSION_LIMIT: usize = 200;

/// Expressions nested deeper than this are refused the same way. The parser builds a chain of
/// operators (`1 + 1 + … + 1`, `a = 1 OR a = 2 OR …`) in a loop, one level per operator, so
/// `RECURSION_LIMIT` does not bound those; cloning, rewriting, planning and dropping such a tree
/// all recurse once per level, and 20,000 levels overflowed a worker's stack and aborted the
/// server. PostgreSQL answers such a statement with an error too ("stack depth limit exceeded").
const MAX_EXPR_DEPTH: usize = 1_000;

/// One parsed statement and the text it came from.
#[derive(Debug, Clone)]
pub struct Statement {
    pub(crate) ast: Arc<ast::Statement>,
    pub(crate) sql: Arc<str>,
    /// Written as `CREATE LIVE QUERY` / `DROP LIVE QUERY`: parsed as the materialized-view
    /// form of the same statement (which Weft does not otherwise support), marked live here.
    pub(crate) live: bool,
    /// `INSERT … OVERRIDING { SYSTEM | USER } VALUE` (see [`overriding_clauses`]).
    pub(crate) overriding: Option<Overriding>,
}

/// Which values of identity columns an INSERT's OVERRIDING clause lets win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overriding {
    /// The values given, even for GENERATED ALWAYS columns.
    System,
    /// The sequence's: values given for identity columns are ignored.
    User,
}

impl Statement {
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// A statement taken from within this one (PREPARE's), keeping this one's text (the
    /// positions in `ast` refer to it).
    pub(crate) fn inner(&self, ast: ast::Statement) -> Statement {
        Statement {
            ast: Arc::new(ast),
            sql: Arc::clone(&self.sql),
            live: false,
            overriding: self.overriding.clone(),
        }
    }

    /// A query taken from within a statement parsed from `sql` (its positions refer to `sql`).
    pub(crate) fn query(query: ast::Query, sql: Arc<str>) -> Statement {
        Statement {
            ast: Arc::new(ast::Statement::Query(Box::new(query))),
            sql,
            live: false,
            overriding: None,
        }
    }
}

/// PostgreSQL's `ABORT [WORK | TRANSACTION]` is `ROLLBACK`; sqlparser does not know it.
fn abort_is_rollback(tokens: &mut [TokenWithSpan]) {
    let mut at_start = true;
    for t in tokens.iter_mut() {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon => at_start = true,
            Token::Word(w)
                if at_start && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("abort") =>
            {
                t.token = Token::Word(Word {
                    value: "ROLLBACK".into(),
                    quote_style: None,
                    keyword: Keyword::ROLLBACK,
                });
                at_start = false;
            }
            _ => at_start = false,
        }
    }
}

/// Rewrites `CREATE LIVE QUERY` and `DROP LIVE QUERY` at the start of a statement into
/// `CREATE MATERIALIZED VIEW` / `DROP MATERIALIZED VIEW`, which sqlparser knows; returns, for
/// each non-empty statement in order, whether it was rewritten.
fn live_query_is_materialized_view(tokens: &mut [TokenWithSpan]) -> Vec<bool> {
    let mut live = Vec::new();
    let mut i = 0;
    let mut started = false;
    while i < tokens.len() {
        match &tokens[i].token {
            Token::Whitespace(_) => {}
            Token::SemiColon => started = false,
            _ if started => {}
            _ => {
                started = true;
                live.push(rewrite_live(tokens, i));
            }
        }
        i += 1;
    }
    live
}

/// `TABLE name`, PostgreSQL's short form of `SELECT * FROM name`, where a query starts: at the
/// start of a statement, after `(`, after `AS` (CREATE TABLE / VIEW … AS) and after a set
/// operator. sqlparser parses `TABLE name` only after a `WITH` or inside CREATE TABLE … AS, and
/// there it swallows the two tokens after the name (`TABLE t ORDER BY id` lost its ORDER BY).
fn table_as_select(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for t in tokens {
        let is_table = matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::TABLE);
        let starts_query = is_table
            && match out
                .iter()
                .rev()
                .find(|p| !matches!(p.token, Token::Whitespace(_)))
                .map(|p| &p.token)
            {
                None | Some(Token::SemiColon | Token::LParen) => true,
                Some(Token::Word(w)) => {
                    w.quote_style.is_none()
                        && matches!(
                            w.keyword,
                            Keyword::AS
                                | Keyword::UNION
                                | Keyword::EXCEPT
                                | Keyword::INTERSECT
                                | Keyword::ALL
                                | Keyword::DISTINCT
                        )
                }
                _ => false,
            };
        if !starts_query {
            out.push(t);
            continue;
        }
        let span = t.span;
        let token = |token: Token| TokenWithSpan { token, span };
        let word = |value: &str, keyword| {
            token(Token::Word(Word {
                value: value.into(),
                quote_style: None,
                keyword,
            }))
        };
        out.push(word("SELECT", Keyword::SELECT));
        out.push(token(Token::Whitespace(Whitespace::Space)));
        out.push(token(Token::Mul));
        out.push(token(Token::Whitespace(Whitespace::Space)));
        out.push(word("FROM", Keyword::FROM));
    }
    out
}

/// `OVERRIDING { SYSTEM | USER } VALUE` in an INSERT, which sqlparser does not parse: its words
/// become whitespace, and the clause is returned for each non-empty statement in order (None
/// where there is none).
fn overriding_clauses(tokens: &mut [TokenWithSpan]) -> Vec<Option<Overriding>> {
    let word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut out: Vec<Option<Overriding>> = Vec::new();
    let (mut started, mut insert, mut depth) = (false, false, 0usize);
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].token {
            Token::Whitespace(_) => {}
            Token::SemiColon => started = false,
            _ if !started => {
                started = true;
                insert = word(&tokens[i], "insert");
                depth = 0;
                out.push(None);
            }
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ if insert && depth == 0 && word(&tokens[i], "overriding") => {
                let next: Vec<usize> = (i + 1..tokens.len())
                    .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
                    .take(2)
                    .collect();
                if let [kind, value] = next[..] {
                    let clause = if word(&tokens[kind], "system") {
                        Some(Overriding::System)
                    } else if word(&tokens[kind], "user") {
                        Some(Overriding::User)
                    } else {
                        None
                    };
                    if let (Some(clause), true) = (clause, word(&tokens[value], "value")) {
                        for j in [i, kind, value] {
                            tokens[j].token = Token::Whitespace(Whitespace::Space);
                        }
                        if let Some(last) = out.last_mut() {
                            *last = Some(clause);
                        }
                        i = value;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// At statement start `i`: `CREATE|DROP LIVE QUERY` becomes `CREATE|DROP MATERIALIZED VIEW`.
fn rewrite_live(tokens: &mut [TokenWithSpan], i: usize) -> bool {
    let word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    if !(word(&tokens[i], "create") || word(&tokens[i], "drop")) {
        return false;
    }
    let next: Vec<usize> = (i + 1..tokens.len())
        .filter(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
        .take(2)
        .collect();
    let [a, b] = next[..] else {
        return false;
    };
    if !(word(&tokens[a], "live") && word(&tokens[b], "query")) {
        return false;
    }
    tokens[a].token = Token::Word(Word {
        value: "MATERIALIZED".into(),
        quote_style: None,
        keyword: Keyword::MATERIALIZED,
    });
    tokens[b].token = Token::Word(Word {
        value: "VIEW".into(),
        quote_style: None,
        keyword: Keyword::VIEW,
    });
    true
}

/// The table name a maintenance statement is parsed as (`VACUUM "weft:<command>"`); see
/// [`maintenance_command`].
const MAINTENANCE_PREFIX: &str = "weft:";

/// `VACUUM`, `ANALYZE` and `CHECKPOINT` have nothing to do in Weft (RocksDB compacts and keeps no
/// planner statistics) but users run them after a bulk load: each statement becomes `VACUUM`
/// with its command as a marker table name, whatever options and tables it named.
fn maintenance_as_vacuum(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut at_start = true;
    let mut skipping = false;
    for t in tokens {
        match &t.token {
            Token::SemiColon => {
                at_start = true;
                skipping = false;
            }
            _ if skipping => continue,
            Token::Whitespace(_) => {}
            Token::Word(w) if at_start && w.quote_style.is_none() => {
                at_start = false;
                let command = match w.value.to_ascii_lowercase().as_str() {
                    "vacuum" => "vacuum",
                    "analyze" | "analyse" => "analyze",
                    "checkpoint" => "checkpoint",
                    _ => {
                        out.push(t);
                        continue;
                    }
                };
                let word = |value: String, quote_style, keyword| TokenWithSpan {
                    token: Token::Word(Word {
                        value,
                        quote_style,
                        keyword,
                    }),
                    span: t.span,
                };
                out.push(word("VACUUM".into(), None, Keyword::VACUUM));
                out.push(TokenWithSpan {
                    token: Token::Whitespace(Whitespace::Space),
                    span: t.span,
                });
                out.push(word(
                    format!("{MAINTENANCE_PREFIX}{command}"),
                    Some('"'),
                    Keyword::NoKeyword,
                ));
                skipping = true;
                continue;
            }
            _ => at_start = false,
        }
        out.push(t);
    }
    out
}

/// The command (`VACUUM`, `ANALYZE`, `CHECKPOINT`) of a statement that is a maintenance no-op.
pub(crate) fn maintenance_command(stmt: &ast::Statement) -> Option<String> {
    let ast::Statement::Vacuum(v) = stmt else {
        return None;
    };
    let name = v.table_name.as_ref()?.0.first()?.as_ident()?;
    name.value
        .strip_prefix(MAINTENANCE_PREFIX)
        .map(str::to_ascii_uppercase)
}

/// Runs a maintenance statement: nothing to do but answer with its tag.
pub(crate) fn maintenance(
    stmt: &ast::Statement,
    in_block: bool,
) -> Result<Option<crate::session::QueryOutput>> {
    let Some(tag) = maintenance_command(stmt) else {
        return Ok(None);
    };
    if in_block && tag == "VACUUM" {
        return Err(Error::ActiveTransaction {
            message: "VACUUM cannot run inside a transaction block".into(),
        });
    }
    Ok(Some(crate::session::QueryOutput::Command { tag }))
}

/// Parses a query string into its statements (none for an empty query).
pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>> {
    if sql.trim().trim_matches(';').trim().is_empty() {
        return Ok(Vec::new());
    }
    let dialect = crate::dialect::WeftDialect::default();
    let mut tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::from(ParserError::from(e)).with_sql_position(sql))?;
    abort_is_rollback(&mut tokens);
    let tokens = maintenance_as_vacuum(tokens);
    let tokens = key_row_locks(tokens);
    let mut tokens = table_as_select(tokens);
    let live = live_query_is_materialized_view(&mut tokens);
    let overriding = overriding_clauses(&mut tokens);
    let statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| Error::from(e).with_sql_position(sql))?;
    // Every level of an expression takes at least one byte of text: a statement no longer than
    // the limit cannot pass it, and the walk stays off the path of short (point) queries.
    if sql.len() > MAX_EXPR_DEPTH && too_deep(&statements) {
        drop_deep(statements, sql.len());
        return Err(Error::ProgramLimitExceeded {
            message: format!(
                "statement is too deeply nested (expressions nest at most {MAX_EXPR_DEPTH} levels)"
            ),
        });
    }
    let text: Arc<str> = Arc::from(sql);
    Ok(statements
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            select_into_is_create_table_as(&mut s);
            crate::rewrite::rewrite(&mut s);
            let live = live.get(i).copied().unwrap_or(false)
                && matches!(
                    &s,
                    ast::Statement::CreateView(_) | ast::Statement::Drop { .. }
                );
            let overriding = overriding
                .get(i)
                .copied()
                .flatten()
                .filter(|_| matches!(&s, ast::Statement::Insert(_)));
            Statement {
                ast: Arc::new(s),
                sql: Arc::clone(&text),
                live,
                overriding,
            }
        })
        .collect())
}

/// `FOR NO KEY UPDATE` and `FOR KEY SHARE` (Django's `select_for_update(no_key=True)`), which
/// sqlparser does not know, read as `FOR UPDATE` and `FOR SHARE`: Weft's row locks have those
/// two strengths only (`row_lock.rs`), so a weaker kind locks as the stronger one.
fn key_row_locks(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let word = |t: &TokenWithSpan, k: Keyword| matches!(&t.token, Token::Word(w) if w.keyword == k);
    if !tokens.iter().any(|t| word(t, Keyword::FOR)) {
        return tokens;
    }
    let words: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut drop = std::collections::HashSet::new();
    for (n, &i) in words.iter().enumerate() {
        if !word(&tokens[i], Keyword::FOR) {
            continue;
        }
        let at = |k: usize| words.get(n + k).map(|&j| &tokens[j]);
        let is = |k: usize, kw: Keyword| at(k).is_some_and(|t| word(t, kw));
        if is(1, Keyword::NO) && is(2, Keyword::KEY) && is(3, Keyword::UPDATE) {
            drop.extend([words[n + 1], words[n + 2]]);
        } else if is(1, Keyword::KEY) && is(2, Keyword::SHARE) {
            drop.insert(words[n + 1]);
        }
    }
    if drop.is_empty() {
        return tokens;
    }
    tokens
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, t)| t)
        .collect()
}

/// `SELECT … INTO [TEMP] t FROM …` is PostgreSQL's older spelling of `CREATE TABLE t AS SELECT …`.
fn select_into_is_create_table_as(stmt: &mut ast::Statement) {
    let ast::Statement::Query(q) = stmt else {
        return;
    };
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    let Some(into) = select.into.take() else {
        return;
    };
    let query = q.clone();
    *stmt = ast::Statement::CreateTable(
        ast::helpers::stmt_create_table::CreateTableBuilder::new(into.name)
            .temporary(into.temporary)
            .query(Some(query))
            .build(),
    );
}

/// Whether an expression in `statements` nests deeper than `MAX_EXPR_DEPTH`. The walk stops
/// there, so its own recursion stays that shallow.
fn too_deep(statements: &[ast::Statement]) -> bool {
    use std::ops::ControlFlow;

    use ast::{Visit, Visitor};

    struct Depth(usize);
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
            self.0 += 1;
            if self.0 > MAX_EXPR_DEPTH {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
            self.0 -= 1;
            ControlFlow::Continue(())
        }
    }
    statements.iter().any(|s| s.visit(&mut Depth(0)).is_break())
}

/// Drops statements refused as too deep. Dropping recurses once per level too, so it happens on
/// a thread of its own whose stack is sized for the text (a level takes at least two bytes of
/// it); if no such thread can be had, the statements are leaked rather than risk the process.
fn drop_deep(statements: Vec<ast::Statement>, text_len: usize) {
    let stack = text_len
        .saturating_mul(DROP_STACK_PER_BYTE)
        .clamp(16 << 20, 1 << 30);
    let parked = std::sync::Arc::new(parking_lot::Mutex::new(Some(statements)));
    let on_thread = std::sync::Arc::clone(&parked);
    let spawned = std::thread::Builder::new()
        .name("weft-drop-deep".into())
        .stack_size(stack)
        .spawn(move || drop(on_thread.lock().take()));
    if spawned.is_err() {
        if let Some(s) = parked.lock().take() {
            tracing::warn!("cannot start a thread to drop a deeply nested statement: leaked");
            std::mem::forget(s);
        }
    }
}

/// Stack bytes the drop thread gets per byte of statement text (a level of nesting costs at
/// least two bytes of text, and its drop less than 100 bytes of stack).
const DROP_STACK_PER_BYTE: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_nested_past_the_limit_are_refused() {
        let deep = format!("select 1{}", " + 1".repeat(MAX_EXPR_DEPTH + 10));
        assert!(matches!(
            parse(&deep),
            Err(Error::ProgramLimitExceeded { .. })
        ));
        let shallow = format!("select 1{}", " + 1".repeat(MAX_EXPR_DEPTH / 2));
        assert_eq!(parse(&shallow).map(|s| s.len()).ok(), Some(1));
        // Wide is not deep: many short expressions side by side.
        let wide = format!("select {}", vec!["1 + 1"; 5 * MAX_EXPR_DEPTH].join(", "));
        assert_eq!(parse(&wide).map(|s| s.len()).ok(), Some(1));
    }

    #[test]
    fn maintenance_commands_are_noops() {
        let stmts = parse("VACUUM (VERBOSE) t; analyze t (a); CHECKPOINT; VACUUM ANALYZE")
            .unwrap_or_default();
        let commands: Vec<_> = stmts.iter().map(|s| maintenance_command(&s.ast)).collect();
        assert_eq!(
            commands,
            ["VACUUM", "ANALYZE", "CHECKPOINT", "VACUUM"].map(|c| Some(c.to_string()))
        );
    }

    #[test]
    fn empty_and_multi() {
        assert!(parse("  ;; ").map(|v| v.is_empty()).unwrap_or(false));
        assert_eq!(parse("select 1; select 2").map(|v| v.len()).ok(), Some(2));
    }

    #[test]
    fn table_name_is_select_star_where_a_query_starts() {
        let texts = |sql: &str| -> Vec<String> {
            parse(sql)
                .unwrap()
                .iter()
                .map(|s| s.ast.to_string())
                .collect()
        };
        assert_eq!(
            texts("TABLE a; table \"B\" ORDER BY x LIMIT 1"),
            ["SELECT * FROM a", "SELECT * FROM \"B\" ORDER BY x LIMIT 1"]
        );
        assert_eq!(
            texts("SELECT 1 FROM (TABLE a) s UNION ALL TABLE b"),
            ["SELECT 1 FROM (SELECT * FROM a) s UNION ALL SELECT * FROM b"]
        );
        // TABLE as a keyword of other statements stays.
        assert_eq!(
            texts("COMMENT ON TABLE a IS 'x'; DROP TABLE a"),
            ["COMMENT ON TABLE a IS 'x'", "DROP TABLE a"]
        );
        let ctas = parse("CREATE TABLE t AS TABLE a WITH NO DATA").unwrap();
        assert!(matches!(&*ctas[0].ast, ast::Statement::CreateTable(ct) if ct.query.is_some()));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("SELECT 1 FROM").err();
        assert_eq!(e.as_ref().map(|e| e.sqlstate()), Some("42601"));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        let e = parse(&sql).err();
        assert!(e.is_some());
    }
}
