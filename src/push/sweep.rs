//! The fan-out's deliveries on their way to the listening connections: a sweep over them.
//!
//! ```text
//!   deliver(channel, targets, generation, wire)   (routing order = commit order)
//!     --> the log: each message once, numbered
//!     --> each target enrolled once per step and channel, and again when the listeners'
//!         generation changed: (connection, span of numbers on that channel); one that is
//!         no longer among them has its span closed
//!   visit(n): the next n enrolled connections, in a cycle; each gets, in one write, every
//!     message of its channels logged since it was last visited
//!     (Mailbox::deliver_round: one write to an idle socket, else its bounded queue)
//! ```
//!
//! The hub routes the events committed meanwhile between every few visits, so a change waits
//! at most one cycle before its listener's turn. Rounds written out back to back, each with
//! what was routed before it began, make a change wait for the round in progress and then
//! for its listener's turn in the next: two. Nothing here is per message and per listener at
//! once except the copy into a write: n messages to L listeners of one channel cost n log
//! appends, one enrolment per listener per step and L writes, not n x L.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::mailbox::{Mailbox, Routed};

/// A connection's listening on one channel, as the sweep saw it: messages numbered
/// `from..until` on `channel` are for it.
struct Span {
    channel: Arc<str>,
    from: u64,
    /// `u64::MAX` while it still listens.
    until: u64,
    /// The last enrolment of its channel's listeners that had it among them.
    mark: u64,
}

impl Span {
    fn open(&self) -> bool {
        self.until == u64::MAX
    }
}

/// A connection with messages logged since its last write.
struct Behind {
    mailbox: Arc<Mailbox>,
    /// Number of the first message it has not been given.
    cursor: u64,
    spans: Vec<Span>,
    /// Enrolled for a message since its last turn: it stays for the next cycle. One that
    /// wants none of what is logged after its turn leaves at the end of this one.
    due: bool,
}

impl Behind {
    fn wants(&self, number: u64, r: &Routed) -> bool {
        self.spans.iter().any(|s| {
            (s.from..s.until).contains(&number)
                && (Arc::ptr_eq(&s.channel, &r.channel) || s.channel == r.channel)
        })
    }
}

/// What the last visit wrote, reused by the next connection that wants the same messages
/// (the common case: the listeners of one channel, visited one after another).
struct LastWrite {
    channel: Arc<str>,
    cursor: u64,
    head: u64,
    wire: Bytes,
    items: Vec<usize>,
}

#[derive(Default)]
pub(super) struct Sweep {
    /// Messages not yet given to every connection enrolled for them; `log[0]` is number `base`.
    log: VecDeque<Routed>,
    base: u64,
    /// Enrolled connections, in visiting order; `Mailbox::sweep_slot` is the index here.
    behind: Vec<Behind>,
    /// The next connection to visit in the current cycle.
    next: usize,
    /// Enrolments so far (one per channel per step, and again when the listeners changed).
    mark: u64,
    /// Channel -> the generation of the listeners (`Hub`'s) enrolled in the current step.
    enrolled: HashMap<Arc<str>, u64>,
    /// Channel -> open spans on it among `behind`.
    members: HashMap<Arc<str>, usize>,
    last: Option<LastWrite>,
    /// The change stream's number of the event being routed (`CommitEvent::seq`), None for
    /// records read back from the change log: each message logged carries it.
    event: Option<u64>,
}

impl Sweep {
    /// The messages logged from now on come from the stream's event `event` (see `Routed`).
    pub fn routing(&mut self, event: Option<u64>) {
        self.event = event;
    }

    fn head(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    /// Messages logged and not yet given to every connection enrolled for them.
    pub fn backlog(&self) -> usize {
        self.log.len()
    }

    /// Nothing is waiting to be written.
    pub fn is_idle(&self) -> bool {
        self.behind.is_empty()
    }

    /// Logs one message on `channel` for its listening connections `targets` (looked up by
    /// the caller, as of the listeners' `generation`; enrolled at the channel's first message
    /// of the step, and again if the listeners changed since). A connection that no longer
    /// listens there gets nothing from here on.
    pub fn deliver(
        &mut self,
        channel: &Arc<str>,
        targets: &HashMap<i32, Arc<Mailbox>>,
        generation: u64,
        wire: Bytes,
        position: Option<u64>,
    ) {
        let number = self.head();
        if self.enrolled.get(channel) != Some(&generation) {
            self.enrolled.insert(Arc::clone(channel), generation);
            self.mark += 1;
            for m in targets.values() {
                self.enrol(m, channel, number);
            }
            if self.members.get(channel).copied().unwrap_or(0) > targets.len() {
                self.close_stale(channel, number);
            }
        }
        self.log.push_back(Routed {
            channel: Arc::clone(channel),
            wire,
            position,
            event: self.event,
        });
    }

    fn enrol(&mut self, m: &Arc<Mailbox>, channel: &Arc<str>, number: u64) {
        let mark = self.mark;
        let span = || Span {
            channel: Arc::clone(channel),
            from: number,
            until: u64::MAX,
            mark,
        };
        let slot = m.sweep_slot();
        match self
            .behind
            .get_mut(slot)
            .filter(|b| Arc::ptr_eq(&b.mailbox, m))
        {
            Some(b) => {
                b.due = true;
                if let Some(s) = b
                    .spans
                    .iter_mut()
                    .find(|s| s.open() && s.channel == *channel)
                {
                    s.mark = mark;
                    return;
                }
                b.spans.push(span());
            }
            None => {
                m.set_sweep_slot(self.behind.len());
                self.behind.push(Behind {
                    mailbox: Arc::clone(m),
                    cursor: number,
                    spans: vec![span()],
                    due: true,
                });
            }
        }
        *self.members.entry(Arc::clone(channel)).or_default() += 1;
    }

    /// Connections enrolled on `channel` that were not among its listeners just now (they
    /// unlistened, or disconnected): their span ends before message `number`.
    fn close_stale(&mut self, channel: &Arc<str>, number: u64) {
        let mut closed = 0;
        for b in &mut self.behind {
            for s in &mut b.spans {
                if s.open() && s.mark != self.mark && s.channel == *channel {
                    s.until = number;
                    closed += 1;
                }
            }
        }
        self.release(channel, closed);
    }

    fn release(&mut self, channel: &Arc<str>, n: usize) {
        if let Some(count) = self.members.get_mut(channel) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.members.remove(channel);
            }
        }
    }

    /// Writes to the next `n` enrolled connections (fewer at the end of a cycle).
    pub fn visit(&mut self, n: usize) {
        self.enrolled.clear();
        let head = self.head();
        let end = self.next.saturating_add(n).min(self.behind.len());
        for i in self.next..end {
            if self.behind[i].due {
                let (wire, items) = self.messages_for(i, head);
                if !items.is_empty() {
                    let items: Vec<&Routed> = items.iter().map(|&k| &self.log[k]).collect();
                    self.behind[i].mailbox.deliver_round(&wire, &items);
                }
            }
            let b = &mut self.behind[i];
            b.due = false;
            b.cursor = head;
            b.spans.retain(|s| s.until > head);
        }
        self.next = end;
        if self.next >= self.behind.len() {
            self.end_cycle();
        }
    }

    /// The messages for `behind[i]` since its cursor, as one buffer and as indexes into the log.
    fn messages_for(&mut self, i: usize, head: u64) -> (Bytes, Vec<usize>) {
        let b = &self.behind[i];
        let single = match b.spans.as_slice() {
            [s] if s.from <= b.cursor && s.open() => Some(&s.channel),
            _ => None,
        };
        if let (Some(c), Some(last)) = (single, &self.last) {
            if last.cursor == b.cursor && last.head == head && Arc::ptr_eq(&last.channel, c) {
                return (last.wire.clone(), last.items.clone());
            }
        }
        let start = usize::try_from(b.cursor - self.base).unwrap_or(usize::MAX);
        let items: Vec<usize> = (start..self.log.len())
            .filter(|&k| b.wants(self.base + k as u64, &self.log[k]))
            .collect();
        let wire = concat(items.iter().map(|&k| &self.log[k].wire));
        self.last = single.map(|c| LastWrite {
            channel: Arc::clone(c),
            cursor: b.cursor,
            head,
            wire: wire.clone(),
            items: items.clone(),
        });
        (wire, items)
    }

    /// A cycle ended: connections not enrolled for anything since their turn leave the
    /// sweep, and messages every remaining connection has had leave the log.
    fn end_cycle(&mut self) {
        let head = self.head();
        let mut left: Vec<Arc<str>> = Vec::new();
        self.behind.retain(|b| {
            let keep = b.due;
            if !keep {
                b.mailbox.set_sweep_slot(usize::MAX);
                left.extend(
                    b.spans
                        .iter()
                        .filter(|s| s.open())
                        .map(|s| Arc::clone(&s.channel)),
                );
            }
            keep
        });
        for c in &left {
            self.release(c, 1);
        }
        for (i, b) in self.behind.iter().enumerate() {
            b.mailbox.set_sweep_slot(i);
        }
        let oldest = self.behind.iter().map(|b| b.cursor).min().unwrap_or(head);
        while self.base < oldest {
            self.log.pop_front();
            self.base += 1;
        }
        self.next = 0;
        self.last = None;
    }

    /// Writes everything logged to every connection enrolled for it.
    pub fn flush(&mut self) {
        while !self.behind.is_empty() {
            self.visit(usize::MAX);
        }
    }
}

/// The messages as one buffer (no copy for a single one).
fn concat<'a>(mut wires: impl ExactSizeIterator<Item = &'a Bytes>) -> Bytes {
    if wires.len() == 1 {
        return wires.next().cloned().unwrap_or_default();
    }
    let mut b = BytesMut::new();
    for w in wires {
        b.extend_from_slice(w);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Delivery;

    fn popped(m: &Mailbox) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(d) = m.try_pop() {
            match d {
                Delivery::Encoded(b) => got.extend_from_slice(&b),
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    }

    fn listeners(ms: &[&Arc<Mailbox>]) -> HashMap<i32, Arc<Mailbox>> {
        ms.iter()
            .enumerate()
            .map(|(i, m)| (i as i32, Arc::clone(m)))
            .collect()
    }

    #[test]
    fn each_connection_gets_its_channels_in_routing_order() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let only_a = Mailbox::new(100);
        let both = Mailbox::new(100);
        let only_b = Mailbox::new(100);
        let of_a = listeners(&[&only_a, &both]);
        let of_b = listeners(&[&both, &only_b]);
        let mut sweep = Sweep::default();
        for (i, ch) in [&a, &b, &a, &b, &b].into_iter().enumerate() {
            let targets = if Arc::ptr_eq(ch, &a) { &of_a } else { &of_b };
            sweep.deliver(ch, targets, 0, Bytes::from(vec![i as u8]), None);
        }
        sweep.flush();
        assert!(sweep.is_idle());
        assert_eq!(popped(&only_a), [0, 2]);
        assert_eq!(popped(&both), [0, 1, 2, 3, 4]);
        assert_eq!(popped(&only_b), [1, 3, 4]);
        // Nothing is written twice.
        sweep.deliver(&a, &of_a, 0, Bytes::from_static(&[9]), None);
        sweep.flush();
        assert_eq!(popped(&both), [9]);
        assert!(popped(&only_b).is_empty());
        assert!(sweep.log.is_empty());
    }

    #[test]
    fn messages_routed_mid_cycle_reach_the_rest_of_it_and_the_rest_in_the_next() {
        let ch: Arc<str> = Arc::from("c");
        let ms: Vec<Arc<Mailbox>> = (0..4).map(|_| Mailbox::new(100)).collect();
        let all = listeners(&ms.iter().collect::<Vec<_>>());
        let mut sweep = Sweep::default();
        sweep.deliver(&ch, &all, 0, Bytes::from_static(&[1]), None);
        sweep.visit(2);
        let (visited, rest): (Vec<_>, Vec<_>) = ms.iter().partition(|m| !popped(m).is_empty());
        assert_eq!((visited.len(), rest.len()), (2, 2));
        // A message routed now goes with the first to those not yet visited...
        sweep.deliver(&ch, &all, 0, Bytes::from_static(&[2]), None);
        sweep.visit(2);
        for m in &rest {
            assert_eq!(popped(m), [1, 2]);
        }
        // ...and alone to the others, in the next cycle.
        assert!(!sweep.is_idle());
        sweep.visit(2);
        for m in &visited {
            assert_eq!(popped(m), [2]);
        }
        assert!(sweep.is_idle());
        assert!(sweep.log.is_empty());
    }

    #[test]
    fn a_connection_that_stopped_listening_gets_nothing_routed_after() {
        let ch: Arc<str> = Arc::from("c");
        let stays = Mailbox::new(100);
        let leaves = Mailbox::new(100);
        let both = listeners(&[&stays, &leaves]);
        let one = listeners(&[&stays]);
        // Neither visited yet when `leaves` unlistens.
        let mut sweep = Sweep::default();
        sweep.deliver(&ch, &both, 0, Bytes::from_static(&[1]), None);
        sweep.visit(0);
        sweep.deliver(&ch, &one, 0, Bytes::from_static(&[2]), None);
        sweep.flush();
        assert_eq!(popped(&stays), [1, 2]);
        assert_eq!(popped(&leaves), [1]);
        assert!(sweep.members.is_empty());
        // Under load: one of them is still in the sweep from the last cycle when `leaves`
        // unlistens (whichever was visited first; the totals are the same either way).
        sweep.deliver(&ch, &both, 0, Bytes::from_static(&[1]), None);
        sweep.visit(1);
        sweep.deliver(&ch, &both, 0, Bytes::from_static(&[2]), None);
        sweep.visit(1);
        assert!(!sweep.is_idle());
        sweep.deliver(&ch, &one, 0, Bytes::from_static(&[3]), None);
        sweep.flush();
        assert_eq!(popped(&stays), [1, 2, 3]);
        assert_eq!(popped(&leaves), [1, 2]);
        assert!(sweep.members.is_empty());
        assert!(sweep.log.is_empty());
    }

    #[test]
    fn a_connection_leaves_the_sweep_when_nothing_more_is_for_it() {
        let (quiet, busy): (Arc<str>, Arc<str>) = (Arc::from("quiet"), Arc::from("busy"));
        let idle: Vec<Arc<Mailbox>> = (0..40).map(|_| Mailbox::new(100)).collect();
        let active = Mailbox::new(10_000);
        let mut sweep = Sweep::default();
        sweep.deliver(
            &quiet,
            &listeners(&idle.iter().collect::<Vec<_>>()),
            0,
            Bytes::from_static(&[0]),
            None,
        );
        // Steady traffic on another channel, routed between every 8 writes.
        for i in 1..=50u8 {
            sweep.deliver(&busy, &listeners(&[&active]), 0, Bytes::from(vec![i]), None);
            sweep.visit(8);
        }
        assert!(
            sweep
                .behind
                .iter()
                .all(|b| Arc::ptr_eq(&b.mailbox, &active)),
            "only the busy channel's listener may stay"
        );
        sweep.flush();
        for m in &idle {
            assert_eq!(popped(m), [0]);
        }
        assert_eq!(popped(&active), (1..=50).collect::<Vec<u8>>());
        assert!(sweep.log.is_empty());
    }

    #[test]
    fn listeners_that_change_within_a_step_are_read_again() {
        let ch: Arc<str> = Arc::from("c");
        let first = Mailbox::new(100);
        let joins = Mailbox::new(100);
        let mut sweep = Sweep::default();
        // One step; between its two messages `joins` LISTENs (generation 1 -> 2)...
        sweep.deliver(
            &ch,
            &listeners(&[&first]),
            1,
            Bytes::from_static(&[1]),
            None,
        );
        sweep.deliver(
            &ch,
            &listeners(&[&first, &joins]),
            2,
            Bytes::from_static(&[2]),
            None,
        );
        // ...and `first` UNLISTENs (generation 3).
        sweep.deliver(
            &ch,
            &listeners(&[&joins]),
            3,
            Bytes::from_static(&[3]),
            None,
        );
        sweep.flush();
        assert_eq!(popped(&first), [1, 2]);
        assert_eq!(popped(&joins), [2, 3]);
        assert!(sweep.members.is_empty());
    }

    #[test]
    fn a_later_listener_gets_only_what_was_routed_after_it_joined() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = Mailbox::new(100);
        let later = Mailbox::new(100);
        let mut sweep = Sweep::default();
        sweep.deliver(
            &a,
            &listeners(&[&first, &later]),
            0,
            Bytes::from_static(&[1]),
            None,
        );
        sweep.deliver(&b, &listeners(&[&first]), 0, Bytes::from_static(&[2]), None);
        sweep.visit(0);
        // `later` listens on b from here on; it is still behind on a.
        sweep.deliver(
            &b,
            &listeners(&[&first, &later]),
            0,
            Bytes::from_static(&[3]),
            None,
        );
        sweep.flush();
        assert_eq!(popped(&first), [1, 2, 3]);
        assert_eq!(popped(&later), [1, 3]);
    }
}
