//! Request ids, and which of them belong to calls still open.
//!
//! Each call of a connection gets the next id. The server keeps the answer
//! of a mutation under its id, so that a retry (with the same id, after a
//! broken connection) is answered instead of applied twice. To let it
//! forget those answers as soon as they are not needed, every request also
//! says below which id this client has every answer (`answered_below`).
//! The ids of calls not over yet (running, or waiting to be retried) are
//! kept here, so that the mark never passes one that may still be retried.

use std::collections::VecDeque;
use std::sync::Mutex;

/// The ids of one connection.
pub(crate) struct RequestIds(Mutex<Ids>);

struct Ids {
    next: u64,
    /// One entry per call since the oldest still open, in the order they
    /// were opened: its first id, and whether it is still open. (A call's
    /// ids are consecutive, so the oldest entry's first id is the mark.)
    calls: VecDeque<(u64, bool)>,
}

/// The ids of one call, open until it is dropped.
pub(crate) struct Open<'a> {
    ids: &'a RequestIds,
    /// The first of the call's ids (a batch has one per operation).
    pub first: u64,
    /// Every call with an id below this one is over.
    pub answered_below: u64,
}

impl RequestIds {
    pub fn new() -> Self {
        RequestIds(Mutex::new(Ids {
            next: 1,
            calls: VecDeque::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ids> {
        // A panic while holding this lock cannot leave the set inconsistent
        // beyond an id left open, which only keeps an answer longer.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens `n` consecutive ids for one call. Taken and marked open under
    /// one lock: a mark worked out meanwhile cannot pass them.
    pub fn open(&self, n: u64) -> Open<'_> {
        let mut ids = self.lock();
        let first = ids.next;
        ids.next += n;
        let answered_below = ids.calls.front().map_or(first, |&(oldest, _)| oldest);
        ids.calls.push_back((first, true));
        Open {
            ids: self,
            first,
            answered_below,
        }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let mut ids = self.ids.lock();
        // Calls mostly end in the order they began: it is near the front.
        if let Some(call) = ids.calls.iter_mut().find(|(first, _)| *first == self.first) {
            call.1 = false;
        }
        while ids.calls.front().is_some_and(|&(_, open)| !open) {
            ids.calls.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_stays_below_every_call_still_open() {
        let ids = RequestIds::new();
        let a = ids.open(1);
        assert_eq!((a.first, a.answered_below), (1, 1));
        let b = ids.open(3);
        assert_eq!((b.first, b.answered_below), (2, 1), "a is still open");
        drop(a);
        let c = ids.open(1);
        assert_eq!((c.first, c.answered_below), (5, 2), "b's ids are open");
        drop(b);
        drop(c);
        let d = ids.open(1);
        assert_eq!(
            (d.first, d.answered_below),
            (6, 6),
            "everything before is over"
        );
        let e = ids.open(1);
        let f = ids.open(1);
        drop(e);
        assert_eq!(ids.open(1).answered_below, 6, "d is still open");
        drop(d);
        assert_eq!(ids.open(1).answered_below, 8, "f is the oldest open");
        drop(f);
    }
}
