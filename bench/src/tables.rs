//! Which tables a target's workloads use. By default every target uses `kv`, `ins` and `big`;
//! a target given `--table-with NAME=OPTIONS` gets tables of its own (`kv_NAME`, `ins_NAME`,
//! `big_NAME`) created `WITH (OPTIONS)`, so that targets on the same servers (an lww and a raft
//! table on one cluster) do not drop each other's tables and can be interleaved.
//!
//! ```text
//!   --table-with lww="consistency = 'lww'"   ─▶  CREATE TABLE ins_lww (id bigint PRIMARY KEY,
//!                                                  v bigint) WITH (consistency = 'lww')
//! ```

/// The table names of one target and how they are created.
#[derive(Clone, Debug)]
pub struct Tables {
    pub kv: String,
    pub ins: String,
    pub big: String,
    /// What goes inside `WITH (...)` of every CREATE TABLE, if anything.
    pub with: Option<String>,
}

impl Tables {
    /// `kv`, `ins`, `big`, created without options (as before `--table-with` existed).
    pub fn plain() -> Self {
        Tables {
            kv: "kv".into(),
            ins: "ins".into(),
            big: "big".into(),
            with: None,
        }
    }

    /// Tables named after `target`, created `WITH (options)`.
    pub fn with_options(target: &str, options: &str) -> Self {
        Tables {
            kv: format!("kv_{target}"),
            ins: format!("ins_{target}"),
            big: format!("big_{target}"),
            with: Some(options.to_string()),
        }
    }

    /// `CREATE TABLE` for one of the tables: a primary key `key` and a bigint `v`. `v` is
    /// NOT NULL only on plain tables: an lww table refuses NOT NULL on non-key columns, and
    /// every target with options gets the same schema so that they compare alike.
    pub fn create_sql(&self, table: &str, key: &str, key_type: &str) -> String {
        match &self.with {
            None => {
                format!("CREATE TABLE {table} ({key} {key_type} PRIMARY KEY, v bigint NOT NULL)")
            }
            Some(w) => {
                format!("CREATE TABLE {table} ({key} {key_type} PRIMARY KEY, v bigint) WITH ({w})")
            }
        }
    }
}

/// `NAME=OPTIONS` of `--table-with`; NAME becomes part of table names, so it must be an
/// identifier.
pub fn parse_table_with(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, options)) if !options.trim().is_empty() => {
            let ok = name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
            if !ok {
                return Err(format!(
                    "target name {name:?} must be lower-case letters, digits and _ (it names tables)"
                ));
            }
            Ok((name.to_string(), options.to_string()))
        }
        _ => Err(format!(
            "expected NAME=OPTIONS, e.g. lww=\"consistency = 'lww'\", got {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tables_keep_their_schema() {
        let t = Tables::plain();
        assert_eq!(
            t.create_sql(&t.ins, "id", "bigint"),
            "CREATE TABLE ins (id bigint PRIMARY KEY, v bigint NOT NULL)"
        );
    }

    #[test]
    fn options_name_and_shape_the_tables() {
        let (name, opts) =
            parse_table_with("lww=consistency = 'lww'").expect("a valid NAME=OPTIONS");
        let t = Tables::with_options(&name, &opts);
        assert_eq!(t.kv, "kv_lww");
        assert_eq!(
            t.create_sql(&t.kv, "k", "int"),
            "CREATE TABLE kv_lww (k int PRIMARY KEY, v bigint) WITH (consistency = 'lww')"
        );
        assert!(parse_table_with("Bad-Name=x").is_err());
        assert!(parse_table_with("lww=").is_err());
    }
}
