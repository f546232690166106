//! The answers a session keeps so that a retried mutation is answered, not
//! applied again, and the bound on the memory they take.
//!
//! A mutation's answer can be large: a queue `get` answers with the item it
//! took. Keeping the last [`RECENT`] answers of every session by count
//! alone meant a worker taking 512 KiB items from a queue left the server
//! holding the last 1,024 of them (512 MiB) after the queue was empty.
//! So answers are also bounded by bytes: answers of up to [`SMALL_ANSWER`]
//! bytes (almost all: a `set` answers with nothing or the old value) are
//! kept by count only; larger ones are kept newest first within a budget
//! per session (`--session-answer-bytes`). An answer that no longer fits is
//! forgotten, but not the fact that its request was applied: a retry of it
//! gets [`StoreError::AnswerLost`] instead of the operation a second time.
//! Retries come right after a connection broke, for the calls that were in
//! flight: the newest answers are the ones worth keeping. And a client says
//! which answers it has (`answered_below` in each request): those are
//! forgotten at once, so a client that waits for each answer leaves at most
//! its last one here. All sessions' larger answers together are bounded
//! too ([`AnswerPool`], `--max-kept-answer-bytes`): a session whose answer
//! would take the total over it forgets its own oldest larger answers
//! first, then that answer; it never takes room from another session.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use procshare_proto::OpResult;
use prost::Message;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// How many recent mutation outcomes a session remembers for retries.
pub const RECENT: usize = 1024;
const _: () = assert!(
    RECENT.is_power_of_two(),
    "the ring of outcomes doubles up to RECENT"
);

/// Answers up to this many bytes (encoded) are kept by count alone: at most
/// [`RECENT`] of them, 1 MiB a session.
pub const SMALL_ANSWER: usize = 1024;

/// The default budget of a session's larger answers: room for the newest
/// answer of the largest value a client may store (`--max-value-bytes`,
/// 1 MiB by default) and then some.
pub const DEFAULT_BUDGET: usize = 2 << 20;

/// The default bound of all sessions' larger answers together: 128
/// sessions at their full default budget. (Clients that say which answers
/// they have leave at most one each, most of the time none.)
pub const DEFAULT_POOL: usize = 256 << 20;

/// The bytes of larger answers that all sessions keep, and their bound.
#[derive(Debug)]
pub struct AnswerPool {
    used: AtomicUsize,
    limit: usize,
}

impl AnswerPool {
    pub fn new(limit: usize) -> Arc<AnswerPool> {
        Arc::new(AnswerPool {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes of larger answers kept now, by all sessions.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }
}

pub type Outcome = Result<OpResult, StoreError>;

/// What a session remembers of one recent mutation.
pub enum Slot {
    /// Still running; retries that arrived meanwhile wait here.
    Running(Vec<oneshot::Sender<Outcome>>),
    /// Answered; the answer and its size in bytes.
    Done(Outcome, usize),
    /// Answered, but the answer (of `bytes`) did not fit in the budget.
    Forgotten { bytes: usize },
}

/// The outcomes of a session's recent mutations: a ring in which request
/// id `i` has slot `i % len`. Clients number their requests in order, so
/// the ring forgets the oldest first, as a queue would, without the cache
/// misses of a hash map and a queue (every mutation comes through here).
/// It grows by doubling, up to [`RECENT`] slots, when a slot it needs is
/// taken; at full size a request takes over the slot of the one `RECENT`
/// before it.
pub struct Answers {
    slots: Vec<Option<(u64, Slot)>>,
    /// The larger answers still kept, in the order they were made:
    /// (request id, bytes). An entry whose slot was since taken over by a
    /// newer request is stale and skipped.
    large: VecDeque<(u64, usize)>,
    /// Bytes of the larger answers kept.
    large_bytes: usize,
    /// Bytes of every answer kept.
    kept_bytes: usize,
    budget: usize,
    /// Where `large_bytes` is counted with every other session's.
    pool: Arc<AnswerPool>,
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.pool
            .used
            .fetch_sub(self.large_bytes, Ordering::Relaxed);
    }
}

impl Answers {
    /// An empty ring whose larger answers take at most `budget` bytes,
    /// and count in `pool`.
    pub fn new(budget: usize, pool: Arc<AnswerPool>) -> Answers {
        Answers {
            slots: Vec::new(),
            large: VecDeque::new(),
            large_bytes: 0,
            kept_bytes: 0,
            budget,
            pool,
        }
    }

    fn add_large(&mut self, bytes: usize) {
        self.large_bytes += bytes;
        self.pool.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub_large(&mut self, bytes: usize) {
        self.large_bytes -= bytes;
        self.pool.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The error a retry gets when its request `id` was applied but its
    /// answer, of `bytes`, was not kept.
    pub fn lost(&self, id: u64, bytes: usize) -> StoreError {
        StoreError::AnswerLost(format!(
            "request {id} was applied once, but its answer ({bytes} bytes) was lost with the \
             connection and not kept for a retry: a session keeps its newest answers larger \
             than {SMALL_ANSWER} bytes up to {} bytes (--session-answer-bytes), all sessions \
             together up to {} bytes (--max-kept-answer-bytes)",
            self.budget, self.pool.limit
        ))
    }

    /// Bytes of the answers kept now.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    #[cfg(test)]
    pub fn ring_len(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, id: u64) -> usize {
        (id % self.slots.len() as u64) as usize
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let i = self.index(id);
        match &mut self.slots[i] {
            Some((held, slot)) if *held == id => Some(slot),
            _ => None,
        }
    }

    pub fn insert(&mut self, id: u64, slot: Slot) {
        if self.slots.is_empty() {
            self.slots.push(None);
        }
        while self.slots.len() < RECENT && self.slots[self.index(id)].is_some() {
            // Entries in distinct slots of a ring of n stay distinct in a
            // ring of 2n (a ≡ b mod 2n implies a ≡ b mod n).
            let old = std::mem::take(&mut self.slots);
            self.slots.resize_with(old.len() * 2, || None);
            for (held, s) in old.into_iter().flatten() {
                let i = self.index(held);
                self.slots[i] = Some((held, s));
            }
        }
        let i = self.index(id);
        if let Some((_, old)) = self.slots[i].replace((id, slot)) {
            self.let_go(&old);
        }
    }

    pub fn remove(&mut self, id: u64) {
        if self.get_mut(id).is_some() {
            let i = self.index(id);
            if let Some((_, old)) = self.slots[i].take() {
                self.let_go(&old);
            }
        }
    }

    /// Accounts for an answer that is no longer kept.
    fn let_go(&mut self, slot: &Slot) {
        if let Slot::Done(_, bytes) = slot {
            self.kept_bytes -= bytes;
            if *bytes > SMALL_ANSWER {
                self.sub_large(*bytes);
            }
        }
    }

    /// Records the outcome of request `id` (if its slot was not taken over
    /// meanwhile) and returns the retries that wait for it.
    #[cfg(test)]
    pub fn finish(&mut self, id: u64, outcome: &Outcome) -> Vec<oneshot::Sender<Outcome>> {
        self.finish_measured(id, outcome, answer_bytes(outcome))
    }

    /// [`finish`](Self::finish), with the answer's size worked out already.
    pub fn finish_measured(
        &mut self,
        id: u64,
        outcome: &Outcome,
        bytes: usize,
    ) -> Vec<oneshot::Sender<Outcome>> {
        let keep = bytes <= SMALL_ANSWER || bytes <= self.budget;
        let Some(slot) = self.get_mut(id) else {
            return Vec::new();
        };
        let new = if keep {
            Slot::Done(outcome.clone(), bytes)
        } else {
            Slot::Forgotten { bytes }
        };
        let waiting = match std::mem::replace(slot, new) {
            Slot::Running(waiting) => waiting,
            _ => Vec::new(),
        };
        if keep {
            self.kept_bytes += bytes;
            if bytes > SMALL_ANSWER {
                self.large.push_back((id, bytes));
                self.add_large(bytes);
                self.fit();
            }
        }
        waiting
    }

    /// Forgets the larger answers of requests below `id`, which the client
    /// says it has (it will not retry them).
    pub fn forget_below(&mut self, id: u64) {
        while let Some(&(oldest, bytes)) = self.large.front() {
            if oldest >= id {
                return;
            }
            self.large.pop_front();
            if matches!(self.get_mut(oldest), Some(Slot::Done(..))) {
                let i = self.index(oldest);
                self.slots[i] = None;
                self.kept_bytes -= bytes;
                self.sub_large(bytes);
            }
        }
    }

    /// Forgets the oldest larger answers until the rest fit the budget,
    /// and the pool its bound (or none is left).
    fn fit(&mut self) {
        loop {
            let over =
                self.large_bytes > self.budget || self.large.len() > RECENT || self.pool.over();
            let Some(&(id, bytes)) = self.large.front() else {
                return;
            };
            let live = matches!(self.get_mut(id), Some(Slot::Done(..)));
            if live && !over {
                return;
            }
            self.large.pop_front();
            if live {
                if let Some(slot) = self.get_mut(id) {
                    *slot = Slot::Forgotten { bytes };
                }
                self.kept_bytes -= bytes;
                self.sub_large(bytes);
            }
        }
    }
}

/// The size of an answer on the wire (an error: its message).
pub fn answer_bytes(outcome: &Outcome) -> usize {
    match outcome {
        Ok(result) => result.encoded_len(),
        Err(e) => e.to_string().len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::val::Val;

    /// An answer of about `n` bytes encoded.
    fn answer(n: usize) -> Outcome {
        Ok(OpResult {
            kind: Some(procshare_proto::op_result::Kind::Value(
                Val::Str("x".repeat(n)).to_wire(),
            )),
        })
    }

    /// A session's answers with `budget`, alone in an unbounded pool.
    fn alone(budget: usize) -> Answers {
        Answers::new(budget, AnswerPool::new(usize::MAX))
    }

    fn run(a: &mut Answers, id: u64, outcome: &Outcome) {
        a.insert(id, Slot::Running(Vec::new()));
        assert!(a.finish(id, outcome).is_empty());
    }

    fn kept(a: &mut Answers, id: u64) -> bool {
        matches!(a.get_mut(id), Some(Slot::Done(..)))
    }

    fn forgotten(a: &mut Answers, id: u64) -> bool {
        matches!(a.get_mut(id), Some(Slot::Forgotten { .. }))
    }

    #[test]
    fn larger_answers_are_kept_newest_first_within_the_budget() {
        let mut a = alone(10_000);
        let big = answer(4_000);
        for id in 1..=5 {
            run(&mut a, id, &big);
        }
        assert!(forgotten(&mut a, 1) && forgotten(&mut a, 2) && forgotten(&mut a, 3));
        assert!(kept(&mut a, 4) && kept(&mut a, 5));
        assert!(a.kept_bytes() <= 10_000 && a.kept_bytes() > 8_000);
        // Small answers do not push larger ones out.
        for id in 6..200 {
            run(&mut a, id, &answer(10));
        }
        assert!(kept(&mut a, 4) && kept(&mut a, 5) && kept(&mut a, 199));
    }

    #[test]
    fn an_answer_larger_than_the_budget_is_never_kept_but_remembered_as_applied() {
        let mut a = alone(1_000);
        run(&mut a, 1, &answer(5_000));
        assert!(forgotten(&mut a, 1));
        assert_eq!(a.kept_bytes(), 0);
        run(&mut a, 2, &answer(5));
        assert!(
            kept(&mut a, 2),
            "small answers are kept whatever the budget"
        );
        let mut none = alone(0);
        run(&mut none, 1, &answer(2_000));
        assert!(forgotten(&mut none, 1));
    }

    #[test]
    fn answers_taken_over_by_the_ring_are_let_go_of_in_the_count() {
        let mut a = alone(1 << 30);
        let big = answer(2_000);
        for id in 0..(3 * RECENT as u64) {
            run(&mut a, id, &big);
        }
        let one = answer_bytes(&big);
        assert_eq!(a.kept_bytes(), RECENT * one, "exactly the ring's worth");
        assert!(a.large.len() <= RECENT + 1, "stale entries are dropped");
        a.remove(3 * RECENT as u64 - 1);
        assert_eq!(a.kept_bytes(), (RECENT - 1) * one);
    }

    #[test]
    fn answers_the_client_has_are_forgotten() {
        let mut a = alone(1 << 20);
        let big = answer(5_000);
        for id in 1..=4 {
            run(&mut a, id, &big);
        }
        run(&mut a, 5, &answer(5));
        a.forget_below(3);
        assert!(a.get_mut(1).is_none() && a.get_mut(2).is_none());
        assert!(kept(&mut a, 3) && kept(&mut a, 4) && kept(&mut a, 5));
        let one = answer_bytes(&big);
        assert_eq!(a.kept_bytes(), 2 * one + answer_bytes(&answer(5)));
        a.forget_below(100);
        assert!(kept(&mut a, 5), "small answers are left to the ring");
        assert_eq!(a.kept_bytes(), answer_bytes(&answer(5)));
    }

    #[test]
    fn the_retries_waiting_for_an_answer_are_handed_over() {
        let mut a = alone(0);
        let (tx, mut rx) = oneshot::channel();
        a.insert(9, Slot::Running(vec![tx]));
        let big = answer(5_000);
        for w in a.finish(9, &big) {
            let _ = w.send(big.clone());
        }
        assert_eq!(
            rx.try_recv().ok(),
            Some(big),
            "a waiting retry still gets it"
        );
        assert!(forgotten(&mut a, 9));
    }

    #[test]
    fn all_sessions_together_keep_at_most_the_pool_and_give_it_back() {
        let pool = AnswerPool::new(10_000);
        let mut a = Answers::new(1 << 20, pool.clone());
        let mut b = Answers::new(1 << 20, pool.clone());
        let big = answer(3_000);
        let one = answer_bytes(&big);
        for id in 1..=3 {
            run(&mut a, id, &big);
        }
        assert_eq!(pool.used(), 3 * one);
        // b's answer takes the pool over: b forgets its own (it has no
        // older one), a keeps all of its.
        run(&mut b, 1, &big);
        assert!(forgotten(&mut b, 1));
        assert!(kept(&mut a, 1) && kept(&mut a, 2) && kept(&mut a, 3));
        // a's next one: a forgets its own oldest.
        run(&mut a, 4, &big);
        assert!(forgotten(&mut a, 1) && kept(&mut a, 2) && kept(&mut a, 4));
        assert_eq!(pool.used(), 3 * one);
        let e = a.lost(1, one).to_string();
        assert!(e.contains("--max-kept-answer-bytes"), "{e}");
        // Forgotten by the client, let go of with the session: given back.
        a.forget_below(3);
        assert_eq!(pool.used(), 2 * one);
        drop(a);
        assert_eq!(pool.used(), 0);
        run(&mut b, 2, &big);
        assert!(kept(&mut b, 2));
        assert_eq!(pool.used(), one);
    }
}
