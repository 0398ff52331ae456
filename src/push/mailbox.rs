//! One connection's bounded queue of deliveries, and the direct path that bypasses it.
//!
//! ```text
//!   Hub sweep ──▶ deliver_round (once per turn: every message since the last, in one buffer)
//!     direct on (connection idle, nothing queued): one write of those messages
//!        straight to the socket; the connection task is not woken
//!     otherwise, or the socket is full: queue (bounded) ──▶ wake ──▶ Connection loop writes
//! ```
//!
//! Invariant: while `direct` is on, nothing is queued, no partial message is pending, and the
//! connection's own write buffer is empty (it turns direct on only then, and off before it
//! writes anything). So bytes reach the socket in the order they were routed, and a
//! NotificationResponse never lands inside another message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;

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
    /// Bytes to write as they are: an encoded NotificationResponse (see
    /// `Notification::encode`, shared by all listeners), or the rest of messages that the
    /// fan-out wrote only in part.
    Encoded(Bytes),
    /// An asynchronous NoticeResponse (e.g. the overflow report).
    Notice(String),
}

/// A message in the fan-out's log (see `sweep.rs`).
pub(crate) struct Routed {
    pub channel: Arc<str>,
    /// The encoded NotificationResponse.
    pub wire: Bytes,
    pub position: Option<u64>,
    /// The change stream's number of the event it comes from (`CommitEvent::seq`); None for
    /// a record read back from the change log.
    pub event: Option<u64>,
}

#[derive(Default)]
struct MailboxState {
    queue: VecDeque<Delivery>,
    /// Channels whose deliveries were dropped since the last overflow notice, with the first
    /// position missed (live queries) or None (NOTIFY).
    missed: Vec<(String, Option<u64>)>,
    /// The tail of messages that a direct write sent only in part: goes out before anything.
    partial: Option<Bytes>,
    /// The client's socket (plain TCP only), for direct writes.
    socket: Option<Arc<TcpStream>>,
    /// Direct writes allowed: see the module's invariant.
    direct: bool,
    /// Channels whose LISTEN was undone by a COMMIT that failed: nothing on them is delivered
    /// (the sweep may still hold messages routed while that LISTEN was in effect) until the
    /// connection listens there again. Almost always empty.
    revoked: Vec<Arc<str>>,
    /// Channels listened to lately, with the number of the last event the change stream had
    /// published at that LISTEN: a message from that event or an earlier one was committed
    /// before it (the hub may route it later, having fallen behind or not yet woken), and is
    /// not delivered on them. Messages come in event order: a message from a later event, on
    /// any channel, clears the fences below it.
    fences: Vec<(Arc<str>, u64)>,
}

impl MailboxState {
    fn is_revoked(&self, channel: &str) -> bool {
        self.revoked.iter().any(|c| &**c == channel)
    }

    /// Whether a routed message is held back: its channel is revoked, or it was committed
    /// before the channel's fence.
    fn holds_back(&mut self, r: &Routed) -> bool {
        if self.is_revoked(&r.channel) {
            return true;
        }
        let Some(event) = r.event else {
            return false;
        };
        self.fences.retain(|(_, fence)| *fence >= event);
        self.fences
            .iter()
            .any(|(c, _)| Arc::ptr_eq(c, &r.channel) || *c == r.channel)
    }

    fn has_backlog(&self) -> bool {
        !self.queue.is_empty() || self.partial.is_some() || !self.missed.is_empty()
    }
}

/// One connection's bounded queue of deliveries.
pub struct Mailbox {
    state: Mutex<MailboxState>,
    ready: Notify,
    capacity: usize,
    /// Its index in the fan-out's sweep (`usize::MAX`: not in it). Only the hub's thread uses it.
    sweep_slot: AtomicUsize,
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
            sweep_slot: AtomicUsize::new(usize::MAX),
        })
    }

    pub(crate) fn sweep_slot(&self) -> usize {
        self.sweep_slot.load(Ordering::Relaxed)
    }

    pub(crate) fn set_sweep_slot(&self, slot: usize) {
        self.sweep_slot.store(slot, Ordering::Relaxed);
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
        let queued = self.enqueue(&mut s, channel, d, position);
        drop(s);
        self.ready.notify_one();
        queued
    }

    fn enqueue(
        &self,
        s: &mut MailboxState,
        channel: &str,
        d: Delivery,
        position: Option<u64>,
    ) -> bool {
        if s.is_revoked(channel) {
            // Not listened to: as PostgreSQL, which filters at read time, delivers nothing.
            return true;
        }
        // The connection task writes what is queued; the fan-out must not write meanwhile.
        s.direct = false;
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
        true
    }

    /// Queues a notice (never dropped).
    pub fn push_notice(&self, message: String) {
        let mut s = self.state.lock();
        s.direct = false;
        s.queue.push_back(Delivery::Notice(message));
        drop(s);
        self.ready.notify_one();
    }

    /// Takes this connection's deliveries of one turn of the hub's sweep: `wire` is `items`
    /// encoded back to back. If direct writes are on, it goes to the socket in one write (what
    /// does not fit is left for the connection task, which is then woken); otherwise the items
    /// are queued (bounded) and the task is woken.
    pub(crate) fn deliver_round(&self, wire: &Bytes, items: &[&Routed]) {
        let mut s = self.state.lock();
        let kept: Vec<&Routed>;
        let filtered: Bytes;
        let (wire, items) = if s.revoked.is_empty() && s.fences.is_empty() {
            (wire, items)
        } else {
            kept = items.iter().copied().filter(|r| !s.holds_back(r)).collect();
            if kept.is_empty() {
                return;
            }
            let mut b = BytesMut::new();
            for r in &kept {
                b.extend_from_slice(&r.wire);
            }
            filtered = b.freeze();
            (&filtered, &kept[..])
        };
        let mut written = false;
        if s.direct && !s.has_backlog() {
            if let Some(socket) = s.socket.as_deref() {
                match socket.try_write(wire) {
                    Ok(n) if n == wire.len() => written = true,
                    Ok(n) => {
                        s.partial = Some(wire.slice(n..));
                        s.direct = false;
                        written = true;
                    }
                    // Socket full (a slow client) or failing: the connection task takes over;
                    // it waits for room, or sees the error and ends.
                    Err(_) => s.direct = false,
                }
            } else {
                s.direct = false;
            }
        }
        let wake = !written || s.partial.is_some();
        if !written {
            for r in items {
                self.enqueue(
                    &mut s,
                    &r.channel,
                    Delivery::Encoded(r.wire.clone()),
                    r.position,
                );
            }
        }
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Undoes a LISTEN on `channel` whose transaction failed to commit: what was queued on it
    /// since is dropped, and nothing more on it is delivered until `unrevoke`.
    pub fn revoke(&self, channel: &str) {
        let mut s = self.state.lock();
        if !s.is_revoked(channel) {
            s.revoked.push(Arc::from(channel));
        }
        s.queue.retain(|d| match d {
            Delivery::Notification(n) => n.channel != channel,
            Delivery::Encoded(wire) => encoded_channel(wire) != Some(channel.as_bytes()),
            Delivery::Notice(_) => true,
        });
        s.missed.retain(|(c, _)| c != channel);
    }

    /// The connection listens on `channel` (again, after a revoke): its deliveries go out,
    /// except those from the change stream's events up to `fence` (the last one published
    /// when it began to listen there), committed before this LISTEN.
    pub fn listen(&self, channel: &str, fence: Option<u64>) {
        let mut s = self.state.lock();
        s.revoked.retain(|c| &**c != channel);
        s.fences.retain(|(c, _)| &**c != channel);
        if let Some(fence) = fence {
            s.fences.push((Arc::from(channel), fence));
        }
    }

    /// Gives the fan-out the client's socket for direct writes (plain TCP connections only).
    pub fn attach(&self, socket: Arc<TcpStream>) {
        self.state.lock().socket = Some(socket);
    }

    /// The connection ends: the fan-out lets go of its socket.
    pub fn detach(&self) {
        let mut s = self.state.lock();
        s.direct = false;
        s.socket = None;
    }

    /// The connection is idle with an empty write buffer: from now on the fan-out may write
    /// to its socket directly. Does nothing while deliveries wait (the connection writes
    /// those first) or without a socket.
    pub fn enable_direct(&self) {
        let mut s = self.state.lock();
        if s.socket.is_some() && !s.has_backlog() {
            s.direct = true;
        }
    }

    /// The connection is about to write: direct writes stop. Returns the tail of a message
    /// that a direct write sent only in part, which must be written before anything else.
    pub fn disable_direct(&self) -> Option<Bytes> {
        let mut s = self.state.lock();
        s.direct = false;
        s.partial.take()
    }

    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.state.lock().direct
    }

    /// How many deliveries wait, and whether some were dropped since the last overflow notice.
    pub fn pending(&self) -> (usize, bool) {
        let s = self.state.lock();
        (s.queue.len(), !s.missed.is_empty())
    }

    /// The next delivery, if one is queued.
    pub fn try_pop(&self) -> Option<Delivery> {
        let mut s = self.state.lock();
        if let Some(p) = s.partial.take() {
            s.direct = false;
            return Some(Delivery::Encoded(p));
        }
        let d = s.queue.pop_front();
        if d.is_none() && !s.missed.is_empty() {
            s.direct = false;
            // Drained after an overflow with nothing newer queued: report it now.
            return Some(Delivery::Notice(overflow_notice(&std::mem::take(
                &mut s.missed,
            ))));
        }
        if d.is_some() {
            s.direct = false;
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

/// The channel of a queued NotificationResponse (`Notification::encode`: 'A', length, pid,
/// channel, NUL, payload, NUL).
fn encoded_channel(wire: &[u8]) -> Option<&[u8]> {
    let rest = wire.get(9..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
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

    /// A routed message; the number of its event is its position.
    fn routed(ch: &Arc<str>, wire: Bytes, position: Option<u64>) -> Routed {
        Routed {
            channel: Arc::clone(ch),
            wire,
            position,
            event: position,
        }
    }

    /// One round of `items` as the hub hands it over.
    fn round(m: &Mailbox, items: &[Routed]) {
        let mut wire = BytesMut::new();
        for r in items {
            wire.extend_from_slice(&r.wire);
        }
        let refs: Vec<&Routed> = items.iter().collect();
        m.deliver_round(&wire.freeze(), &refs);
    }

    #[test]
    fn a_round_queues_in_order_without_a_socket() {
        let m = Mailbox::new(2);
        let ch: Arc<str> = Arc::from("q");
        let wire = |i: u8| Bytes::from(vec![i]);
        // No socket: direct stays off and the round is queued, bounded by the capacity.
        m.enable_direct();
        round(
            &m,
            &[
                routed(&ch, wire(1), Some(1)),
                routed(&ch, wire(2), Some(2)),
                routed(&ch, wire(3), Some(3)),
            ],
        );
        assert_eq!(m.pending(), (2, true));
        assert!(matches!(m.try_pop(), Some(Delivery::Encoded(b)) if b[..] == [1]));
        assert!(matches!(m.try_pop(), Some(Delivery::Encoded(b)) if b[..] == [2]));
        assert!(matches!(m.try_pop(), Some(Delivery::Notice(s)) if s.contains("position 3")));
        assert!(m.try_pop().is_none());
    }

    fn on(channel: &str, payload: &str) -> Notification {
        Notification {
            pid: 1,
            channel: channel.into(),
            payload: payload.into(),
        }
    }

    fn payloads(m: &Mailbox) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(d) = m.try_pop() {
            got.push(match d {
                Delivery::Notification(n) => n.payload.clone(),
                Delivery::Encoded(b) => {
                    let text = String::from_utf8_lossy(&b[9..]).into_owned();
                    text.split('\0').nth(1).unwrap_or_default().to_string()
                }
                Delivery::Notice(s) => s,
            });
        }
        got
    }

    #[test]
    fn a_revoked_channel_loses_what_was_queued_and_gets_nothing_more_until_listened_again() {
        let m = Mailbox::new(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        // Queued while the COMMIT that listened on "b" was in flight.
        assert!(m.push_encoded("a", on("a", "a1").encode(), None));
        assert!(m.push_encoded("b", on("b", "b1").encode(), None));
        assert!(m.push(Arc::new(on("b", "b2")), None));
        // The COMMIT failed.
        m.revoke("b");
        // The sweep may still hold messages routed to it while it listened there.
        round(
            &m,
            &[
                routed(&b, on("b", "b3").encode(), Some(3)),
                routed(&a, on("a", "a2").encode(), None),
            ],
        );
        round(&m, &[routed(&b, on("b", "b4").encode(), Some(4))]);
        assert!(m.push_encoded("b", on("b", "b5").encode(), None));
        assert_eq!(payloads(&m), ["a1", "a2"]);
        // Listened to again (and committed) when the stream had published 5 events, before the
        // sweep came back to this connection: what was committed before that LISTEN is still
        // held back; what was committed after it goes out.
        m.listen("b", Some(5));
        round(
            &m,
            &[
                routed(&b, on("b", "b4").encode(), Some(4)),
                routed(&a, on("a", "a3").encode(), None),
            ],
        );
        round(&m, &[routed(&b, on("b", "b6").encode(), Some(6))]);
        round(&m, &[routed(&b, on("b", "b7").encode(), Some(7))]);
        assert_eq!(payloads(&m), ["a3", "b6", "b7"]);
    }

    #[test]
    fn a_new_listener_gets_nothing_committed_before_its_listen() {
        let m = Mailbox::new(10);
        let (a, b, q): (Arc<str>, Arc<str>, Arc<str>) =
            (Arc::from("a"), Arc::from("b"), Arc::from("quiet"));
        // LISTEN b and quiet when the stream had published 5 events; a was listened to before.
        m.listen("b", Some(5));
        m.listen("quiet", Some(5));
        // The hub, behind, routes events 4 and 5 after those LISTENs.
        round(
            &m,
            &[
                routed(&b, on("b", "b4").encode(), Some(4)),
                routed(&a, on("a", "a4").encode(), Some(4)),
                routed(&b, on("b", "b5").encode(), Some(5)),
            ],
        );
        assert_eq!(m.state.lock().fences.len(), 2);
        // Event 6, on another channel, lifts every fence: the quiet channel's too.
        round(&m, &[routed(&a, on("a", "a6").encode(), Some(6))]);
        assert!(m.state.lock().fences.is_empty());
        round(
            &m,
            &[
                routed(&b, on("b", "b7").encode(), Some(7)),
                routed(&q, on("quiet", "q7").encode(), Some(7)),
            ],
        );
        assert_eq!(payloads(&m), ["a4", "a6", "b7", "q7"]);
    }

    #[tokio::test]
    async fn a_direct_round_leaves_out_revoked_channels() {
        use tokio::io::AsyncReadExt;
        let (server, mut client) = pair().await;
        let m = Mailbox::new(100);
        m.attach(Arc::clone(&server));
        m.revoke("b");
        m.enable_direct();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let a1 = on("a", "a1").encode();
        round(&m, &[routed(&b, on("b", "b1").encode(), None)]);
        round(
            &m,
            &[
                routed(&a, a1.clone(), None),
                routed(&b, on("b", "b2").encode(), None),
            ],
        );
        assert_eq!(m.pending(), (0, false));
        let mut got = vec![0u8; a1.len()];
        client.read_exact(&mut got).await.expect("reads");
        assert_eq!(got, a1);
        // Closed on the server side, the client reads to the end: nothing else was written.
        m.detach();
        drop(server);
        let mut rest = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.read_to_end(&mut rest),
        )
        .await
        .expect("the server side closes")
        .expect("reads to the end");
        assert!(rest.is_empty(), "nothing on the revoked channel: {rest:?}");
    }

    async fn pair() -> (Arc<TcpStream>, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = l.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), l.accept());
        let server = server.expect("accepts").0;
        // Direct writes need the socket's writability to be known, as in a served connection.
        server.writable().await.expect("writable");
        (Arc::new(server), client.expect("connects"))
    }

    #[tokio::test]
    async fn direct_writes_one_round_in_one_write_and_partial_tails_go_first() {
        use tokio::io::AsyncReadExt;
        let (server, mut client) = pair().await;
        let m = Mailbox::new(1_000_000);
        m.attach(Arc::clone(&server));
        m.enable_direct();
        let ch: Arc<str> = Arc::from("q");
        round(
            &m,
            &[
                routed(&ch, Bytes::from_static(b"ab"), Some(1)),
                routed(&ch, Bytes::from_static(b"cd"), Some(2)),
            ],
        );
        assert_eq!(m.pending(), (0, false));
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.expect("reads");
        assert_eq!(&got, b"abcd");
        // A client that does not read: the socket fills, the rest is left to the connection.
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        let mut rounds = 0;
        while m.is_direct() {
            round(&m, &[routed(&ch, big.clone(), None)]);
            rounds += 1;
            assert!(rounds < 100_000, "the socket never filled");
        }
        let first = m.try_pop().expect("something waits for the connection");
        // Either the tail of a message written in part, or (WouldBlock at once) the whole one.
        assert!(matches!(first, Delivery::Encoded(b) if !b.is_empty() && b.len() <= big.len()));
        // Direct stays off until the connection turns it on again with nothing waiting.
        round(&m, &[routed(&ch, big.clone(), None)]);
        assert!(m.pending().0 >= 1);
        m.detach();
    }
}
