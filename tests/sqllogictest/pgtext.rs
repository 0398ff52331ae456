//! Turns a value received in PostgreSQL's binary format (what tokio-postgres asks for over the
//! extended protocol) into the exact text PostgreSQL's own output function would send over the
//! simple protocol, so that both protocols feed identical strings to the value formatter.
//!
//! Assumes the server's defaults: `DateStyle = ISO`, `IntervalStyle = postgres`,
//! `bytea_output = hex`, `extra_float_digits = 1`, and a UTC session time zone for `timestamptz`
//! and `timetz` display (checked by the caller).

use std::error::Error;
use std::fmt::Write as _;

use tokio_postgres::types::{FromSql, Kind, Type};

type BoxError = Box<dyn Error + Send + Sync>;

/// A column value in binary form, whatever its type.
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

// Type OIDs from pg_type.dat.
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const CHAR: u32 = 18;
const NAME: u32 = 19;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const JSON: u32 = 114;
const XML: u32 = 142;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const UNKNOWN: u32 = 705;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const TIMETZ: u32 = 1266;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

const USECS_PER_DAY: i64 = 86_400_000_000;
/// Julian day number of 2000-01-01, PostgreSQL's date epoch.
const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;

/// PostgreSQL's text output for a non-null binary value of type `ty`.
pub fn to_text(ty: &Type, raw: &[u8]) -> Result<String, BoxError> {
    match ty.kind() {
        Kind::Array(elem) => return array_to_text(elem, raw),
        Kind::Enum(_) => return utf8(raw),
        Kind::Domain(base) => return to_text(base, raw),
        _ => {}
    }
    oid_to_text(ty.oid(), raw)
        .map_err(|e| format!("type {} (oid {}): {e}", ty.name(), ty.oid()).into())
}

fn oid_to_text(oid: u32, raw: &[u8]) -> Result<String, BoxError> {
    let mut r = Reader(raw);
    let text = match oid {
        BOOL => if r.u8()? != 0 { "t" } else { "f" }.to_string(),
        INT2 => r.i16()?.to_string(),
        INT4 => r.i32()?.to_string(),
        INT8 => r.i64()?.to_string(),
        OID => r.u32()?.to_string(),
        FLOAT4 => float_text(f64::from(f32::from_bits(r.u32()?)), true),
        FLOAT8 => float_text(f64::from_bits(r.u64()?), false),
        NUMERIC => numeric_text(&mut r)?,
        TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | JSON | XML | CHAR => return utf8(raw),
        JSONB => match raw.split_first() {
            Some((1, json)) => return utf8(json),
            _ => return Err("unknown jsonb binary version".into()),
        },
        BYTEA => {
            let mut s = String::from("\\x");
            for b in raw {
                write!(s, "{b:02x}")?;
            }
            return Ok(s);
        }
        UUID => {
            if raw.len() != 16 {
                return Err("uuid is not 16 bytes".into());
            }
            let mut s = String::new();
            for (i, b) in raw.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                write!(s, "{b:02x}")?;
            }
            return Ok(s);
        }
        DATE => date_text(r.i32()?),
        TIME => time_text(r.i64()?),
        TIMETZ => {
            let usecs = r.i64()?;
            let zone_west = r.i32()?;
            format!("{}{}", time_text(usecs), offset_text(-zone_west))
        }
        TIMESTAMP => timestamp_text(r.i64()?, false),
        TIMESTAMPTZ => timestamp_text(r.i64()?, true),
        INTERVAL => {
            let usecs = r.i64()?;
            let days = r.i32()?;
            let months = r.i32()?;
            interval_text(usecs, days, months)
        }
        _ => return Err("the runner has no text conversion for this type yet".into()),
    };
    if !r.0.is_empty() {
        return Err("trailing bytes in binary value".into());
    }
    Ok(text)
}

fn utf8(raw: &[u8]) -> Result<String, BoxError> {
    Ok(std::str::from_utf8(raw)?.to_string())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BoxError> {
        if self.0.len() < N {
            return Err("binary value is too short".into());
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into()?)
    }
    fn u8(&mut self) -> Result<u8, BoxError> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, BoxError> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn u16(&mut self) -> Result<u16, BoxError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, BoxError> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, BoxError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, BoxError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, BoxError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
}

/// float4out/float8out with `extra_float_digits = 1`: the shortest digits that round-trip,
/// positional while the decimal exponent is in [-4, 6) for float4 and [-4, 15) for float8.
fn float_text(v: f64, is_float4: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, as Ryu does in PostgreSQL.
    #[allow(clippy::cast_possible_truncation)]
    let sci = if is_float4 {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let upper = if is_float4 { 6 } else { 15 };
    if (-4..upper).contains(&exp) {
        let n = digits.len() as i32;
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else if exp + 1 >= n {
            format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..(exp + 1) as usize],
                &digits[(exp + 1) as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// numeric_out: base-10000 digits, `weight` of the first, `dscale` decimal places shown.
fn numeric_text(r: &mut Reader<'_>) -> Result<String, BoxError> {
    let ndigits = r.i16()?;
    let weight = i32::from(r.i16()?);
    let sign = r.u16()?;
    let dscale = i32::from(r.u16()?);
    let digits = (0..ndigits)
        .map(|_| r.i16())
        .collect::<Result<Vec<_>, _>>()?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digit = |k: i32| -> i32 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k))
            .map_or(0, |d| i32::from(*d))
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                write!(s, "{}", digit(k))?;
            } else {
                write!(s, "{:04}", digit(k))?;
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        for i in 0..dscale {
            let group = digit(weight + 1 + i / 4);
            let pos = 3 - i % 4;
            let d = group / 10_i32.pow(pos as u32) % 10;
            write!(s, "{d}")?;
        }
    }
    Ok(s)
}

/// (year, month, day) of a Julian day number; PostgreSQL's j2date.
fn j2date(jd: i64) -> (i64, i64, i64) {
    let mut julian = jd + 32044;
    let mut quad = julian / 146_097;
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    y += quad * 4;
    let quad = julian * 2141 / 65536;
    let day = julian - 7834 * quad / 256;
    let month = (quad + 10) % 12 + 1;
    (y - 4800, month, day)
}

/// "YYYY-MM-DD" and whether the year is BC.
fn ymd_text(days_since_2000: i64) -> (String, bool) {
    let (y, m, d) = j2date(days_since_2000 + POSTGRES_EPOCH_JDATE);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    (format!("{year:04}-{m:02}-{d:02}"), bc)
}

fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let (ymd, bc) = ymd_text(i64::from(days));
            if bc {
                format!("{ymd} BC")
            } else {
                ymd
            }
        }
    }
}

/// "HH:MM:SS" with the fraction of a second, trailing zeros dropped.
fn time_text(usecs: i64) -> String {
    let secs = usecs / 1_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    push_fraction(&mut s, usecs % 1_000_000);
    s
}

fn push_fraction(s: &mut String, frac_usecs: i64) {
    if frac_usecs != 0 {
        let frac = format!("{:06}", frac_usecs.abs());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
}

/// A UTC offset in seconds east as PostgreSQL shows it: "+05", "-03:30", "+01:02:03".
fn offset_text(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    match (m, s) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

fn timestamp_text(usecs: i64, with_zone: bool) -> String {
    match usecs {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let days = usecs.div_euclid(USECS_PER_DAY);
    let time = usecs.rem_euclid(USECS_PER_DAY);
    let (ymd, bc) = ymd_text(days);
    let mut s = format!("{ymd} {}", time_text(time));
    if with_zone {
        // The caller checked that the session time zone is UTC.
        s.push_str("+00");
    }
    if bc {
        s.push_str(" BC");
    }
    s
}

/// interval_out with `IntervalStyle = postgres`.
fn interval_text(usecs: i64, days: i32, months: i32) -> String {
    let mut s = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        let space = if is_zero { "" } else { " " };
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value != 1 { "s" } else { "" };
        s.push_str(&format!("{space}{plus}{value} {unit}{plural}"));
        is_before = value < 0;
        is_zero = false;
    };
    part(i64::from(months / 12), "year");
    part(i64::from(months % 12), "mon");
    part(i64::from(days), "day");
    let hours = usecs / 3_600_000_000;
    let mins = usecs / 60_000_000 % 60;
    let secs = usecs / 1_000_000 % 60;
    let frac = usecs % 1_000_000;
    if is_zero || usecs != 0 {
        let minus = usecs < 0;
        let space = if is_zero { "" } else { " " };
        let sign = if minus {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        s.push_str(&format!(
            "{space}{sign}{:02}:{:02}:{:02}",
            hours.abs(),
            mins.abs(),
            secs.abs()
        ));
        push_fraction(&mut s, frac);
    }
    s
}

/// array_out: nested braces, a `[lo:hi]=` prefix when a lower bound is not 1, and elements
/// double-quoted when they would otherwise be ambiguous.
fn array_to_text(elem_ty: &Type, raw: &[u8]) -> Result<String, BoxError> {
    let mut r = Reader(raw);
    let ndim = usize::try_from(r.i32()?)?;
    let _has_nulls = r.i32()?;
    let _elem_oid = r.u32()?;
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let len = usize::try_from(r.i32()?)?;
        let lower = r.i32()?;
        dims.push((len, lower));
    }
    if ndim == 0 {
        return Ok("{}".into());
    }
    let mut out = String::new();
    if dims.iter().any(|&(_, lower)| lower != 1) {
        for &(len, lower) in &dims {
            write!(out, "[{lower}:{}]", i64::from(lower) + len as i64 - 1)?;
        }
        out.push('=');
    }
    write_array_level(&mut out, &mut r, elem_ty, &dims)?;
    Ok(out)
}

fn write_array_level(
    out: &mut String,
    r: &mut Reader<'_>,
    elem_ty: &Type,
    dims: &[(usize, i32)],
) -> Result<(), BoxError> {
    out.push('{');
    for i in 0..dims[0].0 {
        if i > 0 {
            out.push(',');
        }
        if dims.len() > 1 {
            write_array_level(out, r, elem_ty, &dims[1..])?;
            continue;
        }
        let len = r.i32()?;
        if len < 0 {
            out.push_str("NULL");
            continue;
        }
        let len = usize::try_from(len)?;
        if r.0.len() < len {
            return Err("array element is truncated".into());
        }
        let (elem, rest) = r.0.split_at(len);
        r.0 = rest;
        let text = to_text(elem_ty, elem)?;
        let needs_quotes = text.is_empty()
            || text.eq_ignore_ascii_case("NULL")
            || text
                .chars()
                .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
        if needs_quotes {
            out.push('"');
            for c in text.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out.push('}');
    Ok(())
}
