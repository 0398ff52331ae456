//! COPY's data formats, text and CSV, as PostgreSQL reads and writes them.
//!
//! ```text
//!   COPY t [(cols)] FROM STDIN [WITH (FORMAT text|csv, DELIMITER, NULL, HEADER, QUOTE, ESCAPE)]
//!     front end: CopyInResponse, CopyData… until CopyDone (CopyFail: 57014), then executes
//!     the statement with the bytes (`Session::set_copy_data`)
//!     --> parse(): rows of optional strings --> each cell as typed input of its column
//!     --> dml::insert::insert_rows (defaults, constraints, foreign keys: as INSERT)
//!   COPY t [(cols)] | (query) TO STDOUT [WITH (…)]
//!     planned as its SELECT; the front end sends CopyOutResponse and one CopyData per row,
//!     each cell in PostgreSQL's text output escaped by encode_row()
//! ```
//!
//! Binary format and COPY to or from a server file or program are refused (0A000).

use datafusion::sql::sqlparser::ast;

use crate::error::{Error, Result};

/// How COPY data is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: u8,
    /// The string that stands for NULL (`\N` in text, empty in CSV).
    pub null: String,
    /// The first line holds column names (CSV only, as in PostgreSQL 15).
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyFormat {
    fn text() -> Self {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }
}

/// Which way the data goes, the number of columns and their format: what the front end needs
/// to run the COPY sub-protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub from_stdin: bool,
    pub columns: usize,
    pub format: CopyFormat,
}

fn bad_option(message: impl Into<String>) -> Error {
    Error::Syntax {
        message: message.into(),
        position: None,
    }
}

fn one_byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(u32::from(c))
        .ok()
        .filter(|b| b.is_ascii())
        .ok_or_else(|| {
            Error::unsupported(format!("COPY {what} must be a single one-byte character"))
        })
}

/// The format a COPY statement's options ask for.
pub(crate) fn format_of(
    options: &[ast::CopyOption],
    legacy: &[ast::CopyLegacyOption],
) -> Result<CopyFormat> {
    let mut f = CopyFormat::text();
    let mut delimiter = None;
    let mut null = None;
    let mut quote = None;
    let mut escape = None;
    for o in options {
        match o {
            ast::CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                "text" => f.csv = false,
                "csv" => f.csv = true,
                "binary" => return Err(Error::unsupported("COPY in binary format")),
                other => {
                    return Err(Error::InvalidParameterValue {
                        message: format!("COPY format \"{other}\" not recognized"),
                    })
                }
            },
            ast::CopyOption::Delimiter(c) => delimiter = Some(one_byte(*c, "delimiter")?),
            ast::CopyOption::Null(s) => null = Some(s.clone()),
            ast::CopyOption::Header(h) => f.header = *h,
            ast::CopyOption::Quote(c) => quote = Some(one_byte(*c, "quote")?),
            ast::CopyOption::Escape(c) => escape = Some(one_byte(*c, "escape")?),
            ast::CopyOption::Freeze(_) => {}
            ast::CopyOption::Encoding(e) => {
                let e = e.to_ascii_uppercase().replace(['-', '_'], "");
                if e != "UTF8" && e != "SQLASCII" {
                    return Err(Error::unsupported(format!(
                        "COPY with ENCODING '{e}' (only UTF8)"
                    )));
                }
            }
            other => return Err(Error::unsupported(format!("COPY option {other}"))),
        }
    }
    for o in legacy {
        match o {
            ast::CopyLegacyOption::Binary => {
                return Err(Error::unsupported("COPY in binary format"))
            }
            ast::CopyLegacyOption::Delimiter(c) => delimiter = Some(one_byte(*c, "delimiter")?),
            ast::CopyLegacyOption::Null(s) => null = Some(s.clone()),
            ast::CopyLegacyOption::Csv(csv) => {
                f.csv = true;
                for c in csv {
                    match c {
                        ast::CopyLegacyCsvOption::Header => f.header = true,
                        ast::CopyLegacyCsvOption::Quote(q) => quote = Some(one_byte(*q, "quote")?),
                        ast::CopyLegacyCsvOption::Escape(e) => {
                            escape = Some(one_byte(*e, "escape")?)
                        }
                        other => return Err(Error::unsupported(format!("COPY option {other}"))),
                    }
                }
            }
            other => return Err(Error::unsupported(format!("COPY option {other}"))),
        }
    }
    if f.csv {
        f.delimiter = b',';
        f.null = String::new();
    } else if f.header {
        return Err(Error::unsupported(
            "COPY HEADER in text format (use FORMAT csv)",
        ));
    } else if quote.is_some() || escape.is_some() {
        return Err(Error::Detailed {
            code: "0A000",
            message: "COPY quote available only in CSV mode".into(),
            detail: None,
            hint: None,
            object: Default::default(),
        });
    }
    if let Some(d) = delimiter {
        if d == b'\r' || d == b'\n' || (!f.csv && d == b'\\') {
            return Err(bad_option(
                "COPY delimiter cannot be newline, carriage return or backslash",
            ));
        }
        f.delimiter = d;
    }
    if let Some(n) = null {
        f.null = n;
    }
    if let Some(q) = quote {
        f.quote = q;
        f.escape = q;
    }
    if let Some(e) = escape {
        f.escape = e;
    }
    if f.csv && f.delimiter == f.quote {
        return Err(bad_option("COPY delimiter and quote must be different"));
    }
    Ok(f)
}

fn bad_copy_format(line: usize, message: String) -> Error {
    Error::Detailed {
        code: "22P04",
        message,
        detail: Some(format!("COPY, line {line}")),
        hint: None,
        object: Default::default(),
    }
}

/// The rows of COPY FROM data: for each line, `width` cells (`None` for NULL). Wrong counts of
/// cells are 22P04; bytes that are not UTF-8 are 22021. The end-of-data marker `\.` alone on a
/// line ends the data.
pub fn parse(data: &[u8], f: &CopyFormat, names: &[String]) -> Result<Vec<Vec<Option<String>>>> {
    let width = names.len();
    let mut rows = Vec::new();
    let mut at = 0;
    let mut line_no = 0;
    let mut skip_header = f.header;
    while at < data.len() {
        line_no += 1;
        let (cells, next) = if f.csv {
            csv_line(data, at, f, line_no)?
        } else {
            text_line(data, at, f, line_no)?
        };
        at = next;
        let Some(cells) = cells else {
            break; // `\.`
        };
        if skip_header {
            skip_header = false;
            continue;
        }
        if width == 0 && cells.len() == 1 && cells[0].as_deref() == Some("") {
            rows.push(Vec::new());
            continue;
        }
        if cells.len() < width {
            let column = names.get(cells.len()).map_or("", String::as_str);
            return Err(bad_copy_format(
                line_no,
                format!("missing data for column \"{column}\""),
            ));
        }
        if cells.len() > width {
            return Err(bad_copy_format(
                line_no,
                "extra data after last expected column".into(),
            ));
        }
        rows.push(cells);
    }
    Ok(rows)
}

fn utf8(bytes: Vec<u8>, line: usize) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::Detailed {
        code: "22021",
        message: "invalid byte sequence for encoding \"UTF8\"".into(),
        detail: Some(format!("COPY, line {line}")),
        hint: None,
        object: Default::default(),
    })
}

/// One line of text format from `at`: its cells (None at the end marker) and where the next
/// line starts.
fn text_line(
    data: &[u8],
    at: usize,
    f: &CopyFormat,
    line: usize,
) -> Result<(Option<Vec<Option<String>>>, usize)> {
    let end = data[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| at + i);
    let mut raw = &data[at..end];
    if raw.last() == Some(&b'\r') {
        raw = &raw[..raw.len() - 1];
    }
    let next = (end + 1).min(data.len()).max(end);
    if raw == b"\\." {
        return Ok((None, data.len()));
    }
    let mut cells = Vec::new();
    let mut i = 0;
    loop {
        // A raw field runs to the next delimiter not preceded by a backslash escape.
        let start = i;
        let mut value = Vec::new();
        while i < raw.len() && raw[i] != f.delimiter {
            let b = raw[i];
            if b != b'\\' || i + 1 >= raw.len() {
                value.push(b);
                i += 1;
                continue;
            }
            let c = raw[i + 1];
            i += 2;
            match c {
                b'b' => value.push(8),
                b'f' => value.push(12),
                b'n' => value.push(b'\n'),
                b'r' => value.push(b'\r'),
                b't' => value.push(b'\t'),
                b'v' => value.push(11),
                b'0'..=b'7' => {
                    let mut v = u32::from(c - b'0');
                    for _ in 0..2 {
                        match raw.get(i) {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    value.push((v & 0xff) as u8);
                }
                b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                    let mut v = 0u32;
                    for _ in 0..2 {
                        match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d;
                                i += 1;
                            }
                            None => break,
                        }
                    }
                    value.push(v as u8);
                }
                other => value.push(other),
            }
        }
        let field = &raw[start..i];
        if field == f.null.as_bytes() {
            cells.push(None);
        } else {
            cells.push(Some(utf8(value, line)?));
        }
        if i >= raw.len() {
            break;
        }
        i += 1; // the delimiter
    }
    Ok((Some(cells), next))
}

/// One record of CSV from `at` (quoted fields may span lines).
fn csv_line(
    data: &[u8],
    at: usize,
    f: &CopyFormat,
    line: usize,
) -> Result<(Option<Vec<Option<String>>>, usize)> {
    let line_end = data[at..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| at + i);
    let first = data[at..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&data[at..line_end]);
    if first == b"\\." {
        return Ok((None, data.len()));
    }
    let mut cells = Vec::new();
    let mut i = at;
    loop {
        let mut value = Vec::new();
        let mut quoted = false;
        let raw_start = i;
        loop {
            let Some(&b) = data.get(i) else { break };
            if b == f.quote {
                quoted = true;
                i += 1;
                // Inside quotes: up to the closing quote; escape + quote is a quote.
                loop {
                    let Some(&c) = data.get(i) else {
                        return Err(bad_copy_format(
                            line,
                            "unterminated CSV quoted field".into(),
                        ));
                    };
                    let next = data.get(i + 1).copied();
                    if c == f.escape
                        && f.escape != f.quote
                        && (next == Some(f.quote) || next == Some(f.escape))
                    {
                        value.extend(next);
                        i += 2;
                        continue;
                    }
                    if c == f.quote {
                        if f.escape == f.quote && next == Some(f.quote) {
                            value.push(f.quote);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    value.push(c);
                    i += 1;
                }
                continue;
            }
            if b == f.delimiter || b == b'\n' || (b == b'\r' && data.get(i + 1) == Some(&b'\n')) {
                break;
            }
            value.push(b);
            i += 1;
        }
        let raw = &data[raw_start..i];
        if !quoted && raw == f.null.as_bytes() {
            cells.push(None);
        } else {
            cells.push(Some(utf8(value, line)?));
        }
        match data.get(i) {
            Some(&b) if b == f.delimiter => i += 1,
            Some(b'\r') => return Ok((Some(cells), i + 2)),
            Some(b'\n') => return Ok((Some(cells), i + 1)),
            _ => return Ok((Some(cells), data.len())),
        }
    }
}

/// Appends one row of COPY TO output (`None` for NULL) and its newline.
pub fn encode_row(cells: &[Option<&[u8]>], f: &CopyFormat, out: &mut Vec<u8>) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(f.delimiter);
        }
        match cell {
            None => out.extend_from_slice(f.null.as_bytes()),
            Some(v) if f.csv => {
                let needs_quotes = v.is_empty() && f.null.is_empty()
                    || *v == f.null.as_bytes()
                    || v.iter()
                        .any(|&b| b == f.delimiter || b == f.quote || b == b'\n' || b == b'\r');
                if needs_quotes {
                    out.push(f.quote);
                    for &b in *v {
                        if b == f.quote || b == f.escape {
                            out.push(f.escape);
                        }
                        out.push(b);
                    }
                    out.push(f.quote);
                } else {
                    out.extend_from_slice(v);
                }
            }
            Some(v) => {
                for &b in *v {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' if f.delimiter == b'\t' => out.extend_from_slice(b"\\t"),
                        8 => out.extend_from_slice(b"\\b"),
                        12 => out.extend_from_slice(b"\\f"),
                        11 => out.extend_from_slice(b"\\v"),
                        d if d == f.delimiter => {
                            out.push(b'\\');
                            out.push(d);
                        }
                        other => out.push(other),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

/// The header line of COPY TO … CSV HEADER.
pub fn encode_header(names: &[String], f: &CopyFormat, out: &mut Vec<u8>) {
    let cells: Vec<Option<&[u8]>> = names.iter().map(|n| Some(n.as_bytes())).collect();
    encode_row(&cells, f, out);
}

/// The table COPY FROM fills and the positions of the columns it names (every visible one if
/// none).
fn target(
    catalog: &weft_storage::Catalog,
    table_name: &ast::ObjectName,
    columns: &[ast::Ident],
) -> Result<(weft_storage::TableDef, Vec<usize>)> {
    let name = crate::ddl::object_name(table_name)?;
    let def = crate::dml::target_by_name(catalog, name)?.clone();
    let cols = if columns.is_empty() {
        (0..def.columns.len())
            .filter(|&c| !def.columns[c].hidden)
            .collect()
    } else {
        let mut cols: Vec<usize> = Vec::with_capacity(columns.len());
        for c in columns {
            let n = crate::ddl::ident(c);
            let pos = def
                .column_index(&n)
                .filter(|&i| !def.columns[i].hidden)
                .ok_or_else(|| Error::UndefinedColumn {
                    message: format!("column \"{n}\" of relation \"{}\" does not exist", def.name),
                })?;
            if cols.contains(&pos) {
                return Err(Error::Detailed {
                    code: "42701",
                    message: format!("column \"{n}\" specified more than once"),
                    detail: None,
                    hint: None,
                    object: Default::default(),
                });
            }
            cols.push(pos);
        }
        cols
    };
    Ok((def, cols))
}

/// Prepares a COPY: FROM STDIN checks its table and columns; TO STDOUT is planned as its
/// query (`SELECT cols FROM table`, or the query given).
pub(crate) async fn prepare(
    session: &mut crate::session::Session,
    stmt: crate::statement::Statement,
    declared: &[Option<crate::pgtype::PgType>],
) -> Result<crate::session::Prepared> {
    let ast::Statement::Copy {
        source,
        to,
        target: where_to,
        options,
        legacy_options,
        values,
    } = &*stmt.ast
    else {
        return Err(Error::internal("not a COPY statement"));
    };
    if !values.is_empty() {
        return Err(Error::unsupported(
            "COPY data inside the statement's text (send it as COPY data)",
        ));
    }
    match (where_to, *to) {
        (ast::CopyTarget::Stdin, false) | (ast::CopyTarget::Stdout, true) => {}
        (ast::CopyTarget::Stdin, true) | (ast::CopyTarget::Stdout, false) => {
            return Err(Error::syntax(format!(
                "syntax error: COPY {} {where_to}",
                if *to { "TO" } else { "FROM" }
            )))
        }
        _ => {
            return Err(Error::unsupported(
                "COPY to or from a file or program on the server (use STDIN or STDOUT, as \
                 psql's \\copy does)",
            ))
        }
    }
    let format = format_of(options, legacy_options)?;
    if !*to {
        let ast::CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(Error::syntax("COPY FROM takes a table, not a query"));
        };
        let (_, cols) = target(&session.shared.catalog(), table_name, columns)?;
        return Ok(crate::session::Prepared {
            param_types: Vec::new(),
            fields: None,
            stmt: Some(stmt.clone()),
            plan: None,
            point: None,
            copy: Some(CopySpec {
                from_stdin: true,
                columns: cols.len(),
                format,
            }),
        });
    }
    let select = match source {
        ast::CopySource::Table {
            table_name,
            columns,
        } => {
            let list = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!("SELECT {list} FROM {table_name}")
        }
        ast::CopySource::Query(q) => q.to_string(),
    };
    let select = crate::statement::parse(&select)?
        .pop()
        .ok_or_else(|| Error::internal("COPY's query did not parse"))?;
    let catalog = session.shared.catalog();
    let plan = crate::query::plan(&session.state, &select, declared, catalog).await?;
    Ok(crate::session::Prepared {
        param_types: plan.param_types.clone(),
        fields: Some(std::sync::Arc::clone(&plan.fields)),
        copy: Some(CopySpec {
            from_stdin: false,
            columns: plan.fields.len(),
            format,
        }),
        stmt: Some(select),
        plan: Some(plan),
        point: None,
    })
}

/// COPY … FROM STDIN with the data the front end received: each cell is its column's typed
/// input, and the rows are inserted as INSERT would (defaults for the columns not named,
/// constraints, foreign keys at the statement's end).
pub(crate) fn copy_from(
    ctx: &crate::session::ExecCtx<'_>,
    txn: &mut weft_storage::Txn,
    stmt: &crate::statement::Statement,
) -> Result<crate::session::QueryOutput> {
    let ast::Statement::Copy {
        source: ast::CopySource::Table {
            table_name,
            columns,
        },
        options,
        legacy_options,
        ..
    } = &*stmt.ast
    else {
        return Err(Error::internal("not a COPY FROM statement"));
    };
    let data = ctx
        .shared
        .take_copy_data()
        .ok_or_else(|| Error::internal("COPY FROM STDIN ran without its data"))?
        .map_err(|message| Error::Detailed {
            code: "57014",
            message: format!("COPY from stdin failed: {message}"),
            detail: None,
            hint: None,
            object: Default::default(),
        })?;
    let format = format_of(options, legacy_options)?;
    let (def, cols) = target(&txn.catalog(), table_name, columns)?;
    let names: Vec<String> = cols.iter().map(|&c| def.columns[c].name.clone()).collect();
    let rows = parse(&data, &format, &names)?;
    let mut partial = Vec::with_capacity(rows.len());
    for cells in rows {
        let mut values = Vec::with_capacity(cells.len());
        for (cell, &c) in cells.into_iter().zip(&cols) {
            values.push(Some(match cell {
                None => weft_storage::Value::Null,
                Some(text) => crate::convert::scalar_to_value(
                    &datafusion::common::ScalarValue::Utf8(Some(text)),
                    def.columns[c].data_type,
                )?,
            }));
        }
        partial.push(values);
    }
    let n = crate::dml::insert::insert_rows(ctx, txn, &def, &cols, partial)?;
    Ok(crate::session::QueryOutput::Command {
        tag: format!("COPY {n}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn text() -> CopyFormat {
        CopyFormat::text()
    }

    fn csv() -> CopyFormat {
        format_of(&[ast::CopyOption::Format(ast::Ident::new("csv"))], &[]).unwrap()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn text_format_escapes_nulls_and_the_end_marker() {
        let data = b"a\\tb\t\\N\t\\101\\x41\\\\\r\nx\t\t\\.z\n\\.\nignored\n";
        let rows = parse(data, &text(), &names(3)).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![s("a\tb"), None, s("AA\\")],
                vec![s("x"), s(""), s(".z")],
            ]
        );
        let e = parse(b"1\t2\n", &text(), &names(3)).unwrap_err();
        assert!(
            e.to_string().contains("missing data for column \"c2\""),
            "{e}"
        );
        let e = parse(b"1\t2\t3\t4\n", &text(), &names(3)).unwrap_err();
        assert!(e.to_string().contains("extra data"), "{e}");
    }

    #[test]
    fn csv_quotes_embedded_newlines_and_empty_strings() {
        let data = b"1,\"a, \"\"b\"\"\nc\",\r\n2,\"\",x\n";
        let rows = parse(data, &csv(), &names(3)).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![s("1"), s("a, \"b\"\nc"), None],
                vec![s("2"), s(""), s("x")],
            ]
        );
        let e = parse(b"1,\"open\n", &csv(), &names(2)).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
    }

    #[test]
    fn rows_round_trip_through_encode_and_parse() {
        for f in [text(), csv()] {
            let cells: Vec<Option<&[u8]>> = vec![
                Some(b"tab\there"),
                None,
                Some(b""),
                Some(b"quote\" back\\slash, comma\nline"),
            ];
            let mut out = Vec::new();
            encode_row(&cells, &f, &mut out);
            let back = parse(&out, &f, &names(4)).unwrap();
            let want: Vec<Option<String>> = cells
                .iter()
                .map(|c| c.map(|b| String::from_utf8(b.to_vec()).unwrap()))
                .collect();
            assert_eq!(back, vec![want], "{f:?}: {}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn options_as_postgresql_checks_them() {
        let legacy = [ast::CopyLegacyOption::Csv(vec![
            ast::CopyLegacyCsvOption::Header,
        ])];
        let f = format_of(&[], &legacy).unwrap();
        assert!(f.csv && f.header && f.delimiter == b',' && f.null.is_empty());
        assert!(format_of(&[ast::CopyOption::Header(true)], &[]).is_err());
        assert!(format_of(&[ast::CopyOption::Quote('\'')], &[]).is_err());
        assert!(format_of(&[ast::CopyOption::Format(ast::Ident::new("binary"))], &[]).is_err());
        let f = format_of(
            &[
                ast::CopyOption::Delimiter('|'),
                ast::CopyOption::Null("NULL".into()),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            parse(b"1|NULL|\n", &f, &names(3)).unwrap(),
            vec![vec![s("1"), None, s("")]]
        );
    }
}
