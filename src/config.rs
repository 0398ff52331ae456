//! Server configuration: command-line flags layered over an optional TOML file layered over
//! defaults.
//!
//! ```text
//!   defaults  <-  --config FILE (TOML, same keys as the flags)  <-  command-line flags
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// Everything the `weft` server needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where RocksDB keeps its files.
    pub data_dir: PathBuf,
    /// Address of the PostgreSQL wire listener.
    pub listen: SocketAddr,
    /// This node's id; also the high 16 bits of hidden row ids.
    pub node_id: u16,
    /// Address for peer (Raft) traffic; given, the node runs Raft (a cluster of one at first).
    pub peer_listen: Option<SocketAddr>,
    /// Members to join when the data directory is not part of a cluster yet.
    pub join: Vec<String>,
    /// Lets SQL partition and delay this node's peer traffic (`weft_fault`), for tests.
    pub fault_injection: bool,
    /// Raft builds a snapshot (and purges the log before it) every this many entries.
    pub raft_snapshot_logs: u64,
    /// How long the durable change log keeps records.
    pub change_retention: Duration,
    /// How long a statement waits for Raft before failing.
    pub raft_timeout: Duration,
    /// Largest clock offset to a peer that is tolerated.
    pub max_clock_offset: Duration,
    /// Most LWW origin log entries kept for a peer that has not pulled them (it then gets a
    /// full sync).
    pub lww_log_retain: u64,
    /// How long shutdown waits for in-flight statements before closing their connections.
    pub shutdown_timeout: Duration,
    /// Write the first WAL file ahead at start (`StorageOptions::prewrite_wal`); not a flag:
    /// only in-process test servers turn it off.
    pub prewrite_wal: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./weft-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            node_id: 1,
            peer_listen: None,
            join: Vec::new(),
            fault_injection: false,
            raft_snapshot_logs: 10_000,
            change_retention: Duration::from_secs(24 * 3600),
            raft_timeout: Duration::from_secs(10),
            max_clock_offset: Duration::from_millis(500),
            lww_log_retain: 1_000_000,
            shutdown_timeout: Duration::from_secs(10),
            prewrite_wal: true,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Value { key: &'static str, message: String },
}

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "PostgreSQL-wire-compatible database with built-in push"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a server (the default when no subcommand is given).
    Start(StartArgs),
}

/// Flags of `weft start`. Every flag is optional so that a config file value is only overridden
/// by a flag the user actually gave.
#[derive(Debug, Default, Clone, Args)]
pub struct StartArgs {
    /// TOML file with the same keys as these flags; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./weft-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL wire listen address [default: 127.0.0.1:5433]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Node id, 1..=65535 [default: 1]
    #[arg(long)]
    pub node_id: Option<u16>,
    /// Peer listen address (cluster mode)
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<SocketAddr>,
    /// Members' peer addresses to join (cluster mode); comma-separated or repeated. Ignored
    /// once the data directory belongs to a cluster.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Allow `SELECT weft_fault(...)` to partition or delay this node (tests only)
    #[arg(long)]
    pub fault_injection: bool,
    /// Raft snapshot interval in log entries [default: 10000]
    #[arg(long, value_name = "N")]
    pub raft_snapshot_logs: Option<u64>,
    /// How long the change log is kept, e.g. 24h [default: 24h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub change_retention: Option<Duration>,
    /// Raft operation timeout [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub raft_timeout: Option<Duration>,
    /// Largest tolerated clock offset to a peer [default: 500ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_clock_offset: Option<Duration>,
    /// LWW log entries kept for a lagging peer before it needs a full sync [default: 1000000]
    #[arg(long, value_name = "N")]
    pub lww_log_retain: Option<u64>,
    /// Grace period for in-flight statements at shutdown [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// The config file: the flags' keys, kebab-case (snake_case accepted too).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    #[serde(alias = "data_dir")]
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    #[serde(alias = "node_id")]
    node_id: Option<u16>,
    #[serde(alias = "peer_listen")]
    peer_listen: Option<String>,
    #[serde(default)]
    join: Vec<String>,
    #[serde(alias = "fault_injection")]
    fault_injection: Option<bool>,
    #[serde(alias = "raft_snapshot_logs")]
    raft_snapshot_logs: Option<u64>,
    #[serde(alias = "change_retention")]
    change_retention: Option<String>,
    #[serde(alias = "raft_timeout")]
    raft_timeout: Option<String>,
    #[serde(alias = "max_clock_offset")]
    max_clock_offset: Option<String>,
    #[serde(alias = "lww_log_retain")]
    lww_log_retain: Option<u64>,
    #[serde(alias = "shutdown_timeout")]
    shutdown_timeout: Option<String>,
}

impl StartArgs {
    /// Resolves defaults, then the config file (if any), then the flags.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            apply_file(&mut config, &text, path)?;
        }
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.node_id {
            config.node_id = v;
        }
        if let Some(v) = self.peer_listen {
            config.peer_listen = Some(v);
        }
        if !self.join.is_empty() {
            config.join = self.join.clone();
        }
        if self.fault_injection {
            config.fault_injection = true;
        }
        if let Some(v) = self.raft_snapshot_logs {
            config.raft_snapshot_logs = v.max(1);
        }
        if let Some(v) = self.change_retention {
            config.change_retention = v;
        }
        if let Some(v) = self.raft_timeout {
            config.raft_timeout = v;
        }
        if let Some(v) = self.max_clock_offset {
            config.max_clock_offset = v;
        }
        if let Some(v) = self.lww_log_retain {
            config.lww_log_retain = v;
        }
        if let Some(v) = self.shutdown_timeout {
            config.shutdown_timeout = v;
        }
        if config.node_id == 0 {
            return Err(ConfigError::Value {
                key: "node-id",
                message: "must be between 1 and 65535".into(),
            });
        }
        Ok(config)
    }
}

fn apply_file(config: &mut Config, text: &str, path: &Path) -> Result<(), ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(v) = file.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = file.listen {
        config.listen = parse_addr("listen", &v)?;
    }
    if let Some(v) = file.node_id {
        config.node_id = v;
    }
    if let Some(v) = file.peer_listen {
        config.peer_listen = Some(parse_addr("peer-listen", &v)?);
    }
    if !file.join.is_empty() {
        config.join = file.join;
    }
    if let Some(v) = file.fault_injection {
        config.fault_injection = v;
    }
    if let Some(v) = file.raft_snapshot_logs {
        config.raft_snapshot_logs = v.max(1);
    }
    if let Some(v) = file.lww_log_retain {
        config.lww_log_retain = v;
    }
    let durations = [
        (
            "change-retention",
            file.change_retention,
            &mut config.change_retention,
        ),
        ("raft-timeout", file.raft_timeout, &mut config.raft_timeout),
        (
            "max-clock-offset",
            file.max_clock_offset,
            &mut config.max_clock_offset,
        ),
        (
            "shutdown-timeout",
            file.shutdown_timeout,
            &mut config.shutdown_timeout,
        ),
    ];
    for (key, value, slot) in durations {
        if let Some(v) = value {
            *slot = parse_duration(&v).map_err(|message| ConfigError::Value { key, message })?;
        }
    }
    Ok(())
}

fn parse_addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Value {
            key,
            message: format!("{s:?}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> StartArgs {
        let mut full = vec!["weft"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).expect("valid flags").command {
            Some(Command::Start(a)) => a,
            None => StartArgs::default(),
        }
    }

    #[test]
    fn no_subcommand_means_defaults() {
        let config = args(&[]).resolve().expect("resolves");
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:5433");
        assert_eq!(config.change_retention, Duration::from_secs(86400));
    }

    #[test]
    fn flags_parse() {
        let config = args(&[
            "start",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "0.0.0.0:6000",
            "--node-id",
            "7",
            "--change-retention",
            "1h 30m",
            "--raft-timeout",
            "2s",
            "--max-clock-offset",
            "250ms",
            "--join",
            "a:1",
            "--join",
            "b:2",
        ])
        .resolve()
        .expect("resolves");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.listen.port(), 6000);
        assert_eq!(config.node_id, 7);
        assert_eq!(config.change_retention, Duration::from_secs(5400));
        assert_eq!(config.raft_timeout, Duration::from_secs(2));
        assert_eq!(config.max_clock_offset, Duration::from_millis(250));
        assert_eq!(config.join, vec!["a:1".to_string(), "b:2".to_string()]);
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weft.toml");
        std::fs::write(
            &path,
            "data-dir = \"/from/file\"\nlisten = \"127.0.0.1:7000\"\nnode_id = 3\nraft-timeout = \"3s\"\n",
        )
        .expect("write");
        let path_str = path.to_str().expect("utf8 path");
        let config = args(&["start", "--config", path_str, "--node-id", "4"])
            .resolve()
            .expect("resolves");
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.node_id, 4);
        assert_eq!(config.raft_timeout, Duration::from_secs(3));
    }

    #[test]
    fn cluster_flags_and_file_keys() {
        let config = args(&[
            "start",
            "--peer-listen",
            "127.0.0.1:6433",
            "--join",
            "a:1,b:2",
            "--fault-injection",
            "--raft-snapshot-logs",
            "20",
        ])
        .resolve()
        .expect("resolves");
        assert_eq!(config.peer_listen.map(|a| a.port()), Some(6433));
        assert_eq!(config.join, vec!["a:1".to_string(), "b:2".to_string()]);
        assert!(config.fault_injection);
        assert_eq!(config.raft_snapshot_logs, 20);

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weft.toml");
        std::fs::write(
            &path,
            "fault-injection = true
raft-snapshot-logs = 0
",
        )
        .expect("write");
        let path_str = path.to_str().expect("utf8 path");
        let config = args(&["start", "--config", path_str])
            .resolve()
            .expect("resolves");
        assert!(config.fault_injection);
        assert_eq!(
            config.raft_snapshot_logs, 1,
            "at least one entry per snapshot"
        );
    }

    #[test]
    fn bad_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, "no-such-key = 1\n").expect("write");
        let path_str = path.to_str().expect("utf8 path");
        let err = args(&["start", "--config", path_str])
            .resolve()
            .expect_err("rejected");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        std::fs::write(&path, "raft-timeout = \"soon\"\n").expect("write");
        let err = args(&["start", "--config", path_str])
            .resolve()
            .expect_err("rejected");
        assert!(
            matches!(
                err,
                ConfigError::Value {
                    key: "raft-timeout",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn node_id_zero_rejected() {
        assert!(args(&["start", "--node-id", "0"]).resolve().is_err());
    }
}
