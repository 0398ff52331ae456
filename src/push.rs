//! Fan-out: from the change stream to the connections that listen.
//!
//! ```text
//!   Storage::subscribe (one CommitEvent per commit, in commit order)
//!     --> Hub task: for each row change, each live query on its table matches it once and
//!         serializes one payload; each NOTIFY is looked up once
//!     --> channel --> listeners' Mailboxes (bounded; never blocks the hub)
//!     --> Connection loop (sends NotificationResponse while idle outside a transaction)
//! ```
//!
//! The commit path only publishes the event; nothing here runs under a lock that a commit takes,
//! so the number of listeners (on any channel) does not slow commits. A mailbox that is full drops
//! what does not fit and, once there is room, queues one NoticeResponse naming, per channel, the
//! first position it missed (live queries) so that the client can fill the gap with
//! `weft_changes`; nothing is dropped silently.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use weft_sql::push::{compile_all, ListenChange, LiveChange, LiveQuery};
use weft_sql::Engine;
use weft_storage::{ChangeRecord, CommitEvent, TableId};

/// How many deliveries may wait for one client before it overflows.
pub const MAILBOX_CAPACITY: usize = 4096;

/// Change records read from the durable log at a time when the hub fell behind the stream.
const CATCH_UP_BATCH: usize = 4096;

/// An asynchronous notification for a client (`NotificationResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Backend pid of the notifying session (0 when unknown).
    pub pid: i32,
    pub channel: String,
    pub payload: String,
}

impl Notification {
    /// The NotificationResponse message as it goes on the wire: 'A', length, pid, channel,
    /// payload. The hub encodes it once and every listener's connection copies the bytes.
    pub fn encode(&self) -> Bytes {
        let len = 4 + 4 + self.channel.len() + 1 + self.payload.len() + 1;
        let mut b = BytesMut::with_capacity(1 + len);
        b.put_u8(b'A');
        // A payload is at most a commit's worth of text; u32 overflow would need 4 GiB.
        b.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        b.put_i32(self.pid);
        b.put_slice(self.channel.as_bytes());
        b.put_u8(0);
        b.put_slice(self.payload.as_bytes());
        b.put_u8(0);
        b.freeze()
    }
}

/// What a connection sends its client when idle.
#[derive(Debug, Clone)]
pub enum Delivery {
    Notification(Arc<Notification>),
    /// An encoded NotificationResponse (see `Notification::encode`), shared by all listeners.
    Encoded(Bytes),
    /// An asynchronous NoticeResponse (e.g. the overflow report).
    Notice(String),
}

#[derive(Default)]
struct MailboxState {
    queue: VecDeque<Delivery>,
    /// Channels whose deliveries were dropped since the last overflow notice, with the first
    /// position missed (live queries) or None (NOTIFY).
    missed: Vec<(String, Option<u64>)>,
}

/// One connection's bounded queue of deliveries.
pub struct Mailbox {
    state: Mutex<MailboxState>,
    ready: Notify,
    capacity: usize,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("queued", &self.state.lock().queue.len())
            .finish()
    }
}

impl Mailbox {
    pub fn new(capacity: usize) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            state: Mutex::new(MailboxState::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        })
    }

    /// Queues `n`; false if it did not fit (it is then reported by the next overflow notice).
    pub fn push(&self, n: Arc<Notification>, position: Option<u64>) -> bool {
        let channel = n.channel.clone();
        self.push_delivery(&channel, Delivery::Notification(n), position)
    }

    /// Queues a notification on `channel` already encoded; false if it did not fit.
    pub fn push_encoded(&self, channel: &str, wire: Bytes, position: Option<u64>) -> bool {
        self.push_delivery(channel, Delivery::Encoded(wire), position)
    }

    fn push_delivery(&self, channel: &str, d: Delivery, position: Option<u64>) -> bool {
        let mut s = self.state.lock();
        if s.queue.len() >= self.capacity {
            if !s.missed.iter().any(|(c, _)| c == channel) {
                s.missed.push((channel.to_string(), position));
            }
            return false;
        }
        if !s.missed.is_empty() {
            let notice = overflow_notice(&std::mem::take(&mut s.missed));
            s.queue.push_back(Delivery::Notice(notice));
        }
        s.queue.push_back(d);
        drop(s);
        self.ready.notify_one();
        true
    }

    /// Queues a notice (never dropped).
    pub fn push_notice(&self, message: String) {
        self.state.lock().queue.push_back(Delivery::Notice(message));
        self.ready.notify_one();
    }

    /// How many deliveries wait, and whether some were dropped since the last overflow notice.
    pub fn pending(&self) -> (usize, bool) {
        let s = self.state.lock();
        (s.queue.len(), !s.missed.is_empty())
    }

    /// The next delivery, if one is queued.
    pub fn try_pop(&self) -> Option<Delivery> {
        let mut s = self.state.lock();
        let d = s.queue.pop_front();
        if d.is_none() && !s.missed.is_empty() {
            // Drained after an overflow with nothing newer queued: report it now.
            return Some(Delivery::Notice(overflow_notice(&std::mem::take(
                &mut s.missed,
            ))));
        }
        d
    }

    /// Waits for the next delivery.
    pub async fn pop(&self) -> Delivery {
        loop {
            let notified = self.ready.notified();
            if let Some(d) = self.try_pop() {
                return d;
            }
            notified.await;
        }
    }
}

fn overflow_notice(missed: &[(String, Option<u64>)]) -> String {
    let parts: Vec<String> = missed
        .iter()
        .map(|(c, p)| match p {
            Some(p) => format!(
                "channel \"{c}\" from position {p} (read them with weft_changes('{c}', {}))",
                p.saturating_sub(1)
            ),
            None => format!("channel \"{c}\""),
        })
        .collect();
    format!(
        "notification queue overflow: notifications were dropped on {}",
        parts.join(", ")
    )
}

#[derive(Default)]
struct Listeners {
    /// channel → listening connections.
    by_channel: HashMap<String, HashMap<i32, Arc<Mailbox>>>,
    /// connection → its channels.
    by_pid: HashMap<i32, HashSet<String>>,
}

/// Live queries by the table they read.
type LiveByTable = HashMap<TableId, Vec<Arc<LiveQuery>>>;

/// Routes commits to listeners.
pub struct Hub {
    engine: Arc<Engine>,
    listeners: RwLock<Listeners>,
    live: RwLock<Arc<LiveByTable>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("channels", &self.listeners.read().by_channel.len())
            .finish()
    }
}

impl Hub {
    /// Starts the hub's task on the engine's change stream; it ends when `stop` becomes true.
    pub fn start(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) -> Arc<Hub> {
        let events = engine.storage().subscribe();
        let hub = Arc::new(Hub {
            engine,
            listeners: RwLock::new(Listeners::default()),
            live: RwLock::new(Arc::new(HashMap::new())),
        });
        hub.reload_live_queries();
        let position = hub.engine.storage().last_position();
        let task = Arc::clone(&hub);
        tokio::spawn(async move {
            tokio::select! {
                () = task.run(events, position) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
        hub
    }

    /// Applies a session's committed LISTEN/UNLISTEN.
    pub fn apply(&self, pid: i32, change: ListenChange, mailbox: &Arc<Mailbox>) {
        let mut l = self.listeners.write();
        match change {
            ListenChange::Listen(channel) => {
                l.by_channel
                    .entry(channel.clone())
                    .or_default()
                    .insert(pid, Arc::clone(mailbox));
                l.by_pid.entry(pid).or_default().insert(channel);
            }
            ListenChange::Unlisten(channel) => {
                remove(&mut l, pid, &channel);
                if let Some(set) = l.by_pid.get_mut(&pid) {
                    set.remove(&channel);
                }
            }
            ListenChange::UnlistenAll => {
                let channels = l.by_pid.remove(&pid).unwrap_or_default();
                for c in channels {
                    remove(&mut l, pid, &c);
                }
            }
        }
    }

    /// Forgets a connection that ended.
    pub fn disconnect(&self, pid: i32) {
        let mut l = self.listeners.write();
        let channels = l.by_pid.remove(&pid).unwrap_or_default();
        for c in channels {
            remove(&mut l, pid, &c);
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

    async fn run(
        self: Arc<Self>,
        mut events: tokio::sync::broadcast::Receiver<Arc<CommitEvent>>,
        mut position: u64,
    ) {
        loop {
            match events.recv().await {
                Ok(event) => self.on_event(&event, &mut position),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "push fan-out fell behind the change stream; catching up from the change log");
                    self.catch_up(&mut position);
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn on_event(&self, event: &CommitEvent, position: &mut u64) {
        if event.catalog_changed {
            self.reload_live_queries();
        }
        if event.reset {
            self.push_reset_all(event);
            *position = self.engine.storage().last_position();
            return;
        }
        let pid = i32::try_from(event.origin).unwrap_or(0);
        let live = Arc::clone(&self.live.read());
        if !live.is_empty() {
            for record in event.changes.iter().filter(|r| r.position > *position) {
                self.route_change(&live, record, pid);
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
            let Some(targets) = listeners.by_channel.get(channel) else {
                continue;
            };
            let wire = Notification {
                pid,
                channel: channel.clone(),
                payload: payload.clone(),
            }
            .encode();
            for mailbox in targets.values() {
                mailbox.push_encoded(channel, wire.clone(), None);
            }
        }
    }

    /// The node installed a snapshot: the changes in between are not in its log, so every live
    /// query's listeners are told to re-read.
    fn push_reset_all(&self, event: &CommitEvent) {
        let position = self.engine.storage().last_position();
        let live = Arc::clone(&self.live.read());
        let listeners = self.listeners.read();
        for q in live.values().flatten() {
            let Some(targets) = listeners.by_channel.get(&q.name) else {
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
            for mailbox in targets.values() {
                mailbox.push_encoded(&q.name, wire.clone(), Some(position));
            }
        }
    }

    fn route_change(&self, live: &LiveByTable, record: &ChangeRecord, pid: i32) {
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
            let Some(targets) = listeners.by_channel.get(&q.name) else {
                continue;
            };
            let wire = Notification {
                pid,
                channel: q.name.clone(),
                payload: change.payload(),
            }
            .encode();
            for mailbox in targets.values() {
                mailbox.push_encoded(&q.name, wire.clone(), Some(record.position));
            }
        }
    }

    /// After falling behind the stream: live-query changes come from the durable log; NOTIFY
    /// messages are not logged, so their listeners are told what was lost.
    fn catch_up(&self, position: &mut u64) {
        self.reload_live_queries();
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
                self.route_change(&live, r, 0);
                *position = r.position;
            }
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

fn remove(l: &mut Listeners, pid: i32, channel: &str) {
    if let Some(m) = l.by_channel.get_mut(channel) {
        m.remove(&pid);
        if m.is_empty() {
            l.by_channel.remove(channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(i: u64) -> Arc<Notification> {
        Arc::new(Notification {
            pid: 1,
            channel: "q".into(),
            payload: i.to_string(),
        })
    }

    #[test]
    fn overflow_is_reported_once_in_order() {
        let m = Mailbox::new(2);
        assert!(m.push(note(1), Some(1)));
        assert!(m.push(note(2), Some(2)));
        assert!(!m.push(note(3), Some(3)));
        assert!(!m.push(note(4), Some(4)));
        let mut got = Vec::new();
        while let Some(d) = m.try_pop() {
            got.push(match d {
                Delivery::Notification(n) => n.payload.clone(),
                Delivery::Encoded(b) => format!("{b:?}"),
                Delivery::Notice(s) => s,
            });
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[..2], ["1".to_string(), "2".to_string()]);
        assert!(got[2].contains("from position 3"), "{}", got[2]);
        assert!(got[2].contains("weft_changes('q', 2)"), "{}", got[2]);
        // After the report, deliveries resume.
        assert!(m.push(note(5), Some(5)));
        assert!(matches!(m.try_pop(), Some(Delivery::Notification(n)) if n.payload == "5"));
    }

    #[test]
    fn encodes_a_notification_response() {
        let n = Notification {
            pid: 7,
            channel: "ch".into(),
            payload: "hi".into(),
        };
        let mut expected = vec![b'A', 0, 0, 0, 14, 0, 0, 0, 7];
        expected.extend_from_slice(b"ch\0hi\0");
        assert_eq!(&n.encode()[..], &expected[..]);
        // Overflow accounting is per channel for encoded deliveries too.
        let m = Mailbox::new(1);
        assert!(m.push_encoded("ch", n.encode(), Some(1)));
        assert!(!m.push_encoded("ch", n.encode(), Some(2)));
        assert!(matches!(m.try_pop(), Some(Delivery::Encoded(b)) if b == n.encode()));
        assert!(matches!(m.try_pop(), Some(Delivery::Notice(s)) if s.contains("position 2")));
    }

    #[test]
    fn notice_precedes_newer_deliveries() {
        let m = Mailbox::new(1);
        assert!(m.push(note(1), Some(1)));
        assert!(!m.push(note(2), Some(2)));
        assert!(matches!(m.try_pop(), Some(Delivery::Notification(_))));
        assert!(m.push(note(3), Some(3)));
        assert!(matches!(m.try_pop(), Some(Delivery::Notice(s)) if s.contains("position 2")));
        assert!(matches!(m.try_pop(), Some(Delivery::Notification(n)) if n.payload == "3"));
    }
}
