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
//! forgotten at once (small and larger alike), so a client that waits for
//! each answer leaves at most its last one here, and its ring stays a slot
//! or two long. All sessions' answers together, and the rings that hold
//! them, are bounded too ([`AnswerPool`], `--max-kept-answer-bytes`): a
//! session whose answer would take the total over it forgets its own
//! oldest answers, larger ones first, then that answer; a ring that cannot
//! grow takes over its slots sooner, as a full one does. A session never
//! takes room from another. (Small answers were bounded by count alone, 1
//! MiB a session: `--max-sessions` sessions that never say which answers
//! they have could make the server hold 100 GiB.)

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

/// The default bound of all sessions' answers and rings together: 128
/// sessions at their full default budget of larger answers. (Clients that
/// say which answers they have leave at most one each, most of the time
/// none, and a ring of a slot or two.)
pub const DEFAULT_POOL: usize = 256 << 20;

/// What one slot of a ring takes, charged to the pool as the ring grows.
const SLOT_BYTES: usize = std::mem::size_of::<Option<(u64, Slot)>>();

/// The bytes of answers and rings that all sessions keep, and their bound.
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

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` if they fit under the bound.
    fn try_take(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.sub(bytes);
            return false;
        }
        true
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
    /// Where `kept_bytes` and the ring's slots are counted with every
    /// other session's.
    pool: Arc<AnswerPool>,
    /// The client has every answer below this: their slots were let go of.
    below: u64,
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.pool
            .sub(self.kept_bytes + self.slots.len() * SLOT_BYTES);
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
            below: 0,
        }
    }

    /// Counts an answer of `bytes` as kept.
    fn add_kept(&mut self, bytes: usize) {
        self.kept_bytes += bytes;
        if bytes > SMALL_ANSWER {
            self.large_bytes += bytes;
        }
        self.pool.add(bytes);
    }

    /// Counts an answer of `bytes` as no longer kept.
    fn sub_kept(&mut self, bytes: usize) {
        self.kept_bytes -= bytes;
        if bytes > SMALL_ANSWER {
            self.large_bytes -= bytes;
        }
        self.pool.sub(bytes);
    }

    /// The error a retry gets when its request `id` was applied but its
    /// answer, of `bytes`, was not kept.
    pub fn lost(&self, id: u64, bytes: usize) -> StoreError {
        StoreError::AnswerLost(format!(
            "request {id} was applied once, but its answer ({bytes} bytes) was lost with the \
             connection and not kept for a retry: a session keeps its newest answers larger \
             than {SMALL_ANSWER} bytes up to {} bytes (--session-answer-bytes), all sessions' \
             answers together up to {} bytes (--max-kept-answer-bytes)",
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
            // The first slot is taken whatever the pool: there must be one.
            self.pool.add(SLOT_BYTES);
            self.slots.push(None);
        }
        while self.slots.len() < RECENT && self.slots[self.index(id)].is_some() {
            if !self.pool.try_take(self.slots.len() * SLOT_BYTES) {
                // No room to grow: take over the slot, as a full ring does.
                break;
            }
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
        if let &Slot::Done(_, bytes) = slot {
            self.sub_kept(bytes);
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
            self.add_kept(bytes);
            if bytes > SMALL_ANSWER {
                self.large.push_back((id, bytes));
                self.fit();
            } else if self.pool.over() {
                self.fit();
            }
        }
        waiting
    }

    /// Forgets the answers of requests below `id`, which the client says
    /// it has (it will not retry them), and frees their slots. Each id
    /// since the last mark is looked at once (a client that waits for each
    /// answer: one a call), and never more ids than the ring has slots.
    pub fn forget_below(&mut self, id: u64) {
        while let Some(&(oldest, _)) = self.large.front() {
            if oldest >= id {
                break;
            }
            self.large.pop_front();
            // Maybe older than the ids looked at below.
            self.remove(oldest);
        }
        if id <= self.below || self.slots.is_empty() {
            return;
        }
        if id - self.below <= self.slots.len() as u64 {
            // The usual step: the few ids since the last mark.
            for old in self.below..id {
                let i = self.index(old);
                self.let_go_answered(i, |held| held == old);
            }
        } else {
            // A jump: every slot once.
            for i in 0..self.slots.len() {
                self.let_go_answered(i, |held| held < id);
            }
        }
        self.below = id;
    }

    /// Frees slot `i` if it holds an answer (not a request still running)
    /// of an id that `which` picks.
    fn let_go_answered(&mut self, i: usize, which: impl Fn(u64) -> bool) {
        let answered = matches!(
            &self.slots[i],
            Some((held, Slot::Done(..) | Slot::Forgotten { .. })) if which(*held)
        );
        if answered {
            if let Some((_, slot)) = self.slots[i].take() {
                self.let_go(&slot);
            }
        }
    }

    /// Forgets the oldest larger answers until the rest fit the budget,
    /// and the pool its bound (or none is left); then, while the pool is
    /// still over, the oldest small ones.
    fn fit(&mut self) {
        loop {
            let over =
                self.large_bytes > self.budget || self.large.len() > RECENT || self.pool.over();
            let Some(&(id, bytes)) = self.large.front() else {
                break;
            };
            let live = matches!(self.get_mut(id), Some(Slot::Done(..)));
            if live && !over {
                return;
            }
            self.large.pop_front();
            if live {
                self.forget(id, bytes);
            }
        }
        while self.pool.over() {
            // Only when the server's bound is reached: a scan of the ring.
            let oldest = self
                .slots
                .iter()
                .flatten()
                .filter_map(|(id, slot)| match slot {
                    &Slot::Done(_, bytes) => Some((*id, bytes)),
                    _ => None,
                })
                .min();
            let Some((id, bytes)) = oldest else {
                return;
            };
            self.forget(id, bytes);
        }
    }

    /// Lets go of the kept answer of `id` (of `bytes`), remembering that
    /// the request was applied.
    fn forget(&mut self, id: u64, bytes: usize) {
        if let Some(slot) = self.get_mut(id) {
            *slot = Slot::Forgotten { bytes };
        }
        self.sub_kept(bytes);
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
        a.forget_below(5);
        assert!(kept(&mut a, 5));
        assert_eq!(a.kept_bytes(), answer_bytes(&answer(5)));
        a.forget_below(100);
        assert!(a.get_mut(5).is_none(), "small answers are let go of too");
        assert_eq!(a.kept_bytes(), 0);
    }

    #[test]
    fn a_client_that_says_what_it_has_leaves_one_answer_in_a_short_ring() {
        let pool = AnswerPool::new(usize::MAX);
        let mut a = Answers::new(1 << 20, pool.clone());
        let small = answer(100);
        for id in 1..=10_000 {
            a.forget_below(id);
            run(&mut a, id, &small);
        }
        assert!(kept(&mut a, 10_000));
        assert_eq!(a.kept_bytes(), answer_bytes(&small));
        assert!(a.ring_len() <= 2, "ring of {}", a.ring_len());
        assert_eq!(pool.used(), a.kept_bytes() + a.ring_len() * SLOT_BYTES);
        // 64 calls in flight at a time: the ring holds them, no more.
        for id in (10_001..20_000).step_by(64) {
            a.forget_below(id);
            for j in id..id + 64 {
                run(&mut a, j, &small);
            }
        }
        assert!(a.ring_len() <= 128, "ring of {}", a.ring_len());
        // An absurd mark costs no more than the ring's length.
        a.forget_below(u64::MAX);
        assert_eq!(a.kept_bytes(), 0);
        drop(a);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn sessions_that_never_say_what_they_have_keep_small_answers_within_the_pool() {
        let limit = 300_000;
        let pool = AnswerPool::new(limit);
        let small = answer(900);
        let one = answer_bytes(&small);
        let mut sessions: Vec<Answers> = (0..20)
            .map(|_| Answers::new(1 << 20, pool.clone()))
            .collect();
        for a in sessions.iter_mut() {
            for id in 1..=2_000 {
                run(a, id, &small);
            }
        }
        // Past the bound only by the first slot of each ring, which every
        // session gets whatever the pool.
        assert!(
            pool.used() <= limit + sessions.len() * SLOT_BYTES,
            "{} > {limit}",
            pool.used()
        );
        // Counted alone, 20 sessions would keep 20 × 1,024 answers (18 MiB).
        let all: usize = sessions.iter().map(Answers::kept_bytes).sum();
        assert!(all < limit, "{all}");
        // Each keeps its newest answer; older ones are remembered as applied
        // (a retry is told its answer was lost, and is not applied again).
        let first = &mut sessions[0];
        assert!(kept(first, 2_000));
        let lost = (1_001..2_000).filter(|&id| forgotten(first, id)).count();
        assert!(lost > 0);
        assert_eq!(first.kept_bytes() % one, 0);
        drop(sessions);
        assert_eq!(pool.used(), 0, "everything is given back");
    }

    #[test]
    fn a_ring_with_no_room_to_grow_takes_over_its_slots() {
        let pool = AnswerPool::new(0);
        let mut a = Answers::new(1 << 20, pool.clone());
        for id in 1..=10 {
            a.insert(id, Slot::Running(Vec::new()));
        }
        assert_eq!(a.ring_len(), 1);
        assert!(a.get_mut(10).is_some() && a.get_mut(9).is_none());
        drop(a);
        assert_eq!(pool.used(), 0);
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
        let rings = |a: &Answers, b: &Answers| (a.ring_len() + b.ring_len()) * SLOT_BYTES;
        assert_eq!(pool.used(), 3 * one + rings(&a, &b));
        // b's answer takes the pool over: b forgets its own (it has no
        // older one), a keeps all of its.
        run(&mut b, 1, &big);
        assert!(forgotten(&mut b, 1));
        assert!(kept(&mut a, 1) && kept(&mut a, 2) && kept(&mut a, 3));
        // a's next one: a forgets its own oldest.
        run(&mut a, 4, &big);
        assert!(forgotten(&mut a, 1) && kept(&mut a, 2) && kept(&mut a, 4));
        assert_eq!(pool.used(), 3 * one + rings(&a, &b));
        let e = a.lost(1, one).to_string();
        assert!(e.contains("--max-kept-answer-bytes"), "{e}");
        // Forgotten by the client, let go of with the session: given back.
        a.forget_below(3);
        assert_eq!(pool.used(), 2 * one + rings(&a, &b));
        let b_ring = b.ring_len() * SLOT_BYTES;
        drop(a);
        assert_eq!(pool.used(), b_ring);
        run(&mut b, 2, &big);
        assert!(kept(&mut b, 2));
        assert_eq!(pool.used(), one + b.ring_len() * SLOT_BYTES);
    }
}
