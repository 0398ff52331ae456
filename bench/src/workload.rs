//! The four workloads: their SQL, the parameters each operation binds, and the check each
//! result must pass (a wrong answer counts as an error, not as a fast operation).

use std::fmt;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::tables::Tables;

/// One workload, run by every client with the same prepared statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `SELECT v FROM kv WHERE k = $1`, uniform random keys.
    PointSelect,
    /// `UPDATE kv SET v = v + 1 WHERE k = $1`, autocommit (a durable commit each).
    Update,
    /// `INSERT INTO ins (id, v) VALUES ($1, $2)`, ids unique per client.
    Insert,
    /// `SELECT count(*), sum(v) FROM big`, a full scan and aggregate.
    ScanAgg,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::PointSelect => "point-select",
            Workload::Update => "update",
            Workload::Insert => "insert",
            Workload::ScanAgg => "scan-agg",
        }
    }

    /// The statement, against the target's tables.
    pub fn sql(self, t: &Tables) -> String {
        match self {
            Workload::PointSelect => format!("SELECT v FROM {} WHERE k = $1", t.kv),
            Workload::Update => format!("UPDATE {} SET v = v + 1 WHERE k = $1", t.kv),
            Workload::Insert => format!("INSERT INTO {} (id, v) VALUES ($1, $2)", t.ins),
            Workload::ScanAgg => format!("SELECT count(*), sum(v) FROM {}", t.big),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one operation failed.
#[derive(Debug)]
pub enum OpError {
    /// The server (or the connection) reported an error.
    Db(tokio_postgres::Error),
    /// The statement succeeded but its result is not what the loaded data implies.
    WrongResult(String),
}

impl OpError {
    /// A short key under which equal failures are counted: SQLSTATE and message for server
    /// errors, the error chain otherwise.
    pub fn key(&self) -> String {
        match self {
            OpError::Db(e) => describe(e),
            OpError::WrongResult(m) => format!("wrong result: {m}"),
        }
    }
}

impl From<tokio_postgres::Error> for OpError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpError::Db(e)
    }
}

/// A server error as severity, SQLSTATE and message; any other error with its causes.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => error_chain(e),
    }
}

/// An error with its sources, joined by ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// An integer bound as whichever integer type the server inferred for the parameter, so a
/// server that types `k = $1` as int8 rather than int4 is measured rather than refused.
#[derive(Debug)]
pub struct Int(pub i64);

impl ToSql for Int {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *ty {
            Type::INT2 => i16::try_from(self.0)?.to_sql(ty, out),
            Type::INT4 => i32::try_from(self.0)?.to_sql(ty, out),
            _ => self.0.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8)
    }

    to_sql_checked!();
}

/// SplitMix64: enough randomness for key choice without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `1..=n` (the modulo bias is negligible for n far below 2^64).
    pub fn key(&mut self, n: u64) -> i64 {
        (self.next_u64() % n.max(1) + 1) as i64
    }
}

/// What one client needs to issue operations of a workload.
pub struct Op {
    pub workload: Workload,
    pub stmt: Statement,
    /// Rows in `kv`.
    pub rows: u64,
    /// Rows in `big`.
    pub big_rows: u64,
    /// Base of this client's insert ids: ids never collide across clients.
    pub id_base: i64,
    pub seq: i64,
    pub rng: Rng,
}

impl Op {
    /// Runs one operation and checks its result.
    pub async fn execute(&mut self, client: &Client) -> Result<(), OpError> {
        match self.workload {
            Workload::PointSelect => {
                let k = Int(self.rng.key(self.rows));
                let rows = client.query(&self.stmt, &[&k]).await?;
                if rows.len() != 1 {
                    return Err(OpError::WrongResult(format!(
                        "point select of k = {} returned {} rows",
                        k.0,
                        rows.len()
                    )));
                }
                rows[0]
                    .try_get::<_, i64>(0)
                    .map_err(|e| OpError::WrongResult(format!("v: {}", error_chain(&e))))?;
            }
            Workload::Update => {
                let k = Int(self.rng.key(self.rows));
                let n = client.execute(&self.stmt, &[&k]).await?;
                if n != 1 {
                    return Err(OpError::WrongResult(format!(
                        "update of k = {} changed {n} rows",
                        k.0
                    )));
                }
            }
            Workload::Insert => {
                self.seq += 1;
                let id = Int(self.id_base + self.seq);
                let v = Int(self.seq);
                let n = client.execute(&self.stmt, &[&id, &v]).await?;
                if n != 1 {
                    return Err(OpError::WrongResult(format!("insert reported {n} rows")));
                }
            }
            Workload::ScanAgg => {
                let rows = client.query(&self.stmt, &[]).await?;
                let count = match rows.first() {
                    Some(row) => row
                        .try_get::<_, i64>(0)
                        .map_err(|e| OpError::WrongResult(format!("count: {}", error_chain(&e))))?,
                    None => return Err(OpError::WrongResult("no row".into())),
                };
                if count as u64 != self.big_rows {
                    return Err(OpError::WrongResult(format!(
                        "count(*) = {count}, expected {}",
                        self.big_rows
                    )));
                }
            }
        }
        Ok(())
    }
}
