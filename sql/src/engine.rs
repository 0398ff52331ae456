//! The engine: shared by every session of a node; owns the storage handle and node settings.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use weft_storage::Storage;

use crate::advisory::AdvisoryLocks;
use crate::cluster::ClusterAdmin;
use crate::error::Result;
use crate::session::Session;

/// Node-wide settings the SQL layer needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub node_id: u16,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { node_id: 1 }
    }
}

pub struct Engine {
    storage: Storage,
    config: EngineConfig,
    cluster: OnceLock<Arc<dyn ClusterAdmin>>,
    /// The node's advisory locks (`pg_advisory_lock`), shared by its sessions.
    advisory: Arc<AdvisoryLocks>,
}

impl Engine {
    pub fn new(storage: Storage, config: EngineConfig) -> Result<Arc<Engine>> {
        Ok(Arc::new(Engine {
            storage,
            config,
            cluster: OnceLock::new(),
            advisory: Arc::default(),
        }))
    }

    /// Makes `weft_nodes` and the cluster functions of sessions opened from now on use `c`.
    pub fn set_cluster(&self, c: Arc<dyn ClusterAdmin>) {
        let _ = self.cluster.set(c);
    }

    pub fn cluster(&self) -> Option<Arc<dyn ClusterAdmin>> {
        self.cluster.get().cloned()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub(crate) fn advisory(&self) -> &Arc<AdvisoryLocks> {
        &self.advisory
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A new session for a connection, given the startup parameters the client sent.
    pub fn new_session(self: &Arc<Self>, startup_params: &HashMap<String, String>) -> Session {
        Session::new(Arc::clone(self), startup_params)
    }
}
