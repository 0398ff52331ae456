//! Values rendered the way PostgreSQL prints them in error details (`Key (a)=(1) already exists.`).

use crate::catalog::{KeyFn, TableDef};
use crate::types::{DataType, Value};

/// `Key (a, b)=(1, x) already exists.` for the columns at `positions` of `row`.
pub fn key_exists_detail(table: &TableDef, positions: &[usize], row: &[Value]) -> String {
    index_key_detail(table, positions, &[], row)
}

/// [`key_exists_detail`] of an index key, whose columns may go through `functions`
/// (`Key (lower(email))=(a@b.c) already exists.`).
pub fn index_key_detail(
    table: &TableDef,
    positions: &[usize],
    functions: &[Option<KeyFn>],
    row: &[Value],
) -> String {
    let mut names = Vec::with_capacity(positions.len());
    let mut values = Vec::with_capacity(positions.len());
    for (i, &p) in positions.iter().enumerate() {
        let (name, ty) = match table.columns.get(p) {
            Some(c) => (c.name.as_str(), Some(c.data_type)),
            None => ("?", None),
        };
        let function = functions.get(i).copied().flatten();
        names.push(match (function, ty) {
            (Some(f), Some(DataType::Varchar(_) | DataType::Char(_))) => {
                format!("{}({name}::text)", f.name())
            }
            (Some(f), _) => format!("{}({name})", f.name()),
            (None, _) => name.to_string(),
        });
        values.push(match (row.get(p), function) {
            (Some(v), Some(f)) => format_value(ty, &f.apply(v)),
            (Some(v), None) => format_value(ty, v),
            (None, _) => "?".to_string(),
        });
    }
    format!(
        "Key ({})=({}) already exists.",
        names.join(", "),
        values.join(", ")
    )
}

pub fn format_value(ty: Option<DataType>, v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "t" } else { "f" }.into(),
        Value::Int16(i) => i.to_string(),
        Value::Int32(i) => i.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float32(f) => f.to_string(),
        Value::Float64(f) => f.to_string(),
        Value::Numeric(n) => {
            let scale = match ty {
                Some(DataType::Numeric { scale, .. }) => scale,
                _ => 0,
            };
            format_numeric(*n, scale)
        }
        Value::Text(s) => s.clone(),
        Value::Bytes(b) => {
            let mut s = String::from("\\x");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s
        }
        Value::Date(d) => format_date(i64::from(*d)),
        Value::Timestamp(t) => format_timestamp(*t),
        Value::TimestampTz(t) => format!("{}+00", format_timestamp(*t)),
        Value::Array(items) => {
            let elem = match ty {
                Some(DataType::Array(elem)) => Some(elem.scalar()),
                _ => None,
            };
            let items: Vec<String> = items
                .iter()
                .map(|x| match x {
                    Value::Null => "NULL".to_string(),
                    x => format_value(elem, x),
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Uuid(u) => {
            let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
        }
    }
}

fn format_numeric(n: i128, scale: i8) -> String {
    if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        return if n == 0 {
            "0".into()
        } else {
            format!("{n}{zeros}")
        };
    }
    let scale = usize::from(scale.unsigned_abs());
    let digits = n.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{int}.{frac}")
}

/// Days since 1970-01-01 to `YYYY-MM-DD` (proleptic Gregorian; H. Hinnant's civil_from_days).
fn format_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn format_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rem = micros.rem_euclid(86_400_000_000);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = format!("{} {h:02}:{m:02}:{s:02}", format_date(days));
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_postgres() {
        assert_eq!(format_numeric(12345, 2), "123.45");
        assert_eq!(format_numeric(-5, 2), "-0.05");
        assert_eq!(format_numeric(7, -2), "700");
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_723), "2024-01-01");
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(format_timestamp(1_500_000), "1970-01-01 00:00:01.5");
        assert_eq!(
            format_value(None, &Value::Uuid([0xab; 16])),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
