//! The server: open storage, start the engine, accept connections, shut down gracefully.
//!
//! ```text
//!   Server::start --> Storage::open --> Engine::new --> bind --> accept loop
//!                                                                  | spawn conn::serve per client
//!   Server::shutdown --> stop accepting --> idle connections get FATAL 57P01, busy ones finish
//!                        their statement (up to shutdown_timeout, then are dropped)
//!                    --> Raft stopped, engine dropped --> storage closed (once nothing holds it)
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::RandomPidSecretKeyGenerator;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use weft_consensus::{Cluster, ClusterConfig};
use weft_sql::{Engine, EngineConfig};
use weft_storage::{Storage, StorageOptions};

use crate::config::Config;
use crate::conn::{self, ConnContext, Registry, TrustAuth};

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("storage: {0}")]
    Storage(#[from] weft_storage::Error),
    #[error("sql engine: {0}")]
    Engine(#[from] weft_sql::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cluster: {0}")]
    Cluster(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl ServerError {
    /// True when another process holds the data directory.
    pub fn is_locked(&self) -> bool {
        matches!(
            self,
            ServerError::Storage(weft_storage::Error::Locked { .. })
        )
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    cluster: Option<Cluster>,
    engine: Arc<Engine>,
    storage: Storage,
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Server {
    /// Opens the data directory, starts the engine and listens on `config.listen`.
    pub async fn start(config: &Config) -> Result<Server, ServerError> {
        let dir = config.data_dir.clone();
        let node_id = config.node_id;
        let prewrite_wal = config.prewrite_wal;
        let storage = tokio::task::spawn_blocking(move || {
            // sync: an acknowledged commit must survive a crash of the machine.
            Storage::open(
                &dir,
                StorageOptions {
                    node_id,
                    sync: true,
                    prewrite_wal,
                },
            )
        })
        .await
        .map_err(io::Error::other)??;
        match Server::serve(config, storage.clone()).await {
            Ok(server) => Ok(server),
            Err(e) => {
                close_storage(storage).await?;
                Err(e)
            }
        }
    }

    async fn serve(config: &Config, storage: Storage) -> Result<Server, ServerError> {
        let node_id = config.node_id;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr()?;
        let cluster = start_cluster(config, &storage, addr).await?;
        let engine = Engine::new(storage.clone(), EngineConfig { node_id })?;
        if let Some(c) = &cluster {
            engine.set_cluster(crate::cluster::admin(c.clone(), config.fault_injection));
        }
        let registry = Registry::new();
        let (stop, stopped) = watch::channel(false);
        let ctx = Arc::new(ConnContext {
            engine: Arc::clone(&engine),
            registry: Arc::clone(&registry),
            auth: Arc::new(TrustAuth),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            shutdown: stopped.clone(),
            hub: crate::push::Hub::start(Arc::clone(&engine), stopped.clone()),
        });
        tokio::spawn(retention_loop(
            storage.clone(),
            config.change_retention,
            cluster.is_some(),
            stopped.clone(),
        ));
        let accept = tokio::spawn(accept_loop(listener, ctx, stopped, config.shutdown_timeout));
        let peer_addr = cluster.as_ref().map(|c| c.peer_addr().to_string());
        tracing::info!(%addr, ?peer_addr, data_dir = %config.data_dir.display(), node_id, "weft is ready");
        Ok(Server {
            addr,
            cluster,
            engine,
            storage,
            registry,
            stop,
            accept,
        })
    }

    /// The address the listener is bound to (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live connections by backend pid (cancel and notification delivery).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Tells the accept loop and every connection to stop, without waiting.
    pub fn signal_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting, lets in-flight statements finish (bounded by the shutdown timeout),
    /// then shuts storage down.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.signal_shutdown();
        if let Err(e) = self.accept.await {
            tracing::error!(error = %e, "accept loop failed");
        }
        if let Some(c) = self.cluster {
            c.shutdown().await;
        }
        drop(self.engine);
        close_storage(self.storage).await
    }

    /// The peer (Raft) address, when the node runs in a cluster.
    pub fn peer_addr(&self) -> Option<&str> {
        self.cluster.as_ref().map(Cluster::peer_addr)
    }
}

/// With `--peer-listen`: starts Raft over `storage` (bootstrap or join). Without it, refuses a
/// data directory that belongs to a cluster (commits would bypass Raft and diverge).
async fn start_cluster(
    config: &Config,
    storage: &Storage,
    pg_addr: SocketAddr,
) -> Result<Option<Cluster>, ServerError> {
    let Some(peer_listen) = config.peer_listen else {
        if storage
            .replica_meta(weft_consensus::store::APPLIED_META)?
            .is_some()
        {
            return Err(ServerError::Cluster(format!(
                "data directory {} belongs to a cluster: start it with --peer-listen",
                config.data_dir.display()
            )));
        }
        return Ok(None);
    };
    let cfg = ClusterConfig {
        node_id: u64::from(config.node_id),
        pg_addr: pg_addr.to_string(),
        peer_listen,
        join: config.join.clone(),
        raft_timeout: config.raft_timeout,
        snapshot_logs: config.raft_snapshot_logs,
        lww: weft_consensus::LwwConfig {
            max_clock_offset: config.max_clock_offset,
            log_retain: config.lww_log_retain,
        },
    };
    Cluster::start(storage.clone(), cfg)
        .await
        .map(Some)
        .map_err(|e| ServerError::Cluster(e.to_string()))
}

/// Purges change records older than `retention`, checking every `retention / 10` (between 50 ms
/// and one minute), until the server stops. A standalone node (`clustered == false`) also purges its lww log and tombstones.
async fn retention_loop(
    storage: Storage,
    retention: Duration,
    clustered: bool,
    mut stopped: watch::Receiver<bool>,
) {
    let every = (retention / 10).clamp(Duration::from_millis(50), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = conn::shutting_down(&mut stopped) => return,
            () = tokio::time::sleep(every) => {}
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let cutoff_ms =
            now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let cutoff = weft_storage::hlc_from_unix_millis(cutoff_ms);
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.purge_changes(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(purged = n, "change log retention"),
            Ok(Err(e)) => tracing::warn!(error = %e, "purging the change log failed"),
            Err(e) => tracing::warn!(error = %e, "the change log purge task failed"),
        }
        if !clustered {
            // No peer will ever pull this node's lww log or need its tombstones.
            if let Err(e) = storage.lww_log_purge(u64::MAX) {
                tracing::warn!(error = %e, "purging the lww log failed");
            }
            if let Err(e) = storage.lww_purge_tombstones(storage.now()).await {
                tracing::warn!(error = %e, "purging lww tombstones failed");
            }
        }
    }
}

/// How long shutdown waits for the last tasks and threads (Raft's among them) to let go of
/// storage, so that the database closes before the process exits (see `Storage::close`).
const STORAGE_CLOSE_GRACE: Duration = Duration::from_secs(10);

async fn close_storage(storage: Storage) -> Result<(), ServerError> {
    tokio::task::spawn_blocking(move || storage.close(STORAGE_CLOSE_GRACE))
        .await
        .map_err(io::Error::other)?;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ConnContext>,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = conn::shutting_down(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    conns.spawn(conn::serve(tcp, Arc::clone(&ctx)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => log_task_end(done),
        }
    }
    drop(listener);
    tracing::info!(
        connections = conns.len(),
        "shutting down: waiting for connections"
    );
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(connections = conns.len(), "shutdown timeout: closing busy connections");
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                break;
            }
            done = conns.join_next() => match done {
                Some(done) => log_task_end(done),
                None => break,
            },
        }
    }
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "connection task panicked");
        }
    }
}

/// A server on a private data directory and a free port, for tests.
pub struct TestServer {
    server: Option<Server>,
    data_dir: PathBuf,
    // Declared last: removed only after the server is gone.
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on a new temporary data directory, listening on 127.0.0.1:0.
    pub async fn start() -> Result<TestServer, ServerError> {
        let temp = tempfile::Builder::new().prefix("weft-test-").tempdir()?;
        let mut server = TestServer::start_in(temp.path()).await?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// Starts a server on `dir` (kept afterwards), e.g. to restart on the same data.
    pub async fn start_in(dir: impl AsRef<Path>) -> Result<TestServer, ServerError> {
        TestServer::start_with(dir, |_| {}).await
    }

    /// Starts a server on `dir` with the test defaults changed by `adjust`.
    pub async fn start_with(
        dir: impl AsRef<Path>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<TestServer, ServerError> {
        let mut config = Config {
            data_dir: dir.as_ref().to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_timeout: Duration::from_secs(5),
            // Hundreds of test servers start in a suite; tests that restart one after a kill
            // run the `weft` binary, which writes its WAL ahead.
            prewrite_wal: false,
            ..Config::default()
        };
        adjust(&mut config);
        let server = Server::start(&config).await?;
        Ok(TestServer {
            server: Some(server),
            data_dir: config.data_dir,
            _temp: None,
        })
    }

    fn server(&self) -> &Server {
        match &self.server {
            Some(s) => s,
            None => unreachable!("the server is only taken by shutdown, which consumes self"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    /// A libpq / tokio-postgres connection string for this server.
    pub fn conn_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.addr().port()
        )
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.server().registry()
    }

    /// Shuts the server down and waits until storage is closed.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        match self.server.take() {
            Some(server) => server.shutdown().await,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.signal_shutdown();
        }
    }
}
