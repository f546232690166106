//! The shared value (Python's `manager.Value`): one cell with atomic
//! compare-and-swap and fetch-add, the fix for the classic `v.value += 1` race.

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};

use super::error::{Result, StoreError};
use super::journal::Recorder;
use super::reply;
use super::val::Val;
use super::watch::{Change, Feed, Snapshot};

pub struct Cell {
    value: Mutex<Val>,
    feed: Feed,
}

impl Cell {
    pub fn new(initial: Val) -> Self {
        Cell {
            value: Mutex::new(initial),
            feed: Feed::default(),
        }
    }

    /// Takes `saved`'s contents in place (an atomic batch being undone),
    /// keeping this object's feed and so its watchers.
    pub fn put_back(&self, saved: Self) {
        *self.value.lock() = saved.value.into_inner();
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Runs `f` with the value locked, on its feed and its state.
    pub fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot)) {
        let value = self.value.lock();
        f(&self.feed, &|| Snapshot::Value(value.clone()))
    }

    pub fn apply(&self, name: &str, op: Op, rec: &Recorder) -> Result<OpResult> {
        match op {
            Op::ValueGet(_) => Ok(reply::value(&self.value.lock())),
            Op::ValueSet(o) => {
                let new = Val::required(o.value, "value")?;
                let mut value = self.value.lock();
                rec.commit();
                self.feed.publish(|| Change::ValueSet(new.clone()));
                *value = new;
                Ok(reply::unit())
            }
            Op::ValueSwap(o) => {
                let new = Val::required(o.value, "value")?;
                let mut value = self.value.lock();
                rec.commit();
                self.feed.publish(|| Change::ValueSet(new.clone()));
                let old = std::mem::replace(&mut *value, new);
                Ok(reply::value(&old))
            }
            Op::ValueCompareAndSwap(o) => {
                let expected = Val::required(o.expected, "expected")?;
                let new = Val::required(o.new, "new")?;
                let mut value = self.value.lock();
                let swapped = *value == expected;
                if swapped {
                    rec.commit();
                    self.feed.publish(|| Change::ValueSet(new.clone()));
                    *value = new;
                }
                Ok(reply::swap(swapped, Some(&value)))
            }
            Op::ValueFetchAdd(o) => {
                let delta = Val::required(o.delta, "delta")?;
                let mut value = self.value.lock();
                // A value created without an initial one is null: count it as 0.
                let previous = match &*value {
                    Val::Null => Val::zero_like(&delta),
                    v => v.clone(),
                };
                let new = previous.add(&delta).map_err(|e| match e {
                    StoreError::InvalidArgument(m) => {
                        StoreError::InvalidArgument(format!("value {name:?}: {m}"))
                    }
                    other => other,
                })?;
                rec.commit();
                self.feed.publish(|| Change::ValueSet(new.clone()));
                *value = new.clone();
                Ok(reply::pair(&previous, &new))
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// The value, and the seq `next_seq` gives while it is locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (Val, u64) {
        let value = self.value.lock();
        (value.clone(), next_seq())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Cell {
        fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none())
        }
    }

    #[test]
    fn fetch_add_on_a_fresh_value_starts_at_zero() {
        let c = Cell::new(Val::Null);
        let add = |d: i64| {
            c.ap(
                "v",
                Op::ValueFetchAdd(pb::ValueFetchAdd {
                    delta: Some(Val::Int(d).to_wire()),
                }),
            )
        };
        assert_eq!(as_pair(add(2).unwrap()), (Val::Int(0), Val::Int(2)));
        assert_eq!(as_pair(add(3).unwrap()), (Val::Int(2), Val::Int(5)));
    }

    #[test]
    fn fetch_add_on_a_string_is_refused_and_keeps_it() {
        let c = Cell::new(s("x"));
        let r = c.ap(
            "v",
            Op::ValueFetchAdd(pb::ValueFetchAdd {
                delta: Some(Val::Int(1).to_wire()),
            }),
        );
        assert!(matches!(r, Err(StoreError::InvalidArgument(_))));
        assert_eq!(*c.value.lock(), s("x"));
    }

    #[test]
    fn compare_and_swap_and_swap() {
        let c = Cell::new(Val::Int(1));
        let cas = |e: i64, n: i64| {
            as_swap(
                c.ap(
                    "v",
                    Op::ValueCompareAndSwap(pb::ValueCompareAndSwap {
                        expected: Some(Val::Int(e).to_wire()),
                        new: Some(Val::Int(n).to_wire()),
                    }),
                )
                .unwrap(),
            )
        };
        assert_eq!(cas(0, 5), (false, Some(Val::Int(1))));
        assert_eq!(cas(1, 5), (true, Some(Val::Int(5))));
        let old = c.ap(
            "v",
            Op::ValueSwap(pb::ValueSwap {
                value: Some(Val::Int(7).to_wire()),
            }),
        );
        assert_eq!(as_value(old.unwrap()), Val::Int(5));
    }
}
