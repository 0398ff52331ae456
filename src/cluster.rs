//! Cluster wiring: starts the Raft node when `--peer-listen` is given and exposes it to SQL
//! (`weft_nodes`, `weft_remove_node`, the `weft_fault` test hook).

use std::sync::Arc;
use std::time::Duration;

use weft_consensus::{Cluster, NodeRow};
use weft_sql::cluster::BoxFuture;
use weft_sql::{ClusterAdmin, NodeInfo};

/// `ClusterAdmin` over a running `Cluster`.
pub struct Admin {
    pub cluster: Cluster,
    /// `--fault-injection`: tests may partition and delay this node through SQL.
    pub faults_enabled: bool,
}

fn info(r: NodeRow) -> NodeInfo {
    NodeInfo {
        node_id: r.node_id,
        pg_addr: r.pg_addr,
        peer_addr: Some(r.peer_addr),
        role: r.role.to_string(),
        voter: r.voter,
        last_applied: r.last_applied,
        status: r.status,
    }
}

impl ClusterAdmin for Admin {
    fn nodes(&self) -> BoxFuture<Vec<NodeInfo>> {
        let c = self.cluster.clone();
        Box::pin(async move { c.nodes().await.into_iter().map(info).collect() })
    }

    fn remove_node(&self, id: u64) -> BoxFuture<Result<(), String>> {
        let c = self.cluster.clone();
        Box::pin(async move { c.remove_node(id).await })
    }

    fn fault(&self, action: &str, arg: &str) -> Result<String, String> {
        if !self.faults_enabled {
            return Err("fault injection is off (start the node with --fault-injection)".into());
        }
        let faults = self.cluster.faults();
        match action {
            "partition" => {
                let mut ids = Vec::new();
                for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    ids.push(
                        part.parse::<u64>()
                            .map_err(|_| format!("not a node id: \"{part}\""))?,
                    );
                }
                faults.partition(ids);
                Ok(format!("partitioned from {:?}", faults.blocked()))
            }
            "heal" => {
                faults.heal();
                Ok("healed".into())
            }
            "clock_skew" => {
                // `'2s'` ahead, `'-2s'` behind, `'0'` back to the real clock.
                let (neg, d) = match arg.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, arg),
                };
                let ms = if d.trim() == "0" {
                    0
                } else {
                    humantime::parse_duration(d)
                        .map_err(|e| e.to_string())?
                        .as_millis() as i64
                };
                self.cluster.set_clock_skew(if neg { -ms } else { ms });
                Ok(format!("clock skew {arg}"))
            }
            "delay" => {
                let d: Duration = humantime::parse_duration(arg).map_err(|e| e.to_string())?;
                faults.set_delay(d);
                Ok(format!("delay {arg}"))
            }
            other => Err(format!(
                "unknown fault action \"{other}\" (partition, heal, delay, clock_skew)"
            )),
        }
    }
}

/// Wraps the cluster for the engine.
pub fn admin(cluster: Cluster, faults_enabled: bool) -> Arc<dyn ClusterAdmin> {
    Arc::new(Admin {
        cluster,
        faults_enabled,
    })
}
