//! One fan-out round: the deliveries routed from the commit events the hub took, written out
//! once per listening connection.
//!
//! ```text
//!   deliver(channel, wire) ...   (routing order = commit order)
//!   flush: per channel, its deliveries concatenated once into one buffer
//!            a connection on one channel of the round  --> that shared buffer, as is
//!            a connection on several                   --> its own buffer, in routing order
//!          --> Mailbox::deliver_round (one write to an idle socket, else its bounded queue)
//! ```
//!
//! Nothing here is per delivery and per listener at once: a round of n deliveries to L
//! listeners of one channel costs n appends and L writes, not n x L.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::mailbox::{Mailbox, Routed};

/// A channel that got deliveries in this round, with its listeners as they were at its first.
struct ChannelRound {
    targets: Vec<Arc<Mailbox>>,
    /// Indexes into `Round::log`.
    deliveries: Vec<usize>,
}

/// The deliveries of the current round.
#[derive(Default)]
pub(super) struct Round {
    log: Vec<Routed>,
    channels: Vec<ChannelRound>,
    index: HashMap<Arc<str>, usize>,
}

impl Round {
    /// Adds one delivery on `channel` for its `targets` (the listeners, looked up by the
    /// caller; only read at the channel's first delivery in the round).
    pub fn deliver(
        &mut self,
        channel: &Arc<str>,
        targets: impl FnOnce() -> Vec<Arc<Mailbox>>,
        wire: Bytes,
        position: Option<u64>,
    ) {
        let next = self.channels.len();
        let i = *self.index.entry(Arc::clone(channel)).or_insert(next);
        if i == next {
            self.channels.push(ChannelRound {
                targets: targets(),
                deliveries: Vec::new(),
            });
        }
        self.channels[i].deliveries.push(self.log.len());
        self.log.push(Routed {
            channel: Arc::clone(channel),
            wire,
            position,
        });
    }

    /// Writes the round out: each listening connection once.
    pub fn flush(&mut self) {
        if self.log.is_empty() {
            return;
        }
        // Connections listening on more than one channel of this round get their deliveries
        // merged in routing order; the rest share their channel's buffer.
        let mut several: HashMap<usize, (Arc<Mailbox>, Vec<usize>)> = HashMap::new();
        if self.channels.len() > 1 {
            for (c, ch) in self.channels.iter().enumerate() {
                for m in &ch.targets {
                    several
                        .entry(Arc::as_ptr(m) as usize)
                        .or_insert_with(|| (Arc::clone(m), Vec::new()))
                        .1
                        .push(c);
                }
            }
            several.retain(|_, (_, channels)| channels.len() > 1);
        }
        for ch in &self.channels {
            let items: Vec<&Routed> = ch.deliveries.iter().map(|&i| &self.log[i]).collect();
            let wire = concat(items.iter().map(|r| &r.wire));
            for m in &ch.targets {
                if !several.contains_key(&(Arc::as_ptr(m) as usize)) {
                    m.deliver_round(&wire, &items);
                }
            }
        }
        for (m, channels) in several.into_values() {
            let items: Vec<&Routed> = self
                .log
                .iter()
                .filter(|r| {
                    channels
                        .iter()
                        .any(|&c| self.index.get(&r.channel) == Some(&c))
                })
                .collect();
            let wire = concat(items.iter().map(|r| &r.wire));
            m.deliver_round(&wire, &items);
        }
        self.log.clear();
        self.channels.clear();
        self.index.clear();
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

    #[test]
    fn each_connection_gets_its_channels_in_routing_order() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let only_a = Mailbox::new(100);
        let both = Mailbox::new(100);
        let only_b = Mailbox::new(100);
        let of_a = vec![Arc::clone(&only_a), Arc::clone(&both)];
        let of_b = vec![Arc::clone(&both), Arc::clone(&only_b)];
        let mut round = Round::default();
        for (i, ch) in [&a, &b, &a, &b, &b].into_iter().enumerate() {
            let targets = if Arc::ptr_eq(ch, &a) { &of_a } else { &of_b };
            round.deliver(ch, || targets.clone(), Bytes::from(vec![i as u8]), None);
        }
        round.flush();
        assert_eq!(popped(&only_a), [0, 2]);
        assert_eq!(popped(&both), [0, 1, 2, 3, 4]);
        assert_eq!(popped(&only_b), [1, 3, 4]);
        // The next round starts empty.
        round.deliver(&a, || of_a.clone(), Bytes::from_static(&[9]), None);
        round.flush();
        assert_eq!(popped(&both), [9]);
        assert!(popped(&only_b).is_empty());
    }
}
