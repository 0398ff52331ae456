//! Fan-out: from the change stream to the connections that listen.
//!
//! ```text
//!   Storage::subscribe (one CommitEvent per commit, in commit order)
//!     --> Hub thread, in steps: every event waiting in the stream (up to MAX_STEP) is
//!         routed: for each row change, each live query on its table matches it once and
//!         serializes one payload; each NOTIFY is looked up once
//!     --> the sweep (sweep.rs): each message logged once, its channel's listeners enrolled;
//!         between two steps the next VISITS enrolled connections are each handed, once,
//!         every message of their channels since their last turn:
//!           idle connection  --> one write to its socket, from the hub thread (no wake-up)
//!           otherwise        --> bounded queue --> Connection loop (sends when idle, outside
//!                                a transaction)
//! ```
//!
//! The commit path only publishes the event; nothing here runs under a lock that a commit takes,
//! so the number of listeners (on any channel) does not slow commits. What does hold a COMMIT
//! back is the hub itself falling behind: once the events it has not taken plus the messages
//! of the cycle in progress exceed COMMIT_BACKLOG, acknowledgements wait for it
//! (`Storage::pace_commits`), so that a writer cannot queue work faster than the fan-out does
//! it (latency would grow without bound, and the stream's ring buffer would overwrite events
//! not yet read). One slow listener does not hold up the hub: its queue takes the messages, or
//! overflows. The hub runs on its own thread, so its writes (one per listener) do not queue
//! the committing connection behind the listeners' tasks, and events committed during a cycle
//! join it: a change waits at most about one cycle for any listener. A mailbox that is full
//! drops what does not fit and, once there is room, queues one NoticeResponse naming, per
//! channel, the first position it missed (live queries) so that the client can fill the gap
//! with `weft_changes`; nothing is dropped silently.
//!
//! While no connection listens the hub sleeps (`Hub::sleep`): it drops its receiver of the
//! stream, so a commit wakes no thread and is not paced. The first LISTEN subscribes before it
//! is acknowledged and wakes it (`Listeners::resume`). Awake, it keeps the stream's NOTIFY
//! filter (`Storage::listen_filter`) equal to the listened channels, so that a commit carrying
//! only NOTIFY messages nobody listens to is not published.

mod mailbox;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use weft_sql::push::{compile_all, ListenTarget, LiveChange, LiveQuery};
use weft_sql::Engine;
use weft_storage::{ChangeRecord, CommitEvent, TableId};

pub use mailbox::{Delivery, Mailbox, Notification};
use sweep::Sweep;

/// How many deliveries may wait for one client before it overflows.
pub const MAILBOX_CAPACITY: usize = 4096;

/// Change records read from the durable log at a time when the hub fell behind the stream.
const CATCH_UP_BATCH: usize = 4096;

/// Most commit events routed in one step, between two batches of writes.
const MAX_STEP: usize = 1024;

/// Connections written to between two steps: the events committed meanwhile are routed
/// after at most this many writes, so they join the cycle in progress.
const VISITS: usize = 32;

/// How far the hub may be behind (events not taken plus messages of the cycle in progress)
/// before COMMITs wait for it (`Storage::pace_commits`). A cycle's cost is mostly one write per
/// listener, whatever it carries; a writer let further ahead makes cycles longer (its own CPU),
/// not cheaper. In run sets at 1,000 listeners side by side, 8 gave p99 about 1 ms more than 4,
/// and 2 about 1 ms less at a fifth less throughput (BENCHMARKS.md, "the sweep").
const COMMIT_BACKLOG: usize = 4;

/// The longest a COMMIT waits for the hub: a stalled fan-out slows writers, never stops them.
const COMMIT_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(100);

struct Listeners {
    /// channel → listening connections.
    by_channel: HashMap<Arc<str>, HashMap<i32, Arc<Mailbox>>>,
    /// connection → its channels.
    by_pid: HashMap<i32, HashSet<String>>,
    /// Bumped at every change, so that the sweep reads a channel's listeners again.
    generation: u64,
    /// The hub sleeps: no connection listens and nothing is left to write, so it does not read
    /// the change stream and is not woken by commits (see `Hub::sleep`).
    dormant: bool,
    /// Handed to the sleeping hub by the LISTEN that wakes it.
    resume: Option<Resume>,
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners {
            by_channel: HashMap::new(),
            by_pid: HashMap::new(),
            generation: 0,
            dormant: true,
            resume: None,
        }
    }
}

/// Where a woken hub starts: the stream as of the first LISTEN, and the last change position
/// committed before it subscribed (live-query changes up to there are not routed).
struct Resume {
    events: tokio::sync::broadcast::Receiver<Arc<CommitEvent>>,
    position: u64,
}

/// A connection's place in the fan-out: where its session's LISTEN/UNLISTEN take effect.
pub struct Subscriber {
    pub hub: Arc<Hub>,
    pub pid: i32,
    pub mailbox: Arc<Mailbox>,
}

impl ListenTarget for Subscriber {
    fn listen(&self, channel: &str, on: bool) {
        self.hub.apply(self.pid, channel, on, &self.mailbox);
    }

    fn revoke(&self, channel: &str) {
        // Off the hub first, so that nothing new is routed to it; then what the sweep routed
        // meanwhile (queued, or still to come from the cycle in progress) is held back.
        self.hub.apply(self.pid, channel, false, &self.mailbox);
        self.mailbox.revoke(channel);
    }
}

/// Live queries by the table they read.
type LiveByTable = HashMap<TableId, Vec<Arc<LiveQuery>>>;

/// Routes commits to listeners.
pub struct Hub {
    engine: Arc<Engine>,
    listeners: RwLock<Listeners>,
    live: RwLock<Arc<LiveByTable>>,
    /// Wakes the sleeping hub (with `Listeners::resume` set).
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("channels", &self.listeners.read().by_channel.len())
            .finish()
    }
}

impl Hub {
    /// Starts the hub's thread; it ends when `stop` becomes true (or its sender is dropped).
    /// The hub starts asleep, not subscribed to the change stream: the first LISTEN wakes it.
    pub fn start(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            engine,
            listeners: RwLock::new(Listeners::default()),
            live: RwLock::new(Arc::new(HashMap::new())),
            wake: tokio::sync::Notify::new(),
        });
        let task = Arc::clone(&hub);
        // Its own thread: a round's writes (one per listener) then compete with the committing
        // connection as threads do, instead of queueing it behind every listener's task.
        let spawned = std::thread::Builder::new()
            .name("weft-fanout".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the fan-out runtime; nothing is pushed");
                        return;
                    }
                };
                let running = Arc::clone(&task);
                rt.block_on(async move {
                    tokio::select! {
                        () = running.run() => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                });
                // Nothing is being sent any more: no COMMIT waits for this hub, and a LISTEN
                // applied from now on subscribes nothing (it would hold commits for nobody).
                {
                    let mut l = task.listeners.write();
                    l.dormant = false;
                    l.resume = None;
                }
                let storage = task.engine.storage();
                storage.pace_commits(0, COMMIT_WAIT_MAX);
                storage.events_received(0);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the fan-out thread; nothing is pushed");
        }
        hub
    }

    /// Starts (`on`) or stops delivering `channel` to connection `pid`.
    fn apply(&self, pid: i32, channel: &str, on: bool, mailbox: &Arc<Mailbox>) {
        let mut l = self.listeners.write();
        l.generation += 1;
        if on {
            let channel = channel.to_string();
            if !l.by_channel.contains_key(channel.as_str()) {
                self.engine.storage().listen_filter(&channel, true);
            }
            let listeners = l.by_channel.entry(Arc::from(channel.as_str())).or_default();
            // A connection that begins to listen here gets nothing committed before: not what
            // the hub, behind or not yet woken, still has to route (Mailbox::listen).
            let fence = (!listeners.contains_key(&pid)).then(|| self.engine.storage().published());
            mailbox.listen(&channel, fence);
            listeners.insert(pid, Arc::clone(mailbox));
            l.by_pid.entry(pid).or_default().insert(channel);
            if l.dormant {
                // Subscribed here, before the LISTEN is acknowledged: no commit after it
                // is missed, however late the hub's thread wakes.
                let storage = self.engine.storage();
                let position = storage.last_position();
                let events = storage.subscribe();
                storage.pace_commits(COMMIT_BACKLOG, COMMIT_WAIT_MAX);
                l.resume = Some(Resume { events, position });
                l.dormant = false;
                self.wake.notify_one();
            }
        } else {
            self.remove(&mut l, pid, channel);
            if let Some(set) = l.by_pid.get_mut(&pid) {
                set.remove(channel);
            }
        }
    }

    /// Takes `pid` off `channel`'s listeners; a channel nobody listens to any more is dropped
    /// from the change stream's NOTIFY filter.
    fn remove(&self, l: &mut Listeners, pid: i32, channel: &str) {
        if let Some(m) = l.by_channel.get_mut(channel) {
            m.remove(&pid);
            if m.is_empty() {
                l.by_channel.remove(channel);
                self.engine.storage().listen_filter(channel, false);
            }
        }
    }

    /// Forgets a connection that ended.
    pub fn disconnect(&self, pid: i32) {
        let mut l = self.listeners.write();
        l.generation += 1;
        let channels = l.by_pid.remove(&pid).unwrap_or_default();
        for c in channels {
            self.remove(&mut l, pid, &c);
        }
    }

    /// Number of (connection, channel) subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.listeners
            .read()
            .by_pid
            .values()
            .map(HashSet::len)
            .sum()
    }

    fn reload_live_queries(&self) {
        let catalog = self.engine.storage().catalog();
        let mut by_table: LiveByTable = HashMap::new();
        for (name, compiled) in compile_all(&self.engine, &catalog) {
            match compiled {
                Ok(q) => by_table.entry(q.table_id).or_default().push(Arc::new(q)),
                Err(e) => {
                    tracing::warn!(live_query = %name, error = %e, "live query does not compile; it pushes nothing")
                }
            }
        }
        *self.live.write() = Arc::new(by_table);
    }

    /// Sleeps until a connection listens, sweeps while any does (or while anything is left to
    /// write), and again; returns when the change stream closes.
    async fn run(self: Arc<Self>) {
        loop {
            let resume = loop {
                let woken = self.wake.notified();
                if let Some(r) = self.listeners.write().resume.take() {
                    break r;
                }
                woken.await;
            };
            // Schema changes and resets went by unread while it slept.
            self.reload_live_queries();
            if !self.sweep(resume.events, resume.position).await {
                return;
            }
        }
    }

    /// Goes to sleep if no connection listens (with nothing left to write): commits are no
    /// longer paced, and the caller drops the stream, so that commits do not wake this thread.
    /// Every later event is one that no connection listened to when it was committed, except
    /// those committed while the first LISTEN is being applied, as when awake.
    fn sleep(&self) -> bool {
        if !self.listeners.read().by_channel.is_empty() {
            return false;
        }
        let mut l = self.listeners.write();
        if !l.by_channel.is_empty() {
            return false;
        }
        l.dormant = true;
        let storage = self.engine.storage();
        storage.pace_commits(0, COMMIT_WAIT_MAX);
        storage.events_received(0);
        true
    }

    /// The sweep: routes every event waiting in the stream (up to MAX_STEP; when nothing is
    /// left to write, it first waits for one), then writes to the next VISITS connections
    /// that have messages, and again. Returns true when it went to sleep, false when the
    /// stream closed.
    async fn sweep(
        &self,
        mut events: tokio::sync::broadcast::Receiver<Arc<CommitEvent>>,
        mut position: u64,
    ) -> bool {
        let mut sweep = Sweep::default();
        let mut reported = 0;
        loop {
            if sweep.is_idle() && events.is_empty() && self.sleep() {
                return true;
            }
            let mut next = if sweep.is_idle() {
                Some(events.recv().await)
            } else {
                // Lets the runtime look at `stop` while the sweep is busy.
                tokio::task::yield_now().await;
                poll(&mut events)
            };
            let mut routed = 0;
            while let Some(received) = next.take() {
                match received {
                    Ok(event) => self.on_event(&event, &mut position, &mut sweep),
                    Err(RecvError::Lagged(n)) => {
                        sweep.flush();
                        tracing::warn!(missed = n, "push fan-out fell behind the change stream; catching up from the change log");
                        self.catch_up(&mut position, &mut sweep);
                    }
                    Err(RecvError::Closed) => {
                        sweep.flush();
                        return false;
                    }
                }
                routed += 1;
                if routed < MAX_STEP {
                    next = poll(&mut events);
                }
            }
            sweep.visit(VISITS);
            if !sweep.is_idle() {
                // Busy, this thread never sleeps, and a thread woken meanwhile on its CPU (a
                // committing connection's, most often) would wait for the scheduler's tick to
                // run: about 4 ms. Yielding between steps lets it run within one step.
                std::thread::yield_now();
            }
            let unsent = sweep.backlog();
            if routed > 0 || unsent != reported {
                // Paced commits go on while the messages of the cycle in progress are few.
                self.engine.storage().events_received(unsent);
                reported = unsent;
            }
        }
    }

    fn on_event(&self, event: &CommitEvent, position: &mut u64, sweep: &mut Sweep) {
        sweep.routing(Some(event.seq));
        if event.catalog_changed {
            self.reload_live_queries();
        }
        if event.reset {
            self.push_reset_all(event, sweep);
            *position = self.engine.storage().last_position();
            return;
        }
        let pid = i32::try_from(event.origin).unwrap_or(0);
        let live = Arc::clone(&self.live.read());
        if !live.is_empty() {
            for record in event.changes.iter().filter(|r| r.position > *position) {
                self.route_change(&live, record, pid, sweep);
            }
        }
        if let Some(last) = event.changes.last() {
            *position = (*position).max(last.position);
        }
        if event.notifications.is_empty() {
            return;
        }
        let listeners = self.listeners.read();
        for (channel, payload) in &event.notifications {
            let Some((channel, targets)) = listeners.by_channel.get_key_value(channel.as_str())
            else {
                continue;
            };
            let wire = Notification {
                pid,
                channel: channel.to_string(),
                payload: payload.clone(),
            }
            .encode();
            sweep.deliver(channel, targets, listeners.generation, wire, None);
        }
    }

    /// The node installed a snapshot: the changes in between are not in its log, so every live
    /// query's listeners are told to re-read.
    fn push_reset_all(&self, event: &CommitEvent, sweep: &mut Sweep) {
        let position = self.engine.storage().last_position();
        let live = Arc::clone(&self.live.read());
        let listeners = self.listeners.read();
        for q in live.values().flatten() {
            let Some((channel, targets)) = listeners.by_channel.get_key_value(q.name.as_str())
            else {
                continue;
            };
            let change = LiveChange {
                op: weft_sql::push::LiveOp::Reset,
                position,
                ts: event.ts,
                key: None,
                row: None,
                old: None,
            };
            let wire = Notification {
                pid: 0,
                channel: q.name.clone(),
                payload: change.payload(),
            }
            .encode();
            sweep.deliver(channel, targets, listeners.generation, wire, Some(position));
        }
    }

    fn route_change(&self, live: &LiveByTable, record: &ChangeRecord, pid: i32, sweep: &mut Sweep) {
        let Some(queries) = live.get(&record.table_id) else {
            return;
        };
        for q in queries {
            let change = match q.apply(record) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(live_query = %q.name, error = %e, "matching a change failed; pushing a reset");
                    LiveChange {
                        op: weft_sql::push::LiveOp::Reset,
                        position: record.position,
                        ts: record.ts,
                        key: None,
                        row: None,
                        old: None,
                    }
                }
            };
            let listeners = self.listeners.read();
            let Some((channel, targets)) = listeners.by_channel.get_key_value(q.name.as_str())
            else {
                continue;
            };
            let wire = Notification {
                pid,
                channel: q.name.clone(),
                payload: change.payload(),
            }
            .encode();
            sweep.deliver(
                channel,
                targets,
                listeners.generation,
                wire,
                Some(record.position),
            );
        }
    }

    /// After falling behind the stream: live-query changes come from the durable log; NOTIFY
    /// messages are not logged, so their listeners are told what was lost.
    fn catch_up(&self, position: &mut u64, sweep: &mut Sweep) {
        self.reload_live_queries();
        sweep.routing(None);
        let storage = self.engine.storage();
        let target = storage.last_position();
        while *position < target {
            let records = match storage.read_changes(*position, CATCH_UP_BATCH) {
                Ok(r) if !r.is_empty() => r,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "reading the change log to catch up failed");
                    break;
                }
            };
            let live = Arc::clone(&self.live.read());
            for r in &records {
                self.route_change(&live, r, 0, sweep);
                *position = r.position;
            }
            sweep.flush();
        }
        let listeners = self.listeners.read();
        for targets in listeners.by_channel.values() {
            for mailbox in targets.values() {
                mailbox.push_notice(
                    "the server fell behind its change stream: NOTIFY messages may have been lost (live-query changes were not)".into(),
                );
            }
        }
    }
}

/// The next event already in the stream, if any.
fn poll(
    events: &mut tokio::sync::broadcast::Receiver<Arc<CommitEvent>>,
) -> Option<Result<Arc<CommitEvent>, RecvError>> {
    match events.try_recv() {
        Ok(e) => Some(Ok(e)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
    }
}
