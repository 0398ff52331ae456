//! Session settings: `SET`, `SHOW`, `RESET` for the parameters drivers send, with PostgreSQL's
//! defaults, and which of them are reported to the client in ParameterStatus when they change.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

pub(crate) const SERVER_VERSION: &str = concat!("15.0 (Weft ", env!("CARGO_PKG_VERSION"), ")");

/// (name as PostgreSQL spells it, default, reported to the client)
const KNOWN: &[(&str, &str, bool)] = &[
    ("application_name", "", true),
    ("bytea_output", "hex", false),
    ("check_function_bodies", "on", false),
    ("client_encoding", "UTF8", true),
    ("client_min_messages", "notice", false),
    ("DateStyle", "ISO, MDY", true),
    ("default_table_access_method", "heap", false),
    ("default_tablespace", "", false),
    ("default_transaction_isolation", "repeatable read", false),
    ("default_transaction_read_only", "off", true),
    ("extra_float_digits", "1", false),
    ("idle_in_transaction_session_timeout", "0", false),
    ("in_hot_standby", "off", true),
    ("integer_datetimes", "on", true),
    ("IntervalStyle", "postgres", true),
    ("is_superuser", "on", true),
    ("jit", "off", false),
    ("lc_messages", "C", false),
    ("lc_monetary", "C", false),
    ("lc_numeric", "C", false),
    ("lc_time", "C", false),
    ("lock_timeout", "0", false),
    ("max_connections", "10000", false),
    ("max_identifier_length", "63", false),
    ("row_security", "on", false),
    ("search_path", "\"$user\", public", false),
    ("server_encoding", "UTF8", true),
    ("server_version", SERVER_VERSION, true),
    ("server_version_num", "150000", false),
    ("session_authorization", "postgres", true),
    ("standard_conforming_strings", "on", true),
    ("statement_timeout", "0", false),
    ("synchronous_commit", "on", false),
    ("TimeZone", "UTC", true),
    ("transaction_isolation", "repeatable read", false),
    ("transaction_read_only", "off", false),
    ("weft.point_fast_path", "on", false),
    ("weft.read_consistency", "linearizable", false),
    ("xmloption", "content", false),
];

const READ_ONLY: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "integer_datetimes",
    "max_identifier_length",
    "in_hot_standby",
];

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    values: BTreeMap<String, String>,
    changed: Vec<(String, String)>,
}

fn canonical(name: &str) -> Option<(&'static str, &'static str, bool)> {
    KNOWN
        .iter()
        .copied()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
}

impl Settings {
    pub fn new(user: &str) -> Settings {
        let mut values: BTreeMap<String, String> = KNOWN
            .iter()
            .map(|(n, d, _)| (n.to_ascii_lowercase(), d.to_string()))
            .collect();
        values.insert("session_authorization".into(), user.to_string());
        Settings {
            values,
            changed: Vec::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Sets a parameter; custom names with a dot (`myapp.x`) are accepted as PostgreSQL does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let key = name.to_ascii_lowercase();
        let value = normalize(&key, value)?;
        match canonical(&key) {
            Some((n, _, _)) if READ_ONLY.contains(&n) => {
                return Err(Error::ObjectNotInPrerequisiteState {
                    message: format!("parameter \"{key}\" cannot be changed"),
                })
            }
            Some((n, _, reported)) => {
                if reported {
                    self.changed.push((n.to_string(), value.clone()));
                }
            }
            None if key.contains('.') => {}
            None => {
                return Err(Error::UnrecognizedParameter {
                    message: format!("unrecognized configuration parameter \"{name}\""),
                })
            }
        }
        self.values.insert(key, value);
        Ok(())
    }

    pub fn reset(&mut self, name: &str) -> Result<()> {
        match canonical(name) {
            Some((n, d, _)) => self.set(n, d),
            None if name.contains('.') => {
                self.values.remove(&name.to_ascii_lowercase());
                Ok(())
            }
            None => Err(Error::UnrecognizedParameter {
                message: format!("unrecognized configuration parameter \"{name}\""),
            }),
        }
    }

    pub fn reset_all(&mut self) {
        for (n, d, _) in KNOWN {
            if !READ_ONLY.contains(n) && *n != "session_authorization" {
                let _ = self.set(n, d);
            }
        }
    }

    /// `SHOW name`; unknown names are 42704 as in PostgreSQL.
    pub fn show(&self, name: &str) -> Result<String> {
        self.get(name)
            .map(str::to_string)
            .ok_or_else(|| Error::UnrecognizedParameter {
                message: format!("unrecognized configuration parameter \"{name}\""),
            })
    }

    pub fn all(&self) -> Vec<(String, String)> {
        KNOWN
            .iter()
            .map(|(n, _, _)| (n.to_string(), self.get(n).unwrap_or_default().to_string()))
            .collect()
    }

    /// Parameters sent in ParameterStatus at startup.
    pub fn reported(&self) -> Vec<(String, String)> {
        KNOWN
            .iter()
            .filter(|(_, _, r)| *r)
            .map(|(n, _, _)| (n.to_string(), self.get(n).unwrap_or_default().to_string()))
            .collect()
    }

    pub fn take_changed(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.changed)
    }

    /// Whether prepared primary-key point statements may skip DataFusion (`point.rs`).
    pub fn point_fast_path(&self) -> bool {
        self.get("weft.point_fast_path") != Some("off")
    }

    /// statement_timeout in milliseconds (0 = none).
    pub fn statement_timeout_ms(&self) -> u64 {
        self.get("statement_timeout")
            .and_then(parse_duration_ms)
            .unwrap_or(0)
    }
}

fn normalize(key: &str, value: &str) -> Result<String> {
    let value = value.trim();
    Ok(match key {
        "timezone" => match value.to_ascii_lowercase().as_str() {
            "utc" | "gmt" | "z" | "zulu" | "etc/utc" | "universal" | "default" | "0" | "+00" | "+00:00" => "UTC".into(),
            _ => {
                return Err(Error::InvalidParameterValue {
                    message: format!("invalid value for parameter \"TimeZone\": \"{value}\" (Weft supports only UTC)"),
                })
            }
        },
        "client_encoding" => match value.to_ascii_uppercase().replace(['-', '_'], "").as_str() {
            "UTF8" | "UNICODE" => "UTF8".into(),
            _ => {
                return Err(Error::InvalidParameterValue {
                    message: format!("invalid value for parameter \"client_encoding\": \"{value}\" (only UTF8 is supported)"),
                })
            }
        },
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => {
            match parse_duration_ms(value) {
                Some(ms) => ms.to_string(),
                None => {
                    return Err(Error::InvalidParameterValue {
                        message: format!("invalid value for parameter \"{key}\": \"{value}\""),
                    })
                }
            }
        }
        "extra_float_digits" => match value.parse::<i32>() {
            Ok(v) if (-15..=3).contains(&v) => v.to_string(),
            _ => {
                return Err(Error::InvalidParameterValue {
                    message: format!("invalid value for parameter \"extra_float_digits\": \"{value}\""),
                })
            }
        },
        "weft.point_fast_path" => match crate::convert::parse_bool(value) {
            Some(true) => "on".into(),
            Some(false) => "off".into(),
            None => {
                return Err(Error::InvalidParameterValue {
                    message: "parameter \"weft.point_fast_path\" requires a Boolean value".into(),
                })
            }
        },
        "default_transaction_isolation" | "transaction_isolation" => {
            match value.to_ascii_lowercase().as_str() {
                v @ ("serializable" | "repeatable read" | "read committed" | "read uncommitted") => {
                    v.to_string()
                }
                _ => {
                    return Err(Error::InvalidParameterValue {
                        message: format!(
                            "invalid value for parameter \"{key}\": \"{value}\" (available \
                             values: serializable, repeatable read, read committed, read \
                             uncommitted)"
                        ),
                    })
                }
            }
        }
        "weft.read_consistency" => match value.to_ascii_lowercase().as_str() {
            v @ ("linearizable" | "local") => v.to_string(),
            _ => {
                return Err(Error::InvalidParameterValue {
                    message: format!("invalid value for parameter \"weft.read_consistency\": \"{value}\" (linearizable or local)"),
                })
            }
        },
        _ => value.to_string(),
    })
}

/// The settings in a startup packet's `options` (libpq's `PGOPTIONS`, JDBC's `options`), as
/// PostgreSQL reads them: words split at whitespace, a backslash keeping the next character
/// (`read\ committed`), and each `-c name=value`, `-cname=value` or `--name=value` a setting.
/// Other switches are skipped.
pub(crate) fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("--").or_else(|| w.strip_prefix("-c")) {
            Some(rest.to_string())
        } else {
            None
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            // PostgreSQL accepts dashes for underscores in these names.
            out.push((name.replace('-', "_"), value.to_string()));
        }
    }
    out
}

/// PostgreSQL duration settings: a bare number is milliseconds; units ms, s, min, h, d.
fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_options_are_read_as_postgresql_reads_them() {
        assert_eq!(
            startup_options(
                "-c default_transaction_isolation=read\\ committed  --search-path=app -cstatement_timeout=5s -X"
            ),
            vec![
                (
                    "default_transaction_isolation".to_string(),
                    "read committed".to_string()
                ),
                ("search_path".to_string(), "app".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
            ]
        );
        assert!(startup_options("").is_empty());
        assert!(startup_options("-c").is_empty());
    }

    #[test]
    fn set_show_reset() {
        let mut s = Settings::new("postgres");
        assert!(s.set("application_name", "psql").is_ok());
        assert_eq!(s.show("APPLICATION_NAME").ok().as_deref(), Some("psql"));
        assert_eq!(
            s.take_changed(),
            vec![("application_name".to_string(), "psql".to_string())]
        );
        assert_eq!(s.set("no_such", "1").unwrap_err().sqlstate(), "42704");
        assert!(s.set("myapp.flag", "1").is_ok());
        assert!(s.set("statement_timeout", "2s").is_ok());
        assert_eq!(s.statement_timeout_ms(), 2000);
        assert!(s.reset("statement_timeout").is_ok());
        assert_eq!(s.statement_timeout_ms(), 0);
        assert_eq!(
            s.set("server_version", "1").unwrap_err().sqlstate(),
            "55000"
        );
    }
}
