//! Renders a value's PostgreSQL text as SQLite's sqllogictest runner does, driven by the column
//! type the record declares (`query IIT` …), as the original runner's engines do:
//!
//! | declared | rendering |
//! | --- | --- |
//! | any | SQL NULL → `NULL`; empty string → `(empty)` |
//! | `I` | an integer; a fraction is truncated toward zero (`2.9` → `2`, `-2.9` → `-2`); a boolean is `1`/`0` |
//! | `R` | `%.3f` |
//! | `T` (or none) | the text as PostgreSQL sends it (`t`/`f` for booleans) |
//!
//! A value that is not a number under `I` or `R` is left as it is, so the mismatch shows.

use sqllogictest::DefaultColumnType;

pub fn format_value(value: Option<&str>, ty: Option<&DefaultColumnType>) -> String {
    let Some(v) = value else {
        return "NULL".into();
    };
    if v.is_empty() {
        return "(empty)".into();
    }
    match ty {
        Some(DefaultColumnType::Integer) => integer(v),
        Some(DefaultColumnType::FloatingPoint) => real(v),
        _ => v.to_string(),
    }
}

fn integer(v: &str) -> String {
    match v {
        "t" => return "1".into(),
        "f" => return "0".into(),
        _ => {}
    }
    let (neg, unsigned) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if all_digits(int_part)
        && all_digits(frac_part)
        && !(int_part.is_empty() && frac_part.is_empty())
    {
        // Plain decimal (integer, numeric): truncate textually, so no precision is lost.
        let int_part = int_part.trim_start_matches('0');
        return match (int_part.is_empty(), neg) {
            (true, _) => "0".into(),
            (false, true) => format!("-{int_part}"),
            (false, false) => int_part.to_string(),
        };
    }
    // Exponent form, as float4/float8 print large and small values.
    match v.parse::<f64>() {
        #[allow(clippy::cast_possible_truncation)]
        Ok(f) if f.is_finite() && f.trunc().abs() < 9.2e18 => format!("{}", f.trunc() as i64),
        _ => v.to_string(),
    }
}

fn real(v: &str) -> String {
    let f = match v {
        "t" => 1.0,
        "f" => 0.0,
        _ => match v.parse::<f64>() {
            Ok(f) => f,
            Err(_) => return v.to_string(),
        },
    };
    // As C's printf("%.3f") prints the non-finite values.
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:.3}")
    }
}
