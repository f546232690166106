//! Sessions and leases: what makes a dead client's locks come free.
//!
//! A client opens a session with a lease and keeps it alive (every call on
//! it counts too). When the lease runs out (the client was killed or cut
//! off) or the client closes it, the session ends: the store gives back
//! every lock, RLock and semaphore permit it held, and its blocked calls are
//! cancelled, so other clients' waiters go on.
//!
//! A session also remembers the outcome of its recent mutations by request
//! id, so that a retry after a lost reply is answered, not applied again
//! (within a bound in bytes: see [`super::answers`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use procshare_proto as pb;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::answers::{self, AnswerPool, Answers, Outcome, Slot};
use crate::store::val::Val;
use crate::store::{Store, StoreError};

/// Session ids start with this, so that an id the server does not know can
/// be told from a client id that never was a session.
pub const SESSION_PREFIX: &str = "s-";

/// Lease bounds and limits.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    pub default_lease: Duration,
    pub min_lease: Duration,
    pub max_lease: Duration,
    pub max_sessions: usize,
    /// Bytes of a session's answers larger than [`answers::SMALL_ANSWER`]
    /// kept for retries (`--session-answer-bytes`).
    pub session_answer_bytes: usize,
    /// Bytes of all answers (small and large) kept by all sessions
    /// together, with the rings that hold them (`--max-kept-answer-bytes`).
    pub max_kept_answer_bytes: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            default_lease: Duration::from_secs(5),
            min_lease: Duration::from_millis(200),
            max_lease: Duration::from_secs(300),
            max_sessions: 100_000,
            session_answer_bytes: answers::DEFAULT_BUDGET,
            max_kept_answer_bytes: answers::DEFAULT_POOL,
        }
    }
}

pub struct Session {
    pub id: String,
    pub name: String,
    pub peer: String,
    created: Instant,
    ttl: Duration,
    expires: Mutex<Instant>,
    /// Set by every call made in the session; the reaper turns it into a
    /// new lease. A call costs an atomic store, not a clock read and a lock.
    used: AtomicBool,
    /// Set when the session ends (before `ended` is cancelled): a cheaper
    /// check than the token's.
    closed: AtomicBool,
    /// Cancelled when the session ends: its blocked calls stop waiting.
    pub ended: CancellationToken,
    recent: Mutex<Answers>,
}

/// The first attempt of a request: publishes its outcome for retries.
pub struct Attempt<'a> {
    session: &'a Session,
    request_id: u64,
    finished: bool,
}

impl Attempt<'_> {
    /// Keeps the outcome for retries; returns its size (as
    /// [`answers::answer_bytes`] counts it).
    pub fn finish(mut self, outcome: &Outcome) -> usize {
        self.finished = true;
        let bytes = answers::answer_bytes(outcome);
        // Nobody waits if its slot was taken over meanwhile (`RECENT` newer
        // mutations began).
        let waiting = self
            .session
            .recent
            .lock()
            .finish_measured(self.request_id, outcome, bytes);
        for w in waiting {
            let _ = w.send(outcome.clone());
        }
        bytes
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        // Dropped unfinished (its caller went away): the operation did not
        // happen, so a retry must run it rather than wait for this one; the
        // retries waiting meanwhile are told so by their dropped senders.
        if !self.finished {
            self.session.recent.lock().remove(self.request_id);
        }
    }
}

pub enum Begin<'a> {
    /// First time: run it, then [`Attempt::finish`].
    New(Attempt<'a>),
    /// A retry of a request that has been answered: that answer.
    Answered(Outcome),
    /// A retry of a request still running: its answer when it has one, or
    /// an error if that first attempt is dropped unfinished.
    Running(oneshot::Receiver<Outcome>),
}

impl Session {
    /// Counts as a sign of life: the lease starts again (at the reaper's
    /// next pass, within 100 ms).
    fn touch(&self) {
        self.used.store(true, Ordering::Relaxed);
    }

    fn expired(&self, now: Instant) -> bool {
        let mut expires = self.expires.lock();
        if self.used.swap(false, Ordering::Relaxed) {
            *expires = now + self.ttl;
            return false;
        }
        *expires <= now
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The client has the answers of its requests below `id`: they need
    /// not be kept for a retry.
    pub fn answered_below(&self, id: u64) {
        if id > 1 {
            self.recent.lock().forget_below(id);
        }
    }

    /// Bytes of answers kept for retries.
    pub fn kept_answer_bytes(&self) -> usize {
        self.recent.lock().kept_bytes()
    }

    /// Looks up `request_id` among recent mutations.
    pub fn begin(&self, request_id: u64) -> Begin<'_> {
        let mut recent = self.recent.lock();
        match recent.get_mut(request_id) {
            Some(Slot::Done(outcome, _)) => return Begin::Answered(outcome.clone()),
            Some(&mut Slot::Forgotten { bytes }) => {
                return Begin::Answered(Err(recent.lost(request_id, bytes)))
            }
            Some(Slot::Running(waiters)) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                return Begin::Running(rx);
            }
            None => {}
        }
        recent.insert(request_id, Slot::Running(Vec::new()));
        Begin::New(Attempt {
            session: self,
            request_id,
            finished: false,
        })
    }
}

/// Resolves the client ids of a run of requests (a stream's, a batch's),
/// remembering the last one: requests from one client cost one lookup in
/// the session table, not one each.
pub struct Resolver {
    sessions: Arc<Sessions>,
    last: Option<(String, Option<Arc<Session>>)>,
}

impl Resolver {
    pub fn new(sessions: Arc<Sessions>) -> Resolver {
        Resolver {
            sessions,
            last: None,
        }
    }

    /// As [`Sessions::resolve`].
    pub fn resolve(&mut self, client_id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some((id, known)) = &self.last {
            if id == client_id {
                match known {
                    None => return Ok(None),
                    Some(s) if !s.closed.load(Ordering::Relaxed) => {
                        s.touch();
                        return Ok(Some(s.clone()));
                    }
                    // Ended since: the table says how (expired, closed).
                    Some(_) => {}
                }
            }
        }
        let found = self.sessions.resolve(client_id)?;
        self.last = Some((client_id.to_owned(), found.clone()));
        Ok(found)
    }
}

/// Every live session.
pub struct Sessions {
    store: Arc<Store>,
    limits: SessionLimits,
    live: DashMap<String, Arc<Session>>,
    next: AtomicU64,
    /// Where every session's answers and rings are counted together.
    answer_pool: Arc<AnswerPool>,
}

fn new_session_id(n: u64) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut h2 = RandomState::new().build_hasher();
    h2.write_u64(h.finish());
    format!("{SESSION_PREFIX}{:016x}{:016x}", h.finish(), h2.finish())
}

impl Sessions {
    pub fn new(store: Arc<Store>, limits: SessionLimits) -> Arc<Sessions> {
        Arc::new(Sessions {
            store,
            answer_pool: AnswerPool::new(limits.max_kept_answer_bytes),
            limits,
            live: DashMap::new(),
            next: AtomicU64::new(1),
        })
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Bytes of answers all live sessions keep for retries.
    pub fn kept_answer_bytes(&self) -> usize {
        self.live.iter().map(|s| s.kept_answer_bytes()).sum()
    }

    /// Opens a session with a lease of `ttl_secs` (0: the default), bounded.
    pub fn open(
        &self,
        ttl_secs: f64,
        name: String,
        peer: String,
    ) -> Result<Arc<Session>, StoreError> {
        if !(ttl_secs.is_finite() && ttl_secs >= 0.0) {
            return Err(StoreError::InvalidArgument(format!(
                "a lease is a finite number of seconds >= 0, not {ttl_secs}"
            )));
        }
        if self.live.len() >= self.limits.max_sessions {
            return Err(StoreError::ResourceExhausted(format!(
                "this server allows {} sessions (--max-sessions)",
                self.limits.max_sessions
            )));
        }
        let ttl = if ttl_secs == 0.0 {
            self.limits.default_lease
        } else {
            Duration::from_secs_f64(ttl_secs.min(self.limits.max_lease.as_secs_f64()))
                .max(self.limits.min_lease)
        };
        let id = new_session_id(self.next.fetch_add(1, Ordering::Relaxed));
        let name = name.chars().filter(|c| !c.is_control()).take(128).collect();
        let session = Arc::new(Session {
            id: id.clone(),
            name,
            peer,
            created: Instant::now(),
            ttl,
            expires: Mutex::new(Instant::now() + ttl),
            used: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            ended: CancellationToken::new(),
            recent: Mutex::new(Answers::new(
                self.limits.session_answer_bytes,
                self.answer_pool.clone(),
            )),
        });
        self.live.insert(id.clone(), session.clone());
        tracing::debug!(session = %id, ttl_ms = ttl.as_millis() as u64, "session opened");
        Ok(session)
    }

    /// The session a request names, kept alive by the request: `None` for a
    /// client id that is not a session (a client without a lease), an error
    /// for a session that has ended.
    pub fn resolve(&self, client_id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if !client_id.starts_with(SESSION_PREFIX) {
            return Ok(None);
        }
        match self.live.get(client_id) {
            Some(s) => {
                s.touch();
                Ok(Some(s.clone()))
            }
            None => Err(expired(client_id)),
        }
    }

    pub fn keep_alive(&self, id: &str) -> Result<Arc<Session>, StoreError> {
        self.resolve(id)?.ok_or_else(|| expired(id))
    }

    /// Ends a session: gives back what it held and cancels its waits.
    pub fn end(&self, id: &str, why: &str) -> bool {
        let Some((_, session)) = self.live.remove(id) else {
            return false;
        };
        session.closed.store(true, Ordering::Relaxed);
        session.ended.cancel();
        let released = self.store.release_client(id);
        if released.is_empty() {
            tracing::debug!(session = %id, why, "session ended");
        } else {
            let what: Vec<String> = released.iter().map(|(n, w)| format!("{w} {n:?}")).collect();
            tracing::info!(session = %id, peer = %session.peer, why, released = %what.join(", "), "session ended; released what it held");
        }
        true
    }

    /// Ends every session whose lease ran out; returns how many.
    pub fn reap(&self) -> usize {
        let now = Instant::now();
        let expired: Vec<String> = self
            .live
            .iter()
            .filter(|s| s.expired(now))
            .map(|s| s.key().clone())
            .collect();
        expired
            .iter()
            .filter(|id| self.end(id, "lease expired"))
            .count()
    }

    /// Runs [`Sessions::reap`] often enough that a lease is ended soon after
    /// it runs out, until `stop`.
    pub fn spawn_reaper(self: &Arc<Self>, stop: CancellationToken) {
        let sessions = Arc::downgrade(self);
        let period = (self.limits.min_lease / 2)
            .clamp(Duration::from_millis(20), Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Some(s) = sessions.upgrade() else { return };
                s.reap();
            }
        });
    }

    /// `procshare sessions`: id, name, peer, age, lease, what each holds.
    pub fn describe(&self) -> pb::OpResult {
        let now = Instant::now();
        let mut list: Vec<Arc<Session>> = self.live.iter().map(|s| s.value().clone()).collect();
        list.sort_by_key(|s| s.created);
        let s = |k: &str| Val::Str(k.into());
        let items = list
            .iter()
            .map(|session| {
                let holds = self
                    .store
                    .held_by(&session.id)
                    .into_iter()
                    .map(|(name, what)| Val::Str(format!("{what} {name}")))
                    .collect();
                Val::Map(vec![
                    (s("id"), Val::Str(session.id.clone())),
                    (s("name"), Val::Str(session.name.clone())),
                    (s("peer"), Val::Str(session.peer.clone())),
                    (
                        s("age_secs"),
                        Val::Float(now.duration_since(session.created).as_secs_f64()),
                    ),
                    (s("ttl_secs"), Val::Float(session.ttl.as_secs_f64())),
                    (s("holds"), Val::List(holds)),
                ])
            })
            .collect();
        pb::OpResult {
            kind: Some(pb::op_result::Kind::Value(Val::List(items).to_wire())),
        }
    }
}

fn expired(id: &str) -> StoreError {
    StoreError::SessionExpired(format!(
        "session {id} has ended (its lease ran out or the server restarted); what it held was given back"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::op;
    use crate::store::Caller;

    fn fresh() -> Arc<Sessions> {
        Sessions::new(Arc::new(Store::new()), SessionLimits::default())
    }

    /// A session with the default lease.
    fn open(sessions: &Sessions) -> Arc<Session> {
        sessions
            .open(0.0, String::new(), String::new())
            .expect("a session opens")
    }

    #[tokio::test]
    async fn an_expired_lease_gives_the_lock_back() {
        let store = Arc::new(Store::new());
        let limits = SessionLimits {
            min_lease: Duration::from_millis(10),
            ..Default::default()
        };
        let sessions = Sessions::new(store.clone(), limits);
        let s = sessions.open(0.01, "t".into(), "peer".into()).unwrap();
        let me = Caller::new(&s.id, "");
        let open = pb::op::Kind::Open(pb::Open {
            kind: pb::Kind::Lock as i32,
            ..Default::default()
        });
        store.apply(&me, op("l", open)).await.unwrap();
        let acquire = pb::op::Kind::LockAcquire(pb::LockAcquire {
            blocking: true,
            timeout_secs: None,
        });
        store.apply(&me, op("l", acquire)).await.unwrap();
        while sessions.reap() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(s.ended.is_cancelled());
        assert!(store.held_by(&s.id).is_empty());
        assert!(matches!(
            sessions.resolve(&s.id),
            Err(StoreError::SessionExpired(_))
        ));
        assert!(sessions.resolve("not-a-session").unwrap().is_none());
    }

    #[test]
    fn leases_are_bounded_and_validated() {
        let sessions = fresh();
        assert_eq!(
            sessions
                .open(0.0, String::new(), String::new())
                .unwrap()
                .ttl(),
            Duration::from_secs(5)
        );
        assert_eq!(
            sessions
                .open(1e9, String::new(), String::new())
                .unwrap()
                .ttl(),
            Duration::from_secs(300)
        );
        assert_eq!(
            sessions
                .open(0.001, String::new(), String::new())
                .unwrap()
                .ttl(),
            Duration::from_millis(200)
        );
        assert!(sessions
            .open(f64::NAN, String::new(), String::new())
            .is_err());
        assert!(sessions.open(-1.0, String::new(), String::new()).is_err());
    }

    #[test]
    fn a_retry_sees_the_first_outcome_and_a_dropped_attempt_is_forgotten() {
        let sessions = fresh();
        let s = open(&sessions);
        let Begin::New(first) = s.begin(7) else {
            panic!("first time")
        };
        let outcome: Outcome = Err(StoreError::NotFound("x".into()));
        first.finish(&outcome);
        let Begin::Answered(seen) = s.begin(7) else {
            panic!("a retry")
        };
        assert_eq!(seen, outcome);
        let Begin::New(dropped) = s.begin(8) else {
            panic!("first time")
        };
        drop(dropped);
        assert!(
            matches!(s.begin(8), Begin::New(_)),
            "a cancelled attempt runs again"
        );
    }

    #[test]
    fn a_retry_of_a_running_request_waits_for_its_outcome() {
        let sessions = fresh();
        let s = open(&sessions);
        let Begin::New(first) = s.begin(1) else {
            panic!("first time")
        };
        let Begin::Running(mut rx) = s.begin(1) else {
            panic!("a retry while the first attempt runs")
        };
        assert!(rx.try_recv().is_err(), "no outcome yet");
        let outcome: Outcome = Err(StoreError::Timeout("t".into()));
        first.finish(&outcome);
        assert_eq!(rx.try_recv().ok(), Some(outcome));

        let Begin::New(second) = s.begin(2) else {
            panic!("first time")
        };
        let Begin::Running(mut rx) = s.begin(2) else {
            panic!("a retry")
        };
        drop(second);
        assert!(
            matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)),
            "the retry learns that the first attempt was dropped"
        );
    }

    #[test]
    fn only_the_latest_outcomes_are_remembered() {
        let sessions = fresh();
        let s = open(&sessions);
        for id in 0..(answers::RECENT as u64 + 10) {
            let Begin::New(a) = s.begin(id) else {
                panic!("request {id} is new")
            };
            a.finish(&Ok(pb::OpResult::default()));
        }
        assert!(matches!(s.begin(5), Begin::New(_)), "forgotten");
        assert!(matches!(
            s.begin(answers::RECENT as u64),
            Begin::Answered(_)
        ));
    }

    #[test]
    fn a_retry_whose_answer_was_too_large_to_keep_is_refused_not_applied() {
        let limits = SessionLimits {
            session_answer_bytes: 3_000,
            ..Default::default()
        };
        let sessions = Sessions::new(Arc::new(Store::new()), limits);
        let s = open(&sessions);
        let item = |n: usize| -> Outcome {
            Ok(pb::OpResult {
                kind: Some(pb::op_result::Kind::Value(
                    Val::Str("i".repeat(n)).to_wire(),
                )),
            })
        };
        for (id, n) in [(1, 2_000), (2, 2_000), (3, 10)] {
            let Begin::New(a) = s.begin(id) else {
                panic!("request {id} is new")
            };
            a.finish(&item(n));
        }
        match s.begin(1) {
            Begin::Answered(Err(StoreError::AnswerLost(why))) => {
                assert!(why.contains("--session-answer-bytes"), "{why}")
            }
            _ => panic!("the oldest large answer was let go of"),
        }
        assert!(matches!(s.begin(2), Begin::Answered(Ok(_))));
        assert!(matches!(s.begin(3), Begin::Answered(Ok(_))));
        let kept = sessions.kept_answer_bytes();
        assert!((2_000..3_100).contains(&kept), "{kept}");
    }

    #[test]
    fn a_resolver_remembers_the_last_session_until_it_ends() {
        let sessions = fresh();
        let a = open(&sessions);
        let b = open(&sessions);
        let mut r = Resolver::new(sessions.clone());
        for id in [&a.id, &a.id, &b.id, &a.id] {
            let got = r.resolve(id).unwrap().expect("a live session");
            assert_eq!(&got.id, id);
        }
        assert!(r.resolve("plain-client").unwrap().is_none());
        assert!(r.resolve("plain-client").unwrap().is_none());
        assert!(r.resolve(&a.id).unwrap().is_some());
        assert!(sessions.end(&a.id, "test"));
        assert!(
            r.resolve(&a.id).is_err(),
            "an ended session is not served from memory"
        );
        assert!(r.resolve("s-unknown").is_err());
    }

    #[test]
    fn outcomes_out_of_order_are_all_remembered_while_the_ring_grows() {
        let sessions = fresh();
        let s = open(&sessions);
        let ids = [10u64, 3, 7, 1000, 2, 515, 64, 1 << 40];
        for &id in &ids {
            let Begin::New(a) = s.begin(id) else {
                panic!("request {id} is new")
            };
            a.finish(&Ok(pb::OpResult::default()));
        }
        for &id in &ids {
            assert!(
                matches!(s.begin(id), Begin::Answered(_)),
                "request {id} remembered"
            );
        }
        assert!(s.recent.lock().ring_len() <= answers::RECENT);
    }

    #[test]
    fn a_call_renews_the_lease_at_the_reapers_next_pass() {
        let sessions = fresh();
        let s = sessions.open(1.0, String::new(), String::new()).unwrap();
        let late = Instant::now() + Duration::from_secs(5);
        s.touch();
        assert!(
            !s.expired(late),
            "used since the last pass: renewed, not ended"
        );
        assert!(!s.expired(late + Duration::from_millis(900)));
        assert!(
            s.expired(late + Duration::from_millis(1001)),
            "not used since: ends a lease after the renewal"
        );
        let mut r = Resolver::new(sessions.clone());
        r.resolve(&s.id).unwrap();
        r.resolve(&s.id).unwrap();
        assert!(
            !s.expired(late + Duration::from_secs(10)),
            "a call through a resolver counts too, remembered or not"
        );
    }
}
