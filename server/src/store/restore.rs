//! Objects to snapshot states and back. A state carries the object's
//! creation parameters (its `Open`) and, for the kinds whose contents
//! survive a restart, their contents. Locks, conditions, barriers and pipes
//! come back empty: their holders and waiters were sessions, which a restart
//! ends.

use std::sync::Arc;

use procshare_proto::{self as pb, object_state::State, ArrayType, Kind};

use super::error::{Result, StoreError};
use super::val::{pair_to_wire, Val};
use super::{
    array, cell, dict, event, list, namespace, pool, queue, semaphore, Object, Store, Stored,
};

fn wire_list(items: &[Val]) -> pb::ValueList {
    pb::ValueList {
        items: items.iter().map(Val::to_wire).collect(),
    }
}

fn wire_map(entries: &[(Val, Val)]) -> pb::ValueMap {
    pb::ValueMap {
        entries: entries.iter().map(|(k, v)| pair_to_wire(k, v)).collect(),
    }
}

fn vals(list: Option<pb::ValueList>) -> Result<Vec<Val>> {
    list.map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(Val::from_wire)
        .collect()
}

fn pairs(map: pb::ValueMap) -> Result<Vec<(Val, Val)>> {
    map.entries.into_iter().map(Val::pair_from_wire).collect()
}

/// One object's state, `next_seq` read while it is locked.
pub(super) fn save_one(
    name: String,
    stored: &Stored,
    next_seq: &dyn Fn() -> u64,
) -> pb::ObjectState {
    let (seq, state) = match &stored.object {
        Object::Dict(d) => {
            let (entries, seq) = d.save(next_seq);
            (seq, Some(State::Dict(wire_map(&entries))))
        }
        Object::List(l) => {
            let (items, seq) = l.save(next_seq);
            (seq, Some(State::List(wire_list(&items))))
        }
        Object::Value(c) => {
            let (v, seq) = c.save(next_seq);
            (seq, Some(State::Value(v.to_wire())))
        }
        Object::Semaphore(s) => {
            let (value, seq) = s.save(next_seq);
            (seq, Some(State::Semaphore(pb::SemaphoreState { value })))
        }
        Object::Event(e) => {
            let (flag, seq) = e.save(next_seq);
            (seq, Some(State::Event(flag)))
        }
        Object::Queue(q) => {
            let (items, unfinished, seq) = q.save(next_seq);
            let state = pb::QueueState {
                items: Some(wire_list(&items)),
                unfinished,
            };
            (seq, Some(State::Queue(state)))
        }
        Object::Namespace(n) => {
            let (attrs, seq) = n.save(next_seq);
            (seq, Some(State::Namespace(wire_map(&attrs))))
        }
        Object::Array(a) => {
            let (items, seq) = a.save(next_seq);
            (seq, Some(State::Array(wire_list(&items))))
        }
        Object::Pool(p) => {
            let (state, seq) = p.save(next_seq);
            (seq, Some(State::Pool(state)))
        }
        Object::Lock(_) | Object::Condition(_) | Object::Barrier(_) | Object::Pipe(_) => {
            (next_seq(), None)
        }
    };
    pb::ObjectState {
        name,
        seq,
        open: Some(stored.open.clone()),
        state,
    }
}

impl Store {
    /// Every object's state. `next_seq` is read while each object is locked:
    /// log records of that object from that seq on are not in its state.
    pub(crate) fn save_objects(&self, next_seq: &dyn Fn() -> u64) -> Vec<pb::ObjectState> {
        // A snapshot must not see half of an atomic batch.
        let _gate = self.gate.read();
        let objects: Vec<(String, Arc<Stored>)> = self
            .objects
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        objects
            .into_iter()
            .map(|(name, stored)| save_one(name, &stored, next_seq))
            .collect()
    }

    /// Puts back the objects of a snapshot. Conditions come last, so that
    /// the lock each is bound to exists.
    pub(crate) fn restore_objects(&self, states: Vec<pb::ObjectState>) -> Result<()> {
        let (conditions, others): (Vec<_>, Vec<_>) = states
            .into_iter()
            .partition(|s| s.open.as_ref().map(|o| o.kind) == Some(Kind::Condition as i32));
        for s in others.into_iter().chain(conditions) {
            let name = s.name.clone();
            let object = self
                .restore_one(s)
                .map_err(|e| StoreError::Internal(format!("snapshot object {name:?}: {e}")))?;
            self.objects.insert(name, Arc::new(object));
        }
        Ok(())
    }

    pub(super) fn restore_one(&self, s: pb::ObjectState) -> Result<Stored> {
        let open = s.open.ok_or_else(|| StoreError::missing_field("open"))?;
        let kind = Kind::try_from(open.kind)
            .map_err(|_| StoreError::InvalidArgument(format!("unknown kind {}", open.kind)))?;
        let object = match (kind, s.state) {
            (Kind::Dict, Some(State::Dict(m))) => Object::Dict(dict::Dict::restore(pairs(m)?)),
            (Kind::List, Some(State::List(l))) => Object::List(list::List::restore(vals(Some(l))?)),
            (Kind::Value, Some(State::Value(v))) => {
                Object::Value(cell::Cell::new(Val::from_wire(v)?))
            }
            (Kind::Semaphore | Kind::BoundedSemaphore, Some(State::Semaphore(st))) => {
                Object::Semaphore(semaphore::Semaphore::restore(
                    st.value,
                    open.size,
                    kind == Kind::BoundedSemaphore,
                ))
            }
            (Kind::Event, Some(State::Event(flag))) => Object::Event(event::Event::restore(flag)),
            (Kind::Queue | Kind::JoinableQueue, Some(State::Queue(q))) => Object::Queue(
                queue::Queue::restore(
                    open.size,
                    kind == Kind::JoinableQueue,
                    vals(q.items)?,
                    q.unfinished,
                )
                .limited(self.limits.max_queue_len),
            ),
            (Kind::Namespace, Some(State::Namespace(m))) => {
                Object::Namespace(namespace::Namespace::restore(pairs(m)?))
            }
            (Kind::Array, Some(State::Array(l))) => {
                let t = ArrayType::try_from(open.array_type)
                    .map_err(|_| StoreError::InvalidArgument("unknown array type".into()))?;
                Object::Array(array::Array::restore(t, open.size, vals(Some(l))?)?)
            }
            (Kind::Pool, Some(State::Pool(p))) => {
                Object::Pool(pool::Pool::restore(p, self.limits.max_queue_len)?)
            }
            (Kind::Condition, None) => {
                let lock = if open.lock.is_empty() {
                    None
                } else {
                    Some(self.lock_for_condition(&open.lock)?)
                };
                Object::new(kind, open.clone(), lock, &self.limits)?
            }
            (Kind::Lock | Kind::Rlock | Kind::Barrier | Kind::Pipe, None) => {
                Object::new(kind, open.clone(), None, &self.limits)?
            }
            (kind, state) => {
                return Err(StoreError::InvalidArgument(format!(
                    "a {} cannot hold {state:?}",
                    super::kind_name(kind)
                )))
            }
        };
        Ok(Stored { open, object })
    }

    /// After a restart: every semaphore permit a (now gone) session held
    /// comes back, and every task one ran is queued again.
    pub(crate) fn release_all_holders(&self) {
        for e in self.objects.iter() {
            match &e.value().object {
                Object::Semaphore(s) => s.release_all_holders(),
                Object::Pool(p) => {
                    p.release_all();
                }
                _ => {}
            }
        }
    }
}
