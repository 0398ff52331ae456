//! The SQL dialect Weft parses: sqlparser's PostgreSQL dialect, corrected where it accepts what
//! PostgreSQL refuses or refuses what PostgreSQL accepts.
//!
//! - `SELECT * alias` is a syntax error in PostgreSQL (a star takes no alias), so that
//!   `SELECT * FORM t` fails at `FORM`, as there, not at `t`.
//! - `top`, `sort` and `minus` are not PostgreSQL keywords, so they are valid bare aliases
//!   (`LATERAL (...) top`); sqlparser reserves them for other dialects.
//!
//! - Sequence options (`CREATE SEQUENCE`, `GENERATED … AS IDENTITY (…)`) come in any order, as
//!   pg_dump writes them (`START WITH 1 INCREMENT BY 1`); sqlparser takes one fixed order.
//!
//! - `SET CONSTRAINTS { ALL | name [, …] } { DEFERRED | IMMEDIATE }`, which sqlparser does not
//!   know, becomes a `SET` of the marker variable [`SET_CONSTRAINTS`] (see [`set_constraints`]).
//! - `ALTER SEQUENCE [IF EXISTS] name OWNED BY { table.column | NONE }` (pg_dump writes one per
//!   serial column), which sqlparser does not know either, becomes a `SET` of
//!   [`ALTER_SEQUENCE`] (see [`alter_sequence`]); other ALTER SEQUENCE forms are kept as text
//!   and refused when run.
//! - `CREATE TABLE name (column, …) AS query` (names without types) and `CREATE TABLE … AS query
//!   WITH [NO] DATA`, which sqlparser does not know, become its `CREATE TABLE … AS`, with the
//!   table option [`NO_DATA`] for `WITH NO DATA`.
//!
//! Everything else is PostgreSqlDialect's, including its `TypeId` (the parser asks
//! `dialect_of!(self is PostgreSqlDialect)` in many places).

use std::any::TypeId;

use datafusion::sql::sqlparser::ast::helpers::stmt_create_table::CreateTableBuilder;
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, CreateTableOptions, DataType, Expr, GeneratedAs, Ident, ObjectName,
    SequenceOptions, Set, SqlOption, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::{Dialect, PostgreSqlDialect, Precedence};
use datafusion::sql::sqlparser::keywords::{
    self, Keyword, RESERVED_FOR_COLUMN_ALIAS, RESERVED_FOR_TABLE_ALIAS,
};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

#[derive(Debug, Default)]
pub(crate) struct WeftDialect(PostgreSqlDialect);

/// Words sqlparser reserves as aliases that PostgreSQL does not know as keywords at all.
fn not_a_postgres_keyword(kw: &Keyword) -> bool {
    matches!(kw, Keyword::TOP | Keyword::SORT | Keyword::MINUS)
}

macro_rules! delegate {
    ($($name:ident(&self $(, $arg:ident: $t:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $t)*) -> $ret {
            self.0.$name($($arg),*)
        })*
    };
}

impl Dialect for WeftDialect {
    fn dialect(&self) -> TypeId {
        self.0.dialect()
    }

    fn supports_select_wildcard_with_alias(&self) -> bool {
        false
    }

    fn is_column_alias(&self, kw: &Keyword, _parser: &mut Parser) -> bool {
        not_a_postgres_keyword(kw) || !RESERVED_FOR_COLUMN_ALIAS.contains(kw)
    }

    fn is_table_alias(&self, kw: &Keyword, _parser: &mut Parser) -> bool {
        not_a_postgres_keyword(kw) || !RESERVED_FOR_TABLE_ALIAS.contains(kw)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.0.get_next_precedence(parser)
    }

    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        let constraints = |t: &Token| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("constraints"));
        if matches!(&parser.peek_token().token, Token::Word(w) if w.keyword == Keyword::SET)
            && constraints(&parser.peek_nth_token(1).token)
        {
            parser.next_token();
            parser.next_token();
            return Some(parse_set_constraints(parser));
        }
        if parser.parse_keywords(&[Keyword::ALTER, Keyword::SEQUENCE]) {
            return Some(parse_alter_sequence(parser));
        }
        if let Some(fetch) = fetch_next(parser) {
            return Some(fetch);
        }
        if starts_create_table(parser) {
            return create_table(parser);
        }
        let temporary = if parser.parse_keywords(&[Keyword::CREATE, Keyword::SEQUENCE]) {
            false
        } else if parser.parse_keywords(&[Keyword::CREATE, Keyword::TEMPORARY, Keyword::SEQUENCE])
            || parser.parse_keywords(&[Keyword::CREATE, Keyword::TEMP, Keyword::SEQUENCE])
        {
            true
        } else {
            return None;
        };
        Some(create_sequence(parser, temporary))
    }

    fn parse_column_option(
        &self,
        parser: &mut Parser,
    ) -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError> {
        let generated_as = if parser.parse_keywords(&[
            Keyword::GENERATED,
            Keyword::ALWAYS,
            Keyword::AS,
            Keyword::IDENTITY,
        ]) {
            GeneratedAs::Always
        } else if parser.parse_keywords(&[
            Keyword::GENERATED,
            Keyword::BY,
            Keyword::DEFAULT,
            Keyword::AS,
            Keyword::IDENTITY,
        ]) {
            GeneratedAs::ByDefault
        } else {
            return Ok(None);
        };
        let mut options = Vec::new();
        if parser.consume_token(&Token::LParen) {
            let mut owned_by = None;
            let mut data_type = None;
            if let Err(e) = sequence_options(parser, &mut options, &mut data_type, &mut owned_by) {
                return Ok(Some(Err(e)));
            }
            if let Err(e) = parser.expect_token(&Token::RParen) {
                return Ok(Some(Err(e)));
            }
        }
        Ok(Some(Ok(Some(ColumnOption::Generated {
            generated_as,
            sequence_options: Some(options),
            generation_expr: None,
            generation_expr_mode: None,
            generated_keyword: true,
        }))))
    }

    delegate! {
        identifier_quote_style(&self, identifier: &str) -> Option<char>;
        is_delimited_identifier_start(&self, ch: char) -> bool;
        is_identifier_start(&self, ch: char) -> bool;
        is_identifier_part(&self, ch: char) -> bool;
        supports_unicode_string_literal(&self) -> bool;
        is_reserved_for_identifier(&self, kw: keywords::Keyword) -> bool;
        is_custom_operator_part(&self, ch: char) -> bool;
        supports_filter_during_aggregation(&self) -> bool;
        supports_group_by_expr(&self) -> bool;
        prec_value(&self, prec: Precedence) -> u8;
        allow_extract_custom(&self) -> bool;
        allow_extract_single_quotes(&self) -> bool;
        supports_create_index_with_clause(&self) -> bool;
        supports_explain_with_utility_options(&self) -> bool;
        supports_listen_notify(&self) -> bool;
        supports_factorial_operator(&self) -> bool;
        supports_bitwise_shift_operators(&self) -> bool;
        supports_comment_on(&self) -> bool;
        supports_load_extension(&self) -> bool;
        supports_named_fn_args_with_colon_operator(&self) -> bool;
        supports_named_fn_args_with_expr_name(&self) -> bool;
        supports_empty_projections(&self) -> bool;
        supports_nested_comments(&self) -> bool;
        supports_string_escape_constant(&self) -> bool;
        supports_numeric_literal_underscores(&self) -> bool;
        supports_array_typedef_with_brackets(&self) -> bool;
        supports_geometric_types(&self) -> bool;
        supports_set_names(&self) -> bool;
        supports_alter_column_type_using(&self) -> bool;
        supports_notnull_operator(&self) -> bool;
        supports_interval_options(&self) -> bool;
        supports_insert_table_alias(&self) -> bool;
        supports_create_table_like_parenthesized(&self) -> bool;
        supports_comma_separated_trim(&self) -> bool;
        supports_xml_expressions(&self) -> bool;
        supports_comment_optimizer_hint(&self) -> bool;
    }
}

/// A statement sqlparser does not know, as a `SET` of the variable `marker` (a name no
/// setting has, and that an unquoted identifier cannot spell) to `values`.
fn mark(marker: &str, values: Vec<Expr>) -> Statement {
    Statement::Set(Set::SingleAssignment {
        scope: None,
        hivevar: false,
        variable: ObjectName::from(vec![Ident::new(marker)]),
        values,
    })
}

/// The values of a statement made by [`mark`] with `marker`; None for any other statement
/// (a user's `SET "weft:…"` is quoted, so it is not one).
fn marked<'a>(stmt: &'a Statement, marker: &str) -> Option<&'a [Expr]> {
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = stmt
    else {
        return None;
    };
    let [part] = &variable.0[..] else {
        return None;
    };
    let name = part.as_ident()?;
    (name.value == marker && name.quote_style.is_none()).then_some(values.as_slice())
}

/// Whether the next tokens are `CREATE [GLOBAL | LOCAL] [TEMP | TEMPORARY | UNLOGGED] TABLE`.
fn starts_create_table(parser: &Parser) -> bool {
    let words: [Token; 4] = parser.peek_tokens();
    let kw = |t: &Token| match t {
        Token::Word(w) => Some(w.keyword),
        _ => None,
    };
    if kw(&words[0]) != Some(Keyword::CREATE) {
        return false;
    }
    words[1..].iter().map(kw).try_for_each(|k| match k {
        Some(Keyword::TABLE) => Err(true),
        Some(
            Keyword::GLOBAL
            | Keyword::LOCAL
            | Keyword::TEMP
            | Keyword::TEMPORARY
            | Keyword::UNLOGGED,
        ) => Ok(()),
        _ => Err(false),
    }) == Err(true)
}

/// The table option that marks `CREATE TABLE … AS … WITH NO DATA` (a key an unquoted identifier
/// cannot spell; sqlparser has no such clause).
pub(crate) const NO_DATA: &str = "weft:no_data";

/// `CREATE TABLE` as sqlparser parses it, and two forms of `CREATE TABLE … AS` it does not: a
/// list of column names without types (`CREATE TABLE t (a, b) AS SELECT …`) and a trailing
/// `WITH [NO] DATA`, kept as the table option [`NO_DATA`]. None lets sqlparser report the error.
fn create_table(parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
    let standard = parser.maybe_parse(|p| {
        p.expect_keyword_is(Keyword::CREATE)?;
        p.parse_create()
    });
    let stmt = match standard {
        Ok(Some(stmt)) => stmt,
        Ok(None) => match parser.maybe_parse(create_table_as_named) {
            Ok(Some(stmt)) => stmt,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        },
        Err(e) => return Some(Err(e)),
    };
    let Statement::CreateTable(mut ct) = stmt else {
        return Some(Ok(stmt));
    };
    if ct.query.is_some() && parser.parse_keyword(Keyword::WITH) {
        let no_data = parser.parse_keyword(Keyword::NO);
        if let Err(e) = parser.expect_keyword_is(Keyword::DATA) {
            return Some(Err(e));
        }
        if no_data {
            let marker = SqlOption::KeyValue {
                key: Ident::new(NO_DATA),
                value: Expr::value(Value::Boolean(true)),
            };
            ct.table_options = match ct.table_options {
                CreateTableOptions::With(mut list) => {
                    list.push(marker);
                    CreateTableOptions::With(list)
                }
                _ => CreateTableOptions::With(vec![marker]),
            };
        }
    }
    Some(Ok(Statement::CreateTable(ct)))
}

/// `CREATE [TEMP] TABLE [IF NOT EXISTS] name (column, …) [WITH (options)] AS query`.
fn create_table_as_named(parser: &mut Parser) -> Result<Statement, ParserError> {
    parser.expect_keyword_is(Keyword::CREATE)?;
    let _ = parser.parse_one_of_keywords(&[Keyword::GLOBAL, Keyword::LOCAL]);
    let temporary = parser
        .parse_one_of_keywords(&[Keyword::TEMP, Keyword::TEMPORARY])
        .is_some();
    let _ = parser.parse_keyword(Keyword::UNLOGGED);
    parser.expect_keyword_is(Keyword::TABLE)?;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    parser.expect_token(&Token::LParen)?;
    let columns = parser.parse_comma_separated(|p| {
        Ok(ColumnDef {
            name: p.parse_identifier()?,
            data_type: DataType::Unspecified,
            options: Vec::new(),
        })
    })?;
    parser.expect_token(&Token::RParen)?;
    let options = parser.parse_options(Keyword::WITH)?;
    parser.expect_keyword_is(Keyword::AS)?;
    let query = parser.parse_query()?;
    Ok(Statement::CreateTable(
        CreateTableBuilder::new(name)
            .temporary(temporary)
            .if_not_exists(if_not_exists)
            .columns(columns)
            .table_options(if options.is_empty() {
                CreateTableOptions::None
            } else {
                CreateTableOptions::With(options)
            })
            .query(Some(query))
            .build(),
    ))
}

/// The variable a `SET CONSTRAINTS` statement is parsed as setting (a name no setting has).
pub(crate) const SET_CONSTRAINTS: &str = "weft:set_constraints";

/// `SET CONSTRAINTS` after those words: `ALL` or names, then the mode. Parsed as `SET
/// "weft:set_constraints" = mode [, name …]`, each name as a (possibly qualified) identifier.
fn parse_set_constraints(parser: &mut Parser) -> Result<Statement, ParserError> {
    let names = if parser.parse_keyword(Keyword::ALL) {
        Vec::new()
    } else {
        parser.parse_comma_separated(|p| p.parse_object_name(false))?
    };
    let mode = if parser.parse_keyword(Keyword::DEFERRED) {
        "DEFERRED"
    } else {
        parser.expect_keyword_is(Keyword::IMMEDIATE)?;
        "IMMEDIATE"
    };
    let mut values = vec![Expr::Identifier(Ident::new(mode))];
    for name in names {
        let parts: Vec<Ident> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().cloned())
            .collect();
        values.push(Expr::CompoundIdentifier(parts));
    }
    Ok(mark(SET_CONSTRAINTS, values))
}

/// A `SET CONSTRAINTS` statement's names (each as its parts; none for `ALL`) and whether it
/// defers them.
pub(crate) fn set_constraints(stmt: &Statement) -> Option<(Vec<Vec<String>>, bool)> {
    let values = marked(stmt, SET_CONSTRAINTS)?;
    let (mode, names) = values.split_first()?;
    let deferred = matches!(mode, Expr::Identifier(i) if i.value == "DEFERRED");
    let names = names
        .iter()
        .filter_map(|n| match n {
            Expr::CompoundIdentifier(parts) => {
                Some(parts.iter().map(|p| p.value.clone()).collect())
            }
            _ => None,
        })
        .collect();
    Some((names, deferred))
}

/// The variable an `ALTER SEQUENCE` statement is parsed as setting.
pub(crate) const ALTER_SEQUENCE: &str = "weft:alter_sequence";

/// What an `ALTER SEQUENCE` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AlterSequence {
    /// `OWNED BY table.column` (the name's parts) or `OWNED BY NONE` (empty).
    OwnedBy(Vec<String>),
    /// Any other option, as written.
    Other(String),
}

/// `ALTER SEQUENCE` after those words, as `SET "weft:alter_sequence" = if_exists, name,
/// (OWNED | OTHER), …`.
fn parse_alter_sequence(parser: &mut Parser) -> Result<Statement, ParserError> {
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let parts = |n: &ObjectName| -> Vec<Ident> {
        n.0.iter().filter_map(|p| p.as_ident().cloned()).collect()
    };
    let mut values = vec![
        Expr::Value(datafusion::sql::sqlparser::ast::Value::Boolean(if_exists).into()),
        Expr::CompoundIdentifier(parts(&name)),
    ];
    if parser.parse_keywords(&[Keyword::OWNED, Keyword::BY]) {
        values.push(Expr::Identifier(Ident::new("OWNED")));
        if !parser.parse_keyword(Keyword::NONE) {
            values.push(Expr::CompoundIdentifier(parts(
                &parser.parse_object_name(false)?,
            )));
        }
    } else {
        let mut rest = Vec::new();
        loop {
            let t = parser.peek_token().token;
            if matches!(t, Token::EOF | Token::SemiColon) {
                break;
            }
            rest.push(parser.next_token().token.to_string());
        }
        if rest.is_empty() {
            return parser.expected("an ALTER SEQUENCE option", parser.peek_token());
        }
        values.push(Expr::Identifier(Ident::new("OTHER")));
        values.push(Expr::Identifier(Ident::new(rest.join(" "))));
    }
    Ok(mark(ALTER_SEQUENCE, values))
}

/// An `ALTER SEQUENCE` statement: IF EXISTS, the sequence's name parts, and what it asks for.
pub(crate) fn alter_sequence(stmt: &Statement) -> Option<(bool, Vec<String>, AlterSequence)> {
    let values = marked(stmt, ALTER_SEQUENCE)?;
    let names = |e: &Expr| match e {
        Expr::CompoundIdentifier(parts) => parts.iter().map(|p| p.value.clone()).collect(),
        _ => Vec::new(),
    };
    let if_exists = matches!(values.first()?, Expr::Value(v) if v.value == datafusion::sql::sqlparser::ast::Value::Boolean(true));
    let name = names(values.get(1)?);
    let what = match values.get(2)? {
        Expr::Identifier(i) if i.value == "OWNED" => {
            AlterSequence::OwnedBy(values.get(3).map(names).unwrap_or_default())
        }
        _ => AlterSequence::Other(match values.get(3)? {
            Expr::Identifier(i) => i.value.clone(),
            _ => String::new(),
        }),
    };
    Some((if_exists, name, what))
}

/// `CREATE [TEMP] SEQUENCE` after those words: `[IF NOT EXISTS] name` and options in any order.
fn create_sequence(parser: &mut Parser, temporary: bool) -> Result<Statement, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    let (mut options, mut data_type, mut owned_by) = (Vec::new(), None, None);
    sequence_options(parser, &mut options, &mut data_type, &mut owned_by)?;
    Ok(Statement::CreateSequence {
        temporary,
        if_not_exists,
        name,
        data_type,
        sequence_options: options,
        owned_by,
    })
}

/// Sequence options, each at most once, in any order.
fn sequence_options(
    parser: &mut Parser,
    options: &mut Vec<SequenceOptions>,
    data_type: &mut Option<DataType>,
    owned_by: &mut Option<ObjectName>,
) -> Result<(), ParserError> {
    loop {
        let option = if parser.parse_keyword(Keyword::AS) {
            *data_type = Some(parser.parse_data_type()?);
            continue;
        } else if parser.parse_keywords(&[Keyword::OWNED, Keyword::BY]) {
            *owned_by = Some(if parser.parse_keyword(Keyword::NONE) {
                ObjectName::from(vec![Ident::new("NONE")])
            } else {
                parser.parse_object_name(false)?
            });
            continue;
        } else if parser.parse_keyword(Keyword::INCREMENT) {
            let by = parser.parse_keyword(Keyword::BY);
            SequenceOptions::IncrementBy(parser.parse_number()?, by)
        } else if parser.parse_keyword(Keyword::MINVALUE) {
            SequenceOptions::MinValue(Some(parser.parse_number()?))
        } else if parser.parse_keyword(Keyword::MAXVALUE) {
            SequenceOptions::MaxValue(Some(parser.parse_number()?))
        } else if parser.parse_keywords(&[Keyword::NO, Keyword::MINVALUE]) {
            SequenceOptions::MinValue(None)
        } else if parser.parse_keywords(&[Keyword::NO, Keyword::MAXVALUE]) {
            SequenceOptions::MaxValue(None)
        } else if parser.parse_keyword(Keyword::START) {
            let with = parser.parse_keyword(Keyword::WITH);
            SequenceOptions::StartWith(parser.parse_number()?, with)
        } else if parser.parse_keyword(Keyword::CACHE) {
            SequenceOptions::Cache(parser.parse_number()?)
        } else if parser.parse_keywords(&[Keyword::NO, Keyword::CYCLE]) {
            SequenceOptions::Cycle(true)
        } else if parser.parse_keyword(Keyword::CYCLE) {
            SequenceOptions::Cycle(false)
        } else {
            return Ok(());
        };
        let same =
            |o: &SequenceOptions| std::mem::discriminant(o) == std::mem::discriminant(&option);
        if options.iter().any(same) {
            return Err(ParserError::ParserError(
                "conflicting or redundant options".into(),
            ));
        }
        options.push(option);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(sql: &str) -> Result<(), ParserError> {
        Parser::parse_sql(&WeftDialect::default(), sql).map(|_| ())
    }

    #[test]
    fn star_takes_no_alias() {
        let e = parses("SELECT * FORM things").err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("found: FORM")),
            "{e:?}"
        );
    }

    #[test]
    fn non_postgres_keywords_are_aliases() {
        // (A select list starting with `top.x` is still read as MSSQL's `TOP`: not fixed.)
        assert!(parses("SELECT t.a, top.x FROM t, LATERAL (SELECT 1 AS x) top").is_ok());
        assert!(parses("SELECT 1 top, 2 sort").is_ok());
        assert!(parses("SELECT * FROM t minus").is_ok());
    }

    #[test]
    fn set_constraints_is_a_marked_set() {
        let parse = |sql: &str| {
            let stmt = Parser::parse_sql(&WeftDialect::default(), sql).unwrap();
            set_constraints(&stmt[0])
        };
        assert_eq!(parse("SET CONSTRAINTS ALL DEFERRED"), Some((vec![], true)));
        assert_eq!(
            parse("set constraints a, public.\"B\" immediate"),
            Some((
                vec![vec!["a".into()], vec!["public".into(), "B".into()]],
                false
            ))
        );
        // A setting that happens to have the marker's name, quoted, is not the statement.
        assert_eq!(parse("SET \"weft:set_constraints\" = 'DEFERRED'"), None);
        assert_eq!(parse("SET search_path = public"), None);
        assert!(parses("SET CONSTRAINTS ALL").is_err());
        assert!(parses("SET CONSTRAINTS DEFERRED").is_err());
    }

    #[test]
    fn create_table_as_takes_names_and_with_data() {
        let parse = |sql: &str| match Parser::parse_sql(&WeftDialect::default(), sql)
            .unwrap()
            .remove(0)
        {
            Statement::CreateTable(ct) => ct,
            other => panic!("not a CREATE TABLE: {other}"),
        };
        let ct = parse("CREATE TABLE t (a, \"B\") AS SELECT 1, 2");
        let names: Vec<_> = ct.columns.iter().map(|c| c.name.value.as_str()).collect();
        assert_eq!(names, ["a", "B"]);
        assert!(ct
            .columns
            .iter()
            .all(|c| c.data_type == DataType::Unspecified));
        assert!(ct.query.is_some());
        let no_data = |ct: &datafusion::sql::sqlparser::ast::CreateTable| match &ct.table_options {
            CreateTableOptions::With(l) => l
                .iter()
                .any(|o| matches!(o, SqlOption::KeyValue { key, .. } if key.value == NO_DATA)),
            _ => false,
        };
        assert!(no_data(&parse(
            "create temp table if not exists t (a) with (consistency = 'raft') as select 1 with no data"
        )));
        assert!(!no_data(&parse("CREATE TABLE t AS SELECT 1 WITH DATA")));
        assert!(no_data(&parse(
            "CREATE TABLE t AS SELECT * FROM u WITH NO DATA"
        )));
        // Plain CREATE TABLE is sqlparser's.
        assert_eq!(parse("CREATE TABLE t (a int, b text)").columns.len(), 2);
        assert!(parses("CREATE TABLE t (a, b)").is_err());
        assert!(parses("CREATE TABLE t AS SELECT 1 WITH NO").is_err());
        assert!(parses("CREATE TABLE t (a int) AS SELECT 1 WITH NO DATA extra").is_err());
    }

    #[test]
    fn alter_sequence_is_a_marked_set() {
        let parse = |sql: &str| {
            let stmt = Parser::parse_sql(&WeftDialect::default(), sql).unwrap();
            alter_sequence(&stmt[0])
        };
        assert_eq!(
            parse("ALTER SEQUENCE public.s OWNED BY public.t.id"),
            Some((
                false,
                vec!["public".into(), "s".into()],
                AlterSequence::OwnedBy(vec!["public".into(), "t".into(), "id".into()])
            ))
        );
        assert_eq!(
            parse("ALTER SEQUENCE IF EXISTS s OWNED BY NONE"),
            Some((true, vec!["s".into()], AlterSequence::OwnedBy(vec![])))
        );
        assert!(matches!(
            parse("ALTER SEQUENCE s RESTART WITH 5"),
            Some((false, _, AlterSequence::Other(_)))
        ));
        assert!(parses("ALTER SEQUENCE s").is_err());
        assert!(parses("ALTER TABLE t ADD COLUMN c int").is_ok());
    }

    #[test]
    fn sequence_options_in_any_order() {
        let sql = "CREATE SEQUENCE s AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1";
        let stmt = Parser::parse_sql(&WeftDialect::default(), sql).unwrap();
        let Statement::CreateSequence {
            sequence_options,
            data_type,
            ..
        } = &stmt[0]
        else {
            panic!("{stmt:?}");
        };
        assert_eq!(sequence_options.len(), 5);
        assert_eq!(data_type, &Some(DataType::Integer(None)));
        parses("CREATE TABLE t (id int GENERATED BY DEFAULT AS IDENTITY (START WITH 10 INCREMENT BY 5))").unwrap();
        assert!(parses("CREATE SEQUENCE s START 1 START 2").is_err());
    }

    #[test]
    fn postgres_dialect_behaviour_is_kept() {
        // `dialect_of!(PostgreSqlDialect)` paths: `::` casts, E'' strings, LISTEN.
        assert!(parses("SELECT 1::int, E'a\\n'").is_ok());
        assert!(parses("LISTEN ch").is_ok());
    }
}

/// `FETCH name` and `FETCH FROM | IN name`, which PostgreSQL reads as `FETCH NEXT FROM name` and
/// sqlparser refuses (it wants a count or a direction first).
fn fetch_next(parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
    let word = |t: &Token| match t {
        Token::Word(w) => Some(w.clone()),
        _ => None,
    };
    let end = |t: &Token| matches!(t, Token::EOF | Token::SemiColon);
    if word(&parser.peek_token().token)?.keyword != Keyword::FETCH {
        return None;
    }
    let first = word(&parser.peek_nth_token(1).token)?;
    let skip = if matches!(first.keyword, Keyword::FROM | Keyword::IN) {
        word(&parser.peek_nth_token(2).token)?;
        if !end(&parser.peek_nth_token(3).token) {
            return None;
        }
        2
    } else {
        let direction = matches!(
            first.keyword,
            Keyword::NEXT
                | Keyword::PRIOR
                | Keyword::FIRST
                | Keyword::LAST
                | Keyword::ABSOLUTE
                | Keyword::RELATIVE
                | Keyword::ALL
                | Keyword::FORWARD
                | Keyword::BACKWARD
        );
        if direction || !end(&parser.peek_nth_token(2).token) {
            return None;
        }
        1
    };
    for _ in 0..skip {
        parser.next_token();
    }
    Some(parser.parse_identifier().map(|name| Statement::Fetch {
        name,
        direction: datafusion::sql::sqlparser::ast::FetchDirection::Next,
        position: datafusion::sql::sqlparser::ast::FetchPosition::From,
        into: None,
    }))
}
