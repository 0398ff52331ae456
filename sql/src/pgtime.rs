//! Dates and timestamps in PostgreSQL's text forms (ISO `DateStyle`, `TimeZone` UTC) and epochs.
//!
//! Arrow counts from 1970-01-01; PostgreSQL's binary format counts from 2000-01-01.

use std::fmt::Write;

use chrono::{Datelike, NaiveDate};

/// Days from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

fn date_from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_FROM_CE)?)
}

fn days_of(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_FROM_CE
}

fn write_ymd(date: NaiveDate, out: &mut String) {
    let year = date.year();
    // PostgreSQL has no year 0: astronomical year 0 is 1 BC.
    let shown = if year <= 0 { 1 - year } else { year };
    let _ = write!(out, "{:04}-{:02}-{:02}", shown, date.month(), date.day());
}

fn bc_suffix(date: NaiveDate, out: &mut String) {
    if date.year() <= 0 {
        out.push_str(" BC");
    }
}

/// Writes a date (days since 1970-01-01) like `2024-01-31`; `None` if chrono cannot represent it.
pub fn format_date(days: i32, out: &mut String) -> Option<()> {
    match days {
        i32::MAX => out.push_str("infinity"),
        i32::MIN => out.push_str("-infinity"),
        _ => {
            let date = date_from_days(days)?;
            write_ymd(date, out);
            bc_suffix(date, out);
        }
    }
    Some(())
}

/// Writes a timestamp (microseconds since 1970-01-01) like `2024-01-31 12:00:00.5`, with `+00`
/// when `with_zone` (the session time zone is UTC).
pub fn format_timestamp(micros: i64, with_zone: bool, out: &mut String) -> Option<()> {
    match micros {
        i64::MAX => out.push_str("infinity"),
        i64::MIN => out.push_str("-infinity"),
        _ => {
            let days = i32::try_from(micros.div_euclid(MICROS_PER_DAY)).ok()?;
            let in_day = micros.rem_euclid(MICROS_PER_DAY);
            let date = date_from_days(days)?;
            write_ymd(date, out);
            let secs = in_day / 1_000_000;
            let frac = in_day % 1_000_000;
            let _ = write!(
                out,
                " {:02}:{:02}:{:02}",
                secs / 3600,
                (secs / 60) % 60,
                secs % 60
            );
            if frac != 0 {
                let digits = format!("{frac:06}");
                out.push('.');
                out.push_str(digits.trim_end_matches('0'));
            }
            if with_zone {
                out.push_str("+00");
            }
            bc_suffix(date, out);
        }
    }
    Some(())
}

/// Parses a date in ISO form (`YYYY-MM-DD`, optional ` BC`), `infinity` or `epoch`.
pub fn parse_date(s: &str) -> Option<i32> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => return Some(i32::MAX),
        "-infinity" => return Some(i32::MIN),
        "epoch" => return Some(0),
        _ => {}
    }
    let (body, bc) = strip_bc(s);
    // A timestamp string is accepted as a date, as PostgreSQL does.
    let date_part = body.split([' ', 'T']).next()?;
    Some(days_of(parse_ymd(date_part, bc)?))
}

fn strip_bc(s: &str) -> (&str, bool) {
    let lower = s.to_ascii_lowercase();
    if lower.ends_with(" bc") {
        (s[..s.len() - 3].trim_end(), true)
    } else if lower.ends_with(" ad") {
        (s[..s.len() - 3].trim_end(), false)
    } else {
        (s, false)
    }
}

/// The year, month and day fields of `YYYY-MM-DD` (or `YYYYMMDD`), not yet checked as a date.
fn ymd_fields(s: &str) -> Option<(i32, u32, u32)> {
    if s.len() == 8 && !s.contains('-') {
        return Some((
            parse_digits(&s[..4])?,
            parse_digits(&s[4..6])?,
            parse_digits(&s[6..])?,
        ));
    }
    let mut parts = s.splitn(3, '-');
    Some((
        parse_digits(parts.next()?)?,
        parse_digits(parts.next()?)?,
        parse_digits(parts.next()?)?,
    ))
}

fn parse_ymd(s: &str, bc: bool) -> Option<NaiveDate> {
    let (year, month, day) = ymd_fields(s)?;
    let year = if bc {
        if year == 0 {
            return None;
        }
        1 - year
    } else {
        year
    };
    NaiveDate::from_ymd_opt(year, month, day)
}

/// Why a date or timestamp did not parse: PostgreSQL tells a malformed value (22007) from a
/// well-formed one with a field out of range (22008: `2023-02-29`, `2024-01-01 25:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Syntax,
    FieldOutOfRange,
}

/// The reason `parse_date` or `parse_timestamp` rejected `s`.
pub fn invalid_reason(s: &str) -> Invalid {
    let (body, _) = strip_bc(s.trim());
    let date_part = body.split([' ', 'T']).next().unwrap_or("");
    match ymd_fields(date_part) {
        Some(_) => Invalid::FieldOutOfRange,
        None => Invalid::Syntax,
    }
}

fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a timestamp: `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][zone][ BC]`, where zone is `Z`,
/// `UTC`, `±HH`, `±HH:MM` or `±HHMM`. A zone is applied (giving UTC) only when `with_zone`; a
/// string without zone is read as UTC, the session time zone.
pub fn parse_timestamp(s: &str, with_zone: bool) -> Option<i64> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        "epoch" => return Some(0),
        _ => {}
    }
    let (body, bc) = strip_bc(s);
    let (date_part, rest) = match body.find([' ', 'T']) {
        Some(i) => (&body[..i], body[i + 1..].trim_start()),
        None => (body, ""),
    };
    let date = parse_ymd(date_part, bc)?;
    let (time_part, zone) = split_zone(rest);
    let time = if time_part.is_empty() {
        0
    } else {
        parse_time(time_part)?
    };
    let offset_secs = match zone {
        Some(z) => parse_zone(z)?,
        None => 0,
    };
    let micros = i64::from(days_of(date))
        .checked_mul(MICROS_PER_DAY)?
        .checked_add(time)?;
    if with_zone {
        micros.checked_sub(i64::from(offset_secs) * 1_000_000)
    } else {
        Some(micros)
    }
}

fn split_zone(s: &str) -> (&str, Option<&str>) {
    let s = s.trim();
    if let Some(i) = s.find(['+', '-', 'Z', 'z', ' ']) {
        let (time, zone) = s.split_at(i);
        let zone = zone.trim();
        (time.trim(), if zone.is_empty() { None } else { Some(zone) })
    } else {
        (s, None)
    }
}

/// Microseconds into the day of `HH:MM[:SS[.ffffff]]`; `24:00:00` is the next midnight.
fn parse_time(s: &str) -> Option<i64> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let mut parts = hms.split(':');
    let h: i64 = parse_digits(parts.next()?)?;
    let m: i64 = parse_digits(parts.next()?)?;
    let sec: i64 = match parts.next() {
        Some(p) => parse_digits(p)?,
        None => 0,
    };
    if parts.next().is_some() || m > 59 || sec > 59 {
        return None;
    }
    let micros: i64 = match frac {
        Some(f) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Round to microseconds as PostgreSQL does.
            let mut digits: String = f.chars().take(7).collect();
            while digits.len() < 7 {
                digits.push('0');
            }
            let v: i64 = digits.parse().ok()?;
            (v + 5) / 10
        }
        None => 0,
    };
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    (h < 24 || total == MICROS_PER_DAY).then_some(total)
}

/// Offset east of UTC in seconds.
fn parse_zone(z: &str) -> Option<i32> {
    let lower = z.to_ascii_lowercase();
    if lower == "z" || lower == "utc" || lower == "gmt" {
        return Some(0);
    }
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let (h, m, s): (i32, i32, i32) = if let Some((h, rest)) = rest.split_once(':') {
        let (m, s) = match rest.split_once(':') {
            Some((m, s)) => (parse_digits(m)?, parse_digits(s)?),
            None => (parse_digits(rest)?, 0),
        };
        (parse_digits(h)?, m, s)
    } else if rest.len() == 4 {
        (parse_digits(&rest[..2])?, parse_digits(&rest[2..])?, 0)
    } else {
        (parse_digits(rest)?, 0, 0)
    };
    if h > 15 || m > 59 || s > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(days: i32) -> String {
        let mut s = String::new();
        format_date(days, &mut s).expect("representable");
        s
    }

    fn ts(micros: i64, tz: bool) -> String {
        let mut s = String::new();
        format_timestamp(micros, tz, &mut s).expect("representable");
        s
    }

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(PG_EPOCH_DAYS), "2000-01-01");
        assert_eq!(date(-719_162), "0001-01-01");
        assert_eq!(date(-719_163), "0001-12-31 BC");
        assert_eq!(date(2_932_896), "9999-12-31");
        assert_eq!(date(2_932_897), "10000-01-01");
        for d in [0, 1, -1, 19_000, -719_163, 2_932_897] {
            assert_eq!(parse_date(&date(d)), Some(d), "{}", date(d));
        }
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("2024-01-0x"), None);
        assert_eq!(parse_date("2024-02-29 10:00:00"), parse_date("2024-02-29"));
        assert_eq!(parse_date("20240229"), parse_date("2024-02-29"));
        let bc = parse_date("0044-03-15 BC").expect("BC date parses");
        assert_eq!(date(bc), "0044-03-15 BC");
    }

    #[test]
    fn rejections_tell_syntax_from_range() {
        assert_eq!(invalid_reason("2023-02-29"), Invalid::FieldOutOfRange);
        assert_eq!(invalid_reason("2024-01-01 25:00"), Invalid::FieldOutOfRange);
        assert_eq!(invalid_reason("not a date"), Invalid::Syntax);
        assert_eq!(invalid_reason("2024-01"), Invalid::Syntax);
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0, false), "1970-01-01 00:00:00");
        assert_eq!(ts(1_500_000, true), "1970-01-01 00:00:01.5+00");
        assert_eq!(ts(-1, false), "1969-12-31 23:59:59.999999");
        assert_eq!(
            ts(PG_EPOCH_MICROS + 123, false),
            "2000-01-01 00:00:00.000123"
        );
        for m in [0, 1, -1, 1_700_000_000_123_456, -62_135_596_800_000_001] {
            assert_eq!(parse_timestamp(&ts(m, false), false), Some(m));
            assert_eq!(parse_timestamp(&ts(m, true), true), Some(m));
        }
        assert_eq!(
            parse_timestamp("1970-01-01 02:00:00+02", true),
            Some(0),
            "offset applied"
        );
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z", true), Some(0));
        assert_eq!(
            parse_timestamp("1970-01-01 01:30-01:30", true),
            Some(3 * 3_600_000_000)
        );
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:00.0000005", false),
            Some(1)
        );
        assert_eq!(parse_timestamp("1970-01-01", false), Some(0));
        assert_eq!(parse_timestamp("1970-01-01 25:00", false), None);
        assert_eq!(parse_timestamp("nonsense", false), None);
    }
}
