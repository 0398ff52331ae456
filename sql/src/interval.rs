//! `time` and `interval` in PostgreSQL's text forms (`IntervalStyle = postgres`).
//!
//! Binary forms: `time` is `i64` microseconds since midnight; `interval` is
//! `i64` microseconds, `i32` days, `i32` months.

use std::fmt::Write;

const MICROS_PER_SEC: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;

/// An interval as PostgreSQL keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

/// `HH:MM:SS[.ffffff]` of a non-negative microsecond count (hours may exceed 23).
fn put_clock(micros: u64, out: &mut String) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// `time` text; `None` outside 00:00:00..=24:00:00.
pub fn format_time(micros: i64, out: &mut String) -> Option<()> {
    if !(0..=MICROS_PER_DAY).contains(&micros) {
        return None;
    }
    put_clock(micros as u64, out);
    Some(())
}

/// Parses `HH:MM[:SS[.ffffff]]`.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let num = |p: &str| -> Option<i64> {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    let h = num(parts[0])?;
    let m = num(parts[1])?;
    let sec = match parts.get(2) {
        Some(p) => num(p)?,
        None => 0,
    };
    let micros = match frac {
        Some(f) => frac_micros(f)?,
        None => 0,
    };
    if m > 59 || sec > 59 {
        return None;
    }
    let total = ((h * 60 + m) * 60 + sec) * MICROS_PER_SEC + micros;
    (total <= MICROS_PER_DAY).then_some(total)
}

/// Microseconds of a fraction's digits (rounded at the 7th digit).
fn frac_micros(f: &str) -> Option<i64> {
    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = f.chars().take(7).collect();
    while digits.len() < 7 {
        digits.push('0');
    }
    let v: i64 = digits.parse().ok()?;
    Some((v + 5) / 10)
}

/// The text of an Arrow interval (months, days, nanoseconds), to microsecond precision.
pub fn month_day_nano_text(v: datafusion::arrow::datatypes::IntervalMonthDayNano) -> String {
    let mut s = String::new();
    format_interval(
        Interval {
            months: v.months,
            days: v.days,
            micros: v.nanoseconds.div_euclid(1_000),
        },
        &mut s,
    );
    s
}

/// `interval` text like PostgreSQL's `postgres` style: `1 year 2 mons -3 days +04:05:06.5`.
pub fn format_interval(iv: Interval, out: &mut String) {
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str, out: &mut String| {
        if value == 0 {
            return;
        }
        let sep = if is_zero { "" } else { " " };
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value != 1 { "s" } else { "" };
        let _ = write!(out, "{sep}{plus}{value} {unit}{plural}");
        is_before = value < 0;
        is_zero = false;
    };
    let months = i64::from(iv.months);
    part(months / 12, "year", out);
    part(months % 12, "mon", out);
    part(i64::from(iv.days), "day", out);
    if is_zero || iv.micros != 0 {
        if !is_zero {
            out.push(' ');
        }
        if iv.micros < 0 {
            out.push('-');
        } else if is_before {
            out.push('+');
        }
        put_clock(iv.micros.unsigned_abs(), out);
    }
}

/// Parses `[@] quantity unit [quantity unit...] [[-]HH:MM[:SS[.f]]] [ago]`, e.g.
/// `1 year 2 mons 3 days 04:05:06`, `-1 day +02:00:00`, `90 minutes`, `1.5 hours`.
pub fn parse_interval(s: &str) -> Option<Interval> {
    let lower = s.trim().to_ascii_lowercase();
    let mut tokens: Vec<&str> = lower.split_whitespace().collect();
    if tokens.first() == Some(&"@") {
        tokens.remove(0);
    }
    let ago = tokens.last() == Some(&"ago");
    if ago {
        tokens.pop();
    }
    if tokens.is_empty() {
        return None;
    }
    let mut iv = Interval {
        months: 0,
        days: 0,
        micros: 0,
    };
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i];
        if tok.contains(':') {
            let (negative, clock) = match tok.as_bytes().first()? {
                b'-' => (true, &tok[1..]),
                b'+' => (false, &tok[1..]),
                _ => (false, tok),
            };
            let micros = parse_clock(clock)?;
            iv.micros = iv
                .micros
                .checked_add(if negative { -micros } else { micros })?;
            i += 1;
            continue;
        }
        // A number, with its unit either attached ("5days") or as the next token.
        let split = tok
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(tok.len());
        let (number, unit) = if split < tok.len() {
            (&tok[..split], &tok[split..])
        } else {
            i += 1;
            (tok, *tokens.get(i).unwrap_or(&"second"))
        };
        let value: f64 = number.parse().ok()?;
        add_unit(&mut iv, value, unit)?;
        i += 1;
    }
    if ago {
        iv = Interval {
            months: iv.months.checked_neg()?,
            days: iv.days.checked_neg()?,
            micros: iv.micros.checked_neg()?,
        };
    }
    Some(iv)
}

/// `H:MM[:SS[.f]]` with any number of hours.
fn parse_clock(s: &str) -> Option<i64> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let parts: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse::<i64>().ok().filter(|v| *v >= 0))
        .collect::<Option<_>>()?;
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, 0),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    let micros = match frac {
        Some(f) => frac_micros(f)?,
        None => 0,
    };
    h.checked_mul(3600)?
        .checked_add(m * 60 + sec)?
        .checked_mul(MICROS_PER_SEC)?
        .checked_add(micros)
}

fn add_unit(iv: &mut Interval, value: f64, unit: &str) -> Option<()> {
    let unit = match unit {
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => "millisecond",
        "us" | "usec" | "usecs" | "microsecond" | "microseconds" => "microsecond",
        other => other.trim_end_matches('s'),
    };
    let micros_per = |v: f64, per: f64| -> Option<i64> {
        let m = (v * per).round();
        (m.abs() < 9.2e18).then_some(m as i64)
    };
    match unit {
        "y" | "yr" | "year" => iv.months = iv.months.checked_add(months(value * 12.0)?)?,
        "mon" | "month" => iv.months = iv.months.checked_add(months(value)?)?,
        "w" | "week" => iv.days = iv.days.checked_add(months(value * 7.0)?)?,
        "d" | "day" => iv.days = iv.days.checked_add(months(value)?)?,
        "h" | "hr" | "hour" => iv.micros = iv.micros.checked_add(micros_per(value, 3600e6)?)?,
        "m" | "min" | "minute" => iv.micros = iv.micros.checked_add(micros_per(value, 60e6)?)?,
        "" | "sec" | "second" => iv.micros = iv.micros.checked_add(micros_per(value, 1e6)?)?,
        "millisecond" => iv.micros = iv.micros.checked_add(micros_per(value, 1e3)?)?,
        "microsecond" => iv.micros = iv.micros.checked_add(micros_per(value, 1.0)?)?,
        _ => return None,
    }
    Some(())
}

/// Whole units only (fractions of months and days are not carried into smaller units here).
fn months(v: f64) -> Option<i32> {
    (v.fract() == 0.0 && v.abs() < 2.1e9).then_some(v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(months: i32, days: i32, micros: i64) -> String {
        let mut s = String::new();
        format_interval(
            Interval {
                months,
                days,
                micros,
            },
            &mut s,
        );
        s
    }

    #[test]
    fn interval_text_like_postgres() {
        assert_eq!(text(0, 0, 0), "00:00:00");
        assert_eq!(text(14, 3, 14_706_000_000), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(text(1, 0, 0), "1 mon");
        assert_eq!(text(-12, 0, 0), "-1 years");
        assert_eq!(text(0, -1, 3_600_000_000), "-1 days +01:00:00");
        assert_eq!(text(0, 1, -3_600_000_000), "1 day -01:00:00");
        assert_eq!(text(0, 0, 90_000_000_000 + 500_000), "25:00:00.5");
    }

    #[test]
    fn interval_parse() {
        let iv = |s: &str| parse_interval(s).map(|i| (i.months, i.days, i.micros));
        assert_eq!(
            iv("1 year 2 mons 3 days 04:05:06"),
            Some((14, 3, 14_706_000_000))
        );
        assert_eq!(iv("-1 days +01:00:00"), Some((0, -1, 3_600_000_000)));
        assert_eq!(iv("90 minutes"), Some((0, 0, 5_400_000_000)));
        assert_eq!(iv("1.5 hours"), Some((0, 0, 5_400_000_000)));
        assert_eq!(iv("@ 2 days ago"), Some((0, -2, 0)));
        assert_eq!(iv("10"), Some((0, 0, 10_000_000)));
        assert_eq!(iv("5 fortnights"), None);
        assert_eq!(iv(""), None);
        for (m, d, u) in [(14, 3, 14_706_000_000), (0, -1, 3_600_000_000), (-5, 0, -1)] {
            assert_eq!(iv(&text(m, d, u)), Some((m, d, u)), "{}", text(m, d, u));
        }
    }

    #[test]
    fn time_text() {
        let mut s = String::new();
        format_time(45_296_789_000, &mut s).expect("in range");
        assert_eq!(s, "12:34:56.789");
        assert_eq!(parse_time("12:34:56.789"), Some(45_296_789_000));
        assert_eq!(parse_time("24:00:00"), Some(MICROS_PER_DAY));
        assert_eq!(parse_time("24:00:01"), None);
        assert_eq!(parse_time("12:60"), None);
    }
}
