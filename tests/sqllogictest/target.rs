//! Where the records run: an existing PostgreSQL-wire server named by `WEFT_SLT_TARGET` (used to
//! check the runner and the expected results against real PostgreSQL), or else a Weft server
//! started in-process. Either way each test file gets an empty database of its own.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long starting a server, connecting, or creating a database may take on a loaded machine.
pub const SETUP_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub enum Target {
    /// `WEFT_SLT_TARGET=postgres://…`: a fresh `CREATE DATABASE` per file on that server.
    Postgres(Box<Config>),
    /// A fresh in-process Weft server per file.
    Weft,
}

impl Target {
    pub fn from_env() -> Result<Target, String> {
        match std::env::var("WEFT_SLT_TARGET") {
            Ok(url) if !url.is_empty() => {
                let mut config: Config = url.parse().map_err(|e| {
                    format!("WEFT_SLT_TARGET={url:?} is not a connection string: {e}")
                })?;
                config.connect_timeout(SETUP_DEADLINE);
                Ok(Target::Postgres(Box::new(config)))
            }
            _ => Ok(Target::Weft),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Postgres(config) => format!(
                "PostgreSQL-wire server {:?}:{:?} (WEFT_SLT_TARGET)",
                config.get_hosts(),
                config.get_ports()
            ),
            Target::Weft => "in-process Weft TestServer".into(),
        }
    }
}

/// An empty database for one test file; [`FreshDb::release`] removes it.
pub struct FreshDb {
    /// How the file's connections reach the database.
    pub config: Config,
    owner: Owner,
}

enum Owner {
    Postgres { admin: Client, name: String },
    Weft(weft::server::TestServer),
}

impl FreshDb {
    pub async fn create(target: &Target, label: &str) -> Result<FreshDb, BoxError> {
        let setup = async {
            match target {
                Target::Postgres(admin_config) => {
                    let (admin, connection) = admin_config.connect(NoTls).await?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    let name = unique_db_name(label);
                    admin
                        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                        .await?;
                    let mut config = Config::clone(admin_config);
                    config.dbname(&name);
                    Ok::<_, BoxError>(FreshDb {
                        config,
                        owner: Owner::Postgres { admin, name },
                    })
                }
                Target::Weft => {
                    let (server, conn_string) = start_weft().await?;
                    let mut config: Config = conn_string.parse()?;
                    config.connect_timeout(SETUP_DEADLINE);
                    Ok(FreshDb {
                        config,
                        owner: Owner::Weft(server),
                    })
                }
            }
        };
        tokio::time::timeout(SETUP_DEADLINE, setup)
            .await
            .map_err(|_| {
                format!("setting up a database on the target took over {SETUP_DEADLINE:?}")
            })?
    }

    pub async fn release(self) {
        match self.owner {
            Owner::Postgres { admin, name } => {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let problem =
                    match tokio::time::timeout(SETUP_DEADLINE, admin.batch_execute(&sql)).await {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("timed out after {SETUP_DEADLINE:?}"),
                    };
                eprintln!("warning: could not drop test database {name}: {problem}");
            }
            Owner::Weft(server) => {
                // Waits until storage is closed, so the data directory goes away cleanly.
                let problem = match tokio::time::timeout(SETUP_DEADLINE, server.shutdown()).await {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => format!("{e:?}"),
                    Err(_) => format!("timed out after {SETUP_DEADLINE:?}"),
                };
                eprintln!("warning: the Weft TestServer did not shut down cleanly: {problem}");
            }
        }
    }
}

/// A database name no other test of this or a concurrent run uses.
fn unique_db_name(label: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let slug: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    // PostgreSQL truncates identifiers at 63 bytes; keep the unique part at the front.
    let mut name = format!("slt_{}_{n}_{slug}", std::process::id());
    name.truncate(63);
    name
}

/// The only Weft-specific code: starts an in-process server on 127.0.0.1:0 with a temporary
/// data directory and says how to reach it (user `postgres`, database `postgres`, no password).
async fn start_weft() -> Result<(weft::server::TestServer, String), BoxError> {
    let server = weft::server::TestServer::start()
        .await
        .map_err(|e| format!("starting the Weft TestServer failed: {e:?}"))?;
    let addr: std::net::SocketAddr = server.addr();
    let conn_string = format!(
        "host={} port={} user=postgres dbname=postgres",
        addr.ip(),
        addr.port()
    );
    Ok((server, conn_string))
}
