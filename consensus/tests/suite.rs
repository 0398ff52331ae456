//! The log store and state machine: openraft's storage conformance suite, then what the suite
//! cannot check (real write sets, de-duplication, responses, snapshots carrying data).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::Future;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{Config, Entry, EntryPayload, LogId, Membership, StorageError};
use tempfile::TempDir;
use weft_consensus::store::{self, LogStore, StateMachine};
use weft_consensus::{PeerNode, Request, TypeConfig};
use weft_storage::{ReplicatedWrite, RequestId, Storage, StorageOptions, WriteSet};

fn open_storage(dir: &std::path::Path) -> Storage {
    Storage::open(
        dir,
        StorageOptions {
            node_id: 1,
            sync: false,
            prewrite_wal: false,
        },
    )
    .expect("storage opens")
}

/// A fresh store in a temporary directory, which the guard keeps.
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = store::open(open_storage(dir.path()), 1)
            .await
            .expect("store opens");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("suite passes");
}

/// A valid write set that touches no table: one NOTIFY.
fn notify(seq: u64, payload: &str) -> ReplicatedWrite {
    ReplicatedWrite {
        id: RequestId {
            node: 1,
            incarnation: 42,
            seq,
        },
        ts: 0,
        ws: WriteSet {
            notifications: vec![("c".into(), payload.into())],
            ..Default::default()
        },
    }
}

/// A network for a one-node cluster: there is nobody to reach.
struct NoPeers;

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::new(&io::Error::other("single-node test cluster"))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &PeerNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetworkV2<TypeConfig> for NoPeers {
    type SnapshotData = weft_storage::SnapshotFile;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: openraft::type_config::alias::VoteOf<TypeConfig>,
        _snapshot: store::Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

/// Through a one-node Raft: responses come back in order, a repeated request id answers what
/// the first one did, the applied watch follows, and a snapshot can be built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_answers_dedups_and_advances_the_watch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open_storage(dir.path());
    let (log, sm) = store::open(storage.clone(), 1).await.expect("store opens");
    let applied = sm.applied_watch();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    }
    .validate()
    .expect("valid config");
    let raft = openraft::Raft::new(1, Arc::new(config), NoPeers, log, sm)
        .await
        .expect("raft starts");
    raft.initialize(BTreeMap::from([(1, PeerNode::default())]))
        .await
        .expect("initialize");
    let deadline = Some(Duration::from_secs(10));
    raft.wait(deadline)
        .current_leader(1, "leader elected")
        .await
        .expect("leader");

    let first = raft
        .client_write(Request(notify(1, "a")))
        .await
        .expect("write 1");
    let second = raft
        .client_write(Request(notify(2, "b")))
        .await
        .expect("write 2");
    let again = raft
        .client_write(Request(notify(1, "a")))
        .await
        .expect("write 1 again");

    let info1 = first.data.0.clone().expect("applied").expect("committed");
    let info2 = second.data.0.clone().expect("applied").expect("committed");
    assert_eq!(info2.version, info1.version + 1, "{info1:?} then {info2:?}");
    assert_eq!(
        again.data, first.data,
        "a repeated request id answers the first outcome"
    );
    assert!(again.log_id.index > second.log_id.index);
    assert_eq!(*applied.borrow(), again.log_id.index);

    let stored: LogId<_> = bincode::deserialize(
        &storage
            .replica_meta("applied")
            .expect("read meta")
            .expect("applied is stored"),
    )
    .expect("decodes");
    assert_eq!(stored, again.log_id);

    raft.trigger().snapshot().await.expect("trigger snapshot");
    raft.wait(deadline)
        .metrics(|m| m.snapshot == Some(again.log_id), "snapshot built")
        .await
        .expect("snapshot");
    raft.shutdown().await.expect("shutdown");
}

/// A snapshot built on one store and installed on a fresh one carries the data, the applied
/// id and the membership; the installing side's watch and current snapshot follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_moves_state_between_stores() {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let storage_a = open_storage(dir_a.path());
    let (_log_a, mut sm_a) = store::open(storage_a.clone(), 1)
        .await
        .expect("store opens");

    let log_id = |index| openraft::testing::log_id::<TypeConfig>(1, 1, index);
    let entries = vec![
        Entry {
            log_id: log_id(0),
            payload: EntryPayload::Membership(Membership::new_with_defaults(
                vec![BTreeSet::from([1])],
                [],
            )),
        },
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Normal(Request(notify(1, "x"))),
        },
        Entry {
            log_id: log_id(2),
            payload: EntryPayload::Normal(Request(notify(1, "x"))),
        },
    ];
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm_a.apply(stream).await.expect("apply");
    assert_eq!(*sm_a.applied_watch().borrow(), 2);

    let mut builder = sm_a.get_snapshot_builder().await;
    let snap = builder.build_snapshot().await.expect("build");
    assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
    assert_eq!(snap.meta.last_membership.log_id(), &Some(log_id(0)));

    let dir_b = tempfile::tempdir().expect("tempdir");
    let storage_b = open_storage(dir_b.path());
    let (log_b, mut sm_b) = store::open(storage_b.clone(), 1)
        .await
        .expect("store opens");
    let watch_b = sm_b.applied_watch();
    assert!(sm_b.get_current_snapshot().await.expect("read").is_none());
    sm_b.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");

    assert_eq!(
        storage_b.replica_meta("applied").expect("read b"),
        storage_a.replica_meta("applied").expect("read a"),
    );
    assert_eq!(
        sm_b.applied_state().await.expect("state b"),
        sm_a.applied_state().await.expect("state a"),
    );
    assert_eq!(*watch_b.borrow(), 2);
    let current = sm_b
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot after install");
    assert_eq!(current.meta, snap.meta);

    // Reopening finds the applied index again.
    drop((log_b, sm_b));
    storage_b.shutdown();
    drop(storage_b);
    let (_log_b, sm_b) = store::open(open_storage(dir_b.path()), 1)
        .await
        .expect("store reopens");
    assert_eq!(*sm_b.applied_watch().borrow(), 2);
}
