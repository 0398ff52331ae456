//! Advisory locks: `pg_advisory_lock` and its family, as PostgreSQL has them. Migration tools
//! take one before they migrate (Rails, Prisma, golang-migrate, Flyway), so two deploys do not
//! run the same migration at once.
//!
//! A lock is named by a bigint, or by two ints (a separate key space, as in PostgreSQL), and is
//! held exclusive or shared, at session level (until unlocked or the session ends; taken again by
//! its holder, it must be unlocked as many times) or at transaction level (until the transaction
//! ends). A waiter sleeps until a release, and its statement can be cancelled or time out; a wait
//! that would close a cycle of waiters fails at once with 40P01.
//!
//! The locks live in the node's memory: on a cluster, sessions on the same node exclude each other
//! and sessions on different nodes do not (README, "What does not work yet").
//!
//! `pg_sleep` is here too: like a lock wait, it sleeps until its time or the statement's cancel.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ScalarUDF, Signature, TypeSignature, Volatility};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{to_df, Error, Result};
use crate::functions::{block_on, rows_to_array, scalar_rows, udf};
use crate::session::CancelHandle;
use crate::shared::SessionShared;

/// A lock's name. Advisory locks are named by one bigint, or by two ints (`pair`), which
/// PostgreSQL keeps apart; the row locks of `SELECT … FOR UPDATE` (`row_lock.rs`) by the row's
/// storage key, so both kinds share one waits-for graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Advisory { pair: bool, value: i64 },
    Row(Arc<[u8]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) enum Mode {
    Exclusive,
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Session,
    Transaction,
}

/// How many times one session holds one lock, by mode and scope.
#[derive(Debug, Default, Clone, Copy)]
struct Holds {
    session: [u32; 2],
    xact: [u32; 2],
}

impl Holds {
    fn slot(&mut self, mode: Mode, scope: Scope) -> &mut u32 {
        let m = mode as usize;
        match scope {
            Scope::Session => &mut self.session[m],
            Scope::Transaction => &mut self.xact[m],
        }
    }

    fn holds(&self, mode: Mode) -> bool {
        let m = mode as usize;
        self.session[m] + self.xact[m] > 0
    }

    fn is_empty(&self) -> bool {
        self.session.iter().chain(&self.xact).all(|n| *n == 0)
    }
}

/// The sessions holding one lock. Mostly one: a list, since an UPDATE of a million rows holds a
/// million of these until it commits.
#[derive(Debug, Default)]
struct Holders(Vec<(u64, Holds)>);

impl Holders {
    fn get_mut(&mut self, id: u64) -> Option<&mut Holds> {
        self.0
            .iter_mut()
            .find(|(h, _)| *h == id)
            .map(|(_, holds)| holds)
    }

    fn entry(&mut self, id: u64) -> &mut Holds {
        match self.0.iter().position(|(h, _)| *h == id) {
            Some(i) => &mut self.0[i].1,
            None => {
                self.0.push((id, Holds::default()));
                &mut self.0.last_mut().expect("just pushed").1
            }
        }
    }

    fn remove(&mut self, id: u64) {
        self.0.retain(|(h, _)| *h != id);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Default)]
struct State {
    /// Each lock held, with its holders.
    locks: HashMap<Key, Holders>,
    /// The keys each session holds at transaction level, so that the end of a transaction
    /// releases its own locks without a walk over every session's (a key may be listed twice).
    xact_keys: HashMap<u64, Vec<Key>>,
    /// The open sessions, each with the lock it waits for, if any.
    sessions: HashMap<u64, Option<(Key, Mode)>>,
    next_id: u64,
}

impl State {
    /// The other sessions whose holds on `key` keep `id` from taking it in `mode`.
    fn blockers(&self, id: u64, key: &Key, mode: Mode) -> Vec<u64> {
        let Some(holders) = self.locks.get(key) else {
            return Vec::new();
        };
        holders
            .0
            .iter()
            .filter(|(h, holds)| {
                *h != id
                    && match mode {
                        Mode::Exclusive => !holds.is_empty(),
                        Mode::Shared => holds.holds(Mode::Exclusive),
                    }
            })
            .map(|(h, _)| *h)
            .collect()
    }

    /// Whether `id` waiting for `key` would close a cycle: a session it waits for waits, directly
    /// or through others, for a lock `id` holds.
    fn closes_cycle(&self, id: u64, key: &Key, mode: Mode) -> bool {
        let mut seen = HashSet::new();
        let mut next = self.blockers(id, key, mode);
        while let Some(s) = next.pop() {
            if s == id {
                return true;
            }
            if !seen.insert(s) {
                continue;
            }
            if let Some(Some((k, m))) = self.sessions.get(&s) {
                next.extend(self.blockers(s, k, *m));
            }
        }
        false
    }

    fn grant(&mut self, id: u64, key: Key, mode: Mode, scope: Scope) {
        if scope == Scope::Transaction {
            let holds = self.locks.get_mut(&key).and_then(|h| h.get_mut(id));
            if holds.is_none_or(|h| h.xact == [0; 2]) {
                self.xact_keys.entry(id).or_default().push(key.clone());
            }
        }
        *self
            .locks
            .entry(key)
            .or_default()
            .entry(id)
            .slot(mode, scope) += 1;
    }

    /// Drops `id`'s transaction-level holds; true if any lock was released.
    fn release_transaction(&mut self, id: u64) -> bool {
        let mut released = false;
        for key in self.xact_keys.remove(&id).unwrap_or_default() {
            let Some(holders) = self.locks.get_mut(&key) else {
                continue;
            };
            let Some(holds) = holders.get_mut(id) else {
                continue;
            };
            holds.xact = [0; 2];
            if holds.is_empty() {
                holders.remove(id);
                released = true;
                if holders.is_empty() {
                    self.locks.remove(&key);
                }
            }
        }
        released
    }

    /// Drops `id`'s holds that `keep` does not keep; true if any lock was released.
    fn release_where(&mut self, id: u64, keep: impl Fn(&mut Holds)) -> bool {
        let mut released = false;
        self.locks.retain(|_, holders| {
            if let Some(holds) = holders.get_mut(id) {
                keep(holds);
                if holds.is_empty() {
                    holders.remove(id);
                    released = true;
                }
            }
            !holders.is_empty()
        });
        released
    }
}

/// The advisory locks of a node, shared by its sessions.
#[derive(Default)]
pub(crate) struct AdvisoryLocks {
    state: Mutex<State>,
    /// Woken whenever a lock is released, for the waiters to try again.
    released: Notify,
}

impl AdvisoryLocks {
    /// A new session's id; it holds nothing until it takes a lock.
    pub fn register(&self) -> u64 {
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.sessions.insert(id, None);
        id
    }

    /// The session ended: everything it held is released, and it can take nothing more.
    pub fn unregister(&self, id: u64) {
        let mut state = self.state.lock();
        state.sessions.remove(&id);
        state.xact_keys.remove(&id);
        if state.release_where(id, |h| *h = Holds::default()) {
            self.released.notify_waiters();
        }
    }

    /// Takes the lock if no other session's hold conflicts; false if one does.
    pub fn try_acquire(&self, id: u64, key: Key, mode: Mode, scope: Scope) -> Result<bool> {
        let mut state = self.state.lock();
        if !state.sessions.contains_key(&id) {
            return Err(Error::QueryCanceled);
        }
        if !state.blockers(id, &key, mode).is_empty() {
            return Ok(false);
        }
        state.grant(id, key, mode, scope);
        Ok(true)
    }

    /// Takes the lock, waiting while another session's hold conflicts; fails on cancel, statement
    /// timeout, or with 40P01 if waiting would deadlock.
    pub async fn acquire(
        &self,
        id: u64,
        key: Key,
        mode: Mode,
        scope: Scope,
        cancel: &CancelHandle,
    ) -> Result<()> {
        loop {
            // A cancelled wait takes nothing, even if the lock was released at the same moment.
            if let Err(e) = cancel.check() {
                self.stop_waiting(id);
                return Err(e);
            }
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut state = self.state.lock();
                if !state.sessions.contains_key(&id) {
                    return Err(Error::QueryCanceled);
                }
                if state.blockers(id, &key, mode).is_empty() {
                    state.sessions.insert(id, None);
                    state.grant(id, key.clone(), mode, scope);
                    return Ok(());
                }
                if state.closes_cycle(id, &key, mode) {
                    state.sessions.insert(id, None);
                    return Err(Error::Data {
                        code: "40P01",
                        message: "deadlock detected".into(),
                    });
                }
                state.sessions.insert(id, Some((key.clone(), mode)));
            }
            tokio::select! {
                biased;
                e = cancel.cancelled() => {
                    self.stop_waiting(id);
                    return Err(e);
                }
                _ = &mut released => {}
            }
        }
    }

    fn stop_waiting(&self, id: u64) {
        if let Some(w) = self.state.lock().sessions.get_mut(&id) {
            *w = None;
        }
    }

    /// Releases one hold of the lock in `mode` and `scope`; false if the session held none.
    pub fn release(&self, id: u64, key: &Key, mode: Mode, scope: Scope) -> bool {
        let mut state = self.state.lock();
        let Some(holders) = state.locks.get_mut(key) else {
            return false;
        };
        let Some(holds) = holders.get_mut(id) else {
            return false;
        };
        let n = holds.slot(mode, scope);
        if *n == 0 {
            return false;
        }
        *n -= 1;
        if holds.is_empty() {
            holders.remove(id);
            if holders.is_empty() {
                state.locks.remove(key);
            }
            self.released.notify_waiters();
        }
        true
    }

    /// Releases every session-level lock of the session (`pg_advisory_unlock_all`).
    pub fn release_session(&self, id: u64) {
        if self.state.lock().release_where(id, |h| h.session = [0; 2]) {
            self.released.notify_waiters();
        }
    }

    /// Releases every transaction-level lock of the session: its transaction ended.
    pub fn release_transaction(&self, id: u64) {
        if self.state.lock().release_transaction(id) {
            self.released.notify_waiters();
        }
    }
}

/// What a function of the family does.
#[derive(Clone, Copy)]
enum Op {
    Lock { wait: bool, scope: Scope },
    Unlock,
}

const FAMILY: [(&str, Op, Mode); 10] = [
    (
        "pg_advisory_lock",
        Op::Lock {
            wait: true,
            scope: Scope::Session,
        },
        Mode::Exclusive,
    ),
    (
        "pg_advisory_lock_shared",
        Op::Lock {
            wait: true,
            scope: Scope::Session,
        },
        Mode::Shared,
    ),
    (
        "pg_try_advisory_lock",
        Op::Lock {
            wait: false,
            scope: Scope::Session,
        },
        Mode::Exclusive,
    ),
    (
        "pg_try_advisory_lock_shared",
        Op::Lock {
            wait: false,
            scope: Scope::Session,
        },
        Mode::Shared,
    ),
    (
        "pg_advisory_xact_lock",
        Op::Lock {
            wait: true,
            scope: Scope::Transaction,
        },
        Mode::Exclusive,
    ),
    (
        "pg_advisory_xact_lock_shared",
        Op::Lock {
            wait: true,
            scope: Scope::Transaction,
        },
        Mode::Shared,
    ),
    (
        "pg_try_advisory_xact_lock",
        Op::Lock {
            wait: false,
            scope: Scope::Transaction,
        },
        Mode::Exclusive,
    ),
    (
        "pg_try_advisory_xact_lock_shared",
        Op::Lock {
            wait: false,
            scope: Scope::Transaction,
        },
        Mode::Shared,
    ),
    ("pg_advisory_unlock", Op::Unlock, Mode::Exclusive),
    ("pg_advisory_unlock_shared", Op::Unlock, Mode::Shared),
];

/// Whether a statement's text may call one of these functions (its rows are then produced inside
/// its transaction, so that a transaction-level lock is taken before the transaction ends).
pub(crate) fn mentioned(sql: &[u8]) -> bool {
    sql.windows(8).any(|w| w.eq_ignore_ascii_case(b"advisory"))
}

/// The key of a call's arguments: `(bigint)` or `(int, int)`; None for a NULL argument (the
/// functions are strict).
fn key_of(args: &[ScalarValue]) -> Result<Option<Key>> {
    let int = |v: &ScalarValue| -> Result<Option<i64>> {
        match v.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(n)) => Ok(n),
            _ => Err(Error::internal("advisory lock key is not an integer")),
        }
    };
    match args {
        [k] => Ok(int(k)?.map(|value| Key::Advisory { pair: false, value })),
        [a, b] => {
            let (Some(a), Some(b)) = (int(a)?, int(b)?) else {
                return Ok(None);
            };
            let (Ok(a), Ok(b)) = (i32::try_from(a), i32::try_from(b)) else {
                return Err(Error::NumericOutOfRange {
                    message: "integer out of range".into(),
                });
            };
            let value = (i64::from(a) << 32) | i64::from(b as u32);
            Ok(Some(Key::Advisory { pair: true, value }))
        }
        _ => Err(Error::internal(
            "advisory lock functions take one or two keys",
        )),
    }
}

fn call(shared: &SessionShared, op: Op, mode: Mode, key: Key) -> Result<ScalarValue> {
    let (locks, id) = (&shared.advisory, shared.advisory_id);
    match op {
        Op::Lock { wait: false, scope } => {
            let got = locks.try_acquire(id, key, mode, scope)?;
            if got && scope == Scope::Transaction {
                shared.xact_advisory.store(true, Ordering::Release);
            }
            Ok(ScalarValue::Boolean(Some(got)))
        }
        Op::Lock { wait: true, scope } => {
            block_on(locks.acquire(id, key, mode, scope, &shared.cancel))??;
            if scope == Scope::Transaction {
                shared.xact_advisory.store(true, Ordering::Release);
            }
            Ok(ScalarValue::Utf8(Some(String::new())))
        }
        Op::Unlock => {
            let released = locks.release(id, &key, mode, Scope::Session);
            if !released {
                let kind = match mode {
                    Mode::Exclusive => "ExclusiveLock",
                    Mode::Shared => "ShareLock",
                };
                shared.push_warning(format!("you don't own a lock of type {kind}"));
            }
            Ok(ScalarValue::Boolean(Some(released)))
        }
    }
}

/// `pg_sleep(seconds)`: waits, or until the statement is cancelled or times out (57014).
fn sleep(cancel: &CancelHandle, secs: f64) -> Result<()> {
    // Nothing to wait for at zero, below or NaN; an infinity waits until cancelled.
    if !(secs > 0.0) {
        return Ok(());
    }
    let wait = std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX);
    block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            e = cancel.cancelled() => Err(e),
        }
    })?
}

/// The functions, bound to a session.
pub(crate) fn udfs(shared: &Arc<SessionShared>) -> Vec<Arc<ScalarUDF>> {
    let keys = || {
        Signature::one_of(
            vec![
                TypeSignature::Uniform(1, vec![DataType::Int64]),
                TypeSignature::Uniform(2, vec![DataType::Int64]),
            ],
            Volatility::Volatile,
        )
    };
    let mut fns: Vec<Arc<ScalarUDF>> = FAMILY
        .iter()
        .map(|&(name, op, mode)| {
            let ret = match op {
                Op::Lock { wait: true, .. } => DataType::Utf8,
                _ => DataType::Boolean,
            };
            let shared = Arc::clone(shared);
            udf(
                name,
                keys(),
                ret.clone(),
                None,
                Arc::new(move |args| {
                    let rows = scalar_rows(args)?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let value = match key_of(&row).map_err(to_df)? {
                            Some(key) => call(&shared, op, mode, key).map_err(to_df)?,
                            None => ScalarValue::try_from(&ret)?,
                        };
                        out.push(value);
                    }
                    rows_to_array(args, out.into_iter())
                }),
            )
        })
        .collect();
    let sleeper = Arc::clone(shared);
    fns.push(udf(
        "pg_sleep",
        Signature::exact(vec![DataType::Float64], Volatility::Volatile),
        DataType::Utf8,
        None,
        Arc::new(move |args| {
            let mut out = Vec::new();
            for row in scalar_rows(args)? {
                out.push(match row.first() {
                    Some(ScalarValue::Float64(Some(secs))) => {
                        sleep(&sleeper.cancel, *secs).map_err(to_df)?;
                        ScalarValue::Utf8(Some(String::new()))
                    }
                    _ => ScalarValue::Utf8(None),
                });
            }
            rows_to_array(args, out)
        }),
    ));
    let all = Arc::clone(shared);
    fns.push(udf(
        "pg_advisory_unlock_all",
        Signature::nullary(Volatility::Volatile),
        DataType::Utf8,
        None,
        Arc::new(move |args| {
            all.advisory.release_session(all.advisory_id);
            let n = args.number_rows.max(1);
            rows_to_array(args, (0..n).map(|_| ScalarValue::Utf8(Some(String::new()))))
        }),
    ));
    fns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(value: i64) -> Key {
        Key::Advisory { pair: false, value }
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let locks = AdvisoryLocks::default();
        let (a, b) = (locks.register(), locks.register());
        assert!(locks
            .try_acquire(a, key(1), Mode::Shared, Scope::Session)
            .unwrap());
        assert!(locks
            .try_acquire(b, key(1), Mode::Shared, Scope::Session)
            .unwrap());
        assert!(!locks
            .try_acquire(b, key(1), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(locks.release(a, &key(1), Mode::Shared, Scope::Session));
        assert!(locks
            .try_acquire(b, key(1), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(!locks
            .try_acquire(a, key(1), Mode::Shared, Scope::Session)
            .unwrap());
        // The pair (0, 1) is another lock than the bigint 1.
        assert!(locks
            .try_acquire(
                a,
                Key::Advisory {
                    pair: true,
                    value: 1
                },
                Mode::Exclusive,
                Scope::Session
            )
            .unwrap());
    }

    #[test]
    fn a_lock_taken_twice_is_released_twice_and_the_session_end_releases_all() {
        let locks = AdvisoryLocks::default();
        let (a, b) = (locks.register(), locks.register());
        assert!(locks
            .try_acquire(a, key(7), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(locks
            .try_acquire(a, key(7), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(locks.release(a, &key(7), Mode::Exclusive, Scope::Session));
        assert!(!locks
            .try_acquire(b, key(7), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(locks.release(a, &key(7), Mode::Exclusive, Scope::Session));
        assert!(!locks.release(a, &key(7), Mode::Exclusive, Scope::Session));
        assert!(locks
            .try_acquire(b, key(7), Mode::Exclusive, Scope::Transaction)
            .unwrap());
        locks.release_session(b);
        assert!(!locks
            .try_acquire(a, key(7), Mode::Shared, Scope::Session)
            .unwrap());
        locks.release_transaction(b);
        assert!(locks
            .try_acquire(a, key(7), Mode::Shared, Scope::Session)
            .unwrap());
        locks.unregister(a);
        assert!(locks
            .try_acquire(b, key(7), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(locks
            .try_acquire(a, key(8), Mode::Exclusive, Scope::Session)
            .is_err());
    }

    #[test]
    fn the_end_of_a_transaction_releases_its_own_transaction_locks_only() {
        let locks = AdvisoryLocks::default();
        let (a, b) = (locks.register(), locks.register());
        let row = |n: u8| Key::Row(Arc::from(&[n][..]));
        let take = |id, k, mode, scope| locks.try_acquire(id, k, mode, scope).unwrap();
        for n in [0, 1, 2, 0] {
            assert!(take(a, row(n), Mode::Exclusive, Scope::Transaction));
        }
        assert!(take(a, key(1), Mode::Exclusive, Scope::Session));
        assert!(take(a, key(1), Mode::Exclusive, Scope::Transaction));
        assert!(take(b, row(5), Mode::Shared, Scope::Transaction));
        locks.release_transaction(a);
        for n in 0..3 {
            assert!(take(b, row(n), Mode::Exclusive, Scope::Transaction));
        }
        // a's session-level hold and b's transaction stay.
        assert!(!take(b, key(1), Mode::Shared, Scope::Session));
        assert!(!take(a, row(5), Mode::Exclusive, Scope::Transaction));
        locks.release_transaction(b);
        locks.release_session(a);
        let state = locks.state.lock();
        assert!(state.locks.is_empty());
        assert!(state.xact_keys.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_gets_the_lock_when_it_is_released_and_a_cycle_is_refused() {
        let locks = Arc::new(AdvisoryLocks::default());
        let (a, b) = (locks.register(), locks.register());
        assert!(locks
            .try_acquire(a, key(1), Mode::Exclusive, Scope::Session)
            .unwrap());
        assert!(locks
            .try_acquire(b, key(2), Mode::Exclusive, Scope::Session)
            .unwrap());
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let cancel = CancelHandle::default();
                locks
                    .acquire(b, key(1), Mode::Exclusive, Scope::Session, &cancel)
                    .await
            })
        };
        // Once b waits for 1, a waiting for 2 would deadlock.
        let cancel = CancelHandle::default();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting = locks.state.lock().sessions.get(&b).cloned().flatten();
            if waiting.is_some() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "b never waited");
            tokio::task::yield_now().await;
        }
        let e = locks
            .acquire(a, key(2), Mode::Exclusive, Scope::Session, &cancel)
            .await
            .unwrap_err();
        assert_eq!(e.sqlstate(), "40P01");
        assert!(locks.release(a, &key(1), Mode::Exclusive, Scope::Session));
        waiter.await.unwrap().unwrap();
        assert!(!locks
            .try_acquire(a, key(1), Mode::Shared, Scope::Session)
            .unwrap());
    }

    #[test]
    fn pair_keys_must_be_ints() {
        let big = ScalarValue::Int64(Some(1 << 40));
        let one = ScalarValue::Int64(Some(1));
        assert_eq!(key_of(&[big, one.clone()]).unwrap_err().sqlstate(), "22003");
        assert_eq!(key_of(&[ScalarValue::Int64(None), one]).unwrap(), None);
    }
}
