//! Live connections by backend pid: how a CancelRequest finds its session, and how a
//! notification reaches an idle client.
//!
//! ```text
//!   CancelRequest(pid, secret) --> Registry::cancel --> session's CancelHandle::cancel()
//!   tests, admin              --> Registry::notify(pid) --> Mailbox --> connection loop
//!                                                   (sent as NotificationResponse when idle)
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pgwire::messages::startup::SecretKey;
use weft_sql::CancelHandle;

pub use crate::push::{Mailbox, Notification, MAILBOX_CAPACITY as NOTIFICATION_QUEUE};

struct Entry {
    secret: SecretKey,
    cancel: CancelHandle,
    mailbox: Arc<Mailbox>,
}

/// All connections that finished startup.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<i32, Entry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connections", &self.conns.lock().len())
            .finish()
    }
}

/// Removes its connection from the registry when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    pid: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.conns.lock().remove(&self.pid);
    }
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Registers a connection; returns the guard that unregisters it and its mailbox.
    pub fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: SecretKey,
        cancel: CancelHandle,
    ) -> (Registration, Arc<Mailbox>) {
        let mailbox = Mailbox::new(NOTIFICATION_QUEUE);
        self.conns.lock().insert(
            pid,
            Entry {
                secret,
                cancel,
                mailbox: Arc::clone(&mailbox),
            },
        );
        let registration = Registration {
            registry: Arc::clone(self),
            pid,
        };
        (registration, mailbox)
    }

    /// Cancels the running statement of `pid` if `secret` matches; false if nothing matched.
    pub fn cancel(&self, pid: i32, secret: &SecretKey) -> bool {
        let handle = {
            let conns = self.conns.lock();
            match conns.get(&pid) {
                Some(entry) if same_secret(&entry.secret, secret) => entry.cancel.clone(),
                _ => return false,
            }
        };
        handle.cancel();
        true
    }

    /// The queue that delivers notifications to `pid`'s client.
    pub fn mailbox(&self, pid: i32) -> Option<Arc<Mailbox>> {
        self.conns.lock().get(&pid).map(|e| Arc::clone(&e.mailbox))
    }

    /// Queues a notification for `pid`; false if the connection is gone or its queue is full.
    pub fn notify(&self, pid: i32, notification: Notification) -> bool {
        self.mailbox(pid)
            .is_some_and(|m| m.push(Arc::new(notification), None))
    }

    /// Backend pids of all registered connections.
    pub fn pids(&self) -> Vec<i32> {
        self.conns.lock().keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Compares secrets without an early exit, so timing does not reveal a prefix.
fn same_secret(a: &SecretKey, b: &SecretKey) -> bool {
    let (a, b) = (a.to_bytes(), b.to_bytes());
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value() {
        assert!(same_secret(
            &SecretKey::I32(7),
            &SecretKey::Bytes(7i32.to_be_bytes().to_vec().into())
        ));
        assert!(!same_secret(&SecretKey::I32(7), &SecretKey::I32(8)));
        assert!(!same_secret(
            &SecretKey::I32(7),
            &SecretKey::Bytes(vec![0; 32].into())
        ));
    }
}
