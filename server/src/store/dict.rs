//! The shared dict: Python's `dict`, plus atomic compare-and-swap and
//! fetch-add on an entry.
//!
//! Entries keep insertion order, except that removing a key moves the last
//! entry into its place (an O(1) removal; Python shifts instead).

use indexmap::IndexMap;
use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};

use super::error::{Result, StoreError};
use super::journal::Recorder;
use super::reply;
use super::val::Val;
use super::watch::{Change, Feed, Snapshot};

#[derive(Default)]
pub struct Dict {
    entries: Mutex<IndexMap<Val, Val>>,
    feed: Feed,
}

impl Dict {
    /// Applies one dict operation. Arguments are validated before the map is
    /// touched, so a failed operation changes nothing.
    pub fn apply(&self, name: &str, op: Op, rec: &Recorder) -> Result<OpResult> {
        match op {
            Op::DictGet(o) => {
                let key = Val::required(o.key, "key")?;
                Ok(reply::maybe(self.entries.lock().get(&key)))
            }
            Op::DictSet(o) => {
                let key = Val::required(o.key, "key")?;
                let value = Val::required(o.value, "value")?;
                let mut entries = self.entries.lock();
                rec.commit();
                self.feed.publish(|| Change::KeySet {
                    key: key.clone(),
                    value: value.clone(),
                });
                Ok(reply::maybe(entries.insert(key, value).as_ref()))
            }
            Op::DictRemove(o) => {
                let key = Val::required(o.key, "key")?;
                let mut entries = self.entries.lock();
                let removed = entries.swap_remove(&key);
                if let Some(value) = &removed {
                    rec.commit();
                    self.feed.publish(|| Change::KeyRemoved {
                        key: key.clone(),
                        value: value.clone(),
                    });
                }
                Ok(reply::maybe(removed.as_ref()))
            }
            Op::DictContains(o) => {
                let key = Val::required(o.key, "key")?;
                Ok(reply::flag(self.entries.lock().contains_key(&key)))
            }
            Op::DictLen(_) => Ok(reply::count(self.entries.lock().len())),
            Op::DictKeys(_) => Ok(reply::values(self.entries.lock().keys())),
            Op::DictValues(_) => Ok(reply::values(self.entries.lock().values())),
            Op::DictItems(_) => Ok(reply::pairs(self.entries.lock().iter())),
            Op::DictUpdate(o) => {
                let new: Vec<(Val, Val)> = o
                    .entries
                    .into_iter()
                    .map(Val::pair_from_wire)
                    .collect::<Result<_>>()?;
                let mut entries = self.entries.lock();
                rec.commit();
                self.feed.publish(|| Change::Updated(new.clone()));
                entries.extend(new);
                Ok(reply::unit())
            }
            Op::DictClear(_) => {
                let mut entries = self.entries.lock();
                rec.commit();
                self.feed.publish(|| Change::Cleared);
                entries.clear();
                Ok(reply::unit())
            }
            Op::DictSetDefault(o) => {
                let key = Val::required(o.key, "key")?;
                let default = Val::required(o.default, "default")?;
                let mut entries = self.entries.lock();
                if !entries.contains_key(&key) {
                    rec.commit();
                    self.feed.publish(|| Change::KeySet {
                        key: key.clone(),
                        value: default.clone(),
                    });
                }
                Ok(reply::value(entries.entry(key).or_insert(default)))
            }
            Op::DictPopItem(_) => match self.entries.lock().pop() {
                Some((k, v)) => {
                    rec.commit();
                    self.feed.publish(|| Change::KeyRemoved {
                        key: k.clone(),
                        value: v.clone(),
                    });
                    Ok(reply::pair(&k, &v))
                }
                None => Err(StoreError::NotFound(format!(
                    "popitem(): dict {name:?} is empty"
                ))),
            },
            Op::DictCompareAndSwap(o) => {
                let key = Val::required(o.key, "key")?;
                let expected = match o.expected {
                    Some(m) => m.value.map(Val::from_wire).transpose()?,
                    None => return Err(StoreError::missing_field("expected")),
                };
                let new = Val::required(o.new, "new")?;
                let mut entries = self.entries.lock();
                if entries.get(&key) == expected.as_ref() {
                    rec.commit();
                    self.feed.publish(|| Change::KeySet {
                        key: key.clone(),
                        value: new.clone(),
                    });
                    entries.insert(key, new.clone());
                    Ok(reply::swap(true, Some(&new)))
                } else {
                    Ok(reply::swap(false, entries.get(&key)))
                }
            }
            Op::DictFetchAdd(o) => {
                let key = Val::required(o.key, "key")?;
                let delta = Val::required(o.delta, "delta")?;
                let mut entries = self.entries.lock();
                let previous = entries
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| Val::zero_like(&delta));
                let new = previous.add(&delta).map_err(|e| match e {
                    StoreError::InvalidArgument(m) => {
                        StoreError::InvalidArgument(format!("dict {name:?}: {m}"))
                    }
                    other => other,
                })?;
                rec.commit();
                self.feed.publish(|| Change::KeySet {
                    key: key.clone(),
                    value: new.clone(),
                });
                entries.insert(key, new.clone());
                Ok(reply::pair(&previous, &new))
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        vec![("len", Val::Int(self.entries.lock().len() as i64))]
    }

    /// The entries, and the seq `next_seq` gives while they are locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (Vec<(Val, Val)>, u64) {
        let entries = self.entries.lock();
        let seq = next_seq();
        (
            entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            seq,
        )
    }

    pub fn restore(entries: Vec<(Val, Val)>) -> Self {
        Dict {
            entries: Mutex::new(entries.into_iter().collect()),
            feed: Feed::default(),
        }
    }

    /// Takes `saved`'s contents in place (an atomic batch being undone),
    /// keeping this object's feed and so its watchers.
    pub fn put_back(&self, saved: Self) {
        *self.entries.lock() = saved.entries.into_inner();
    }

    /// Where `key` is and what it holds: what an atomic batch notes before
    /// a change to that one key, to undo it with [`Dict::undo_key`]
    /// instead of copying the whole dict.
    pub fn key_state(&self, key: &Val) -> Option<(usize, Val)> {
        self.entries
            .lock()
            .get_full(key)
            .map(|(i, _, v)| (i, v.clone()))
    }

    /// Undoes a change to `key` alone, which found it as `before`. Undone
    /// in the reverse order they were made, such changes leave the dict
    /// exactly as it was, order included: a new key was appended (so it is
    /// last again when its turn comes), a replaced value kept its place,
    /// and a removed key had the last entry moved into its place (put it
    /// back at the end and swap).
    pub fn undo_key(&self, key: &Val, before: Option<(usize, Val)>) {
        let mut entries = self.entries.lock();
        match before {
            None => {
                entries.swap_remove(key);
            }
            Some((index, value)) => match entries.get_mut(key) {
                Some(now) => *now = value,
                None => {
                    let (last, _) = entries.insert_full(key.clone(), value);
                    if index < last {
                        entries.swap_indices(index, last);
                    }
                }
            },
        }
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Runs `f` with the dict locked, on its feed and its state.
    pub fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot)) {
        let entries = self.entries.lock();
        f(&self.feed, &|| {
            Snapshot::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Dict {
        fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none())
        }
    }

    fn set(d: &Dict, k: Val, v: Val) -> OpResult {
        d.ap(
            "d",
            Op::DictSet(pb::DictSet {
                key: Some(k.to_wire()),
                value: Some(v.to_wire()),
            }),
        )
        .unwrap()
    }

    #[test]
    fn set_returns_the_previous_value() {
        let d = Dict::default();
        assert_eq!(as_maybe(set(&d, s("a"), Val::Int(1))), None);
        assert_eq!(as_maybe(set(&d, s("a"), Val::Int(2))), Some(Val::Int(1)));
        let got = d
            .ap(
                "d",
                Op::DictGet(pb::DictGet {
                    key: Some(s("a").to_wire()),
                }),
            )
            .unwrap();
        assert_eq!(as_maybe(got), Some(Val::Int(2)));
    }

    #[test]
    fn a_missing_key_field_is_invalid_and_changes_nothing() {
        let d = Dict::default();
        let err = d
            .ap(
                "d",
                Op::DictSet(pb::DictSet {
                    key: None,
                    value: Some(Val::Int(1).to_wire()),
                }),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument(_)));
        assert_eq!(d.entries.lock().len(), 0);
    }

    #[test]
    fn compare_and_swap_only_swaps_on_match() {
        let d = Dict::default();
        let cas = |expected: Option<Val>, new: Val| {
            d.ap(
                "d",
                Op::DictCompareAndSwap(pb::DictCompareAndSwap {
                    key: Some(s("k").to_wire()),
                    expected: Some(reply::wire_maybe(expected.as_ref())),
                    new: Some(new.to_wire()),
                }),
            )
            .unwrap()
        };
        assert_eq!(as_swap(cas(None, Val::Int(1))), (true, Some(Val::Int(1))));
        assert_eq!(as_swap(cas(None, Val::Int(2))), (false, Some(Val::Int(1))));
        assert_eq!(
            as_swap(cas(Some(Val::Int(1)), Val::Int(3))),
            (true, Some(Val::Int(3)))
        );
    }

    #[test]
    fn fetch_add_counts_a_missing_key_as_zero_and_refuses_non_numbers() {
        let d = Dict::default();
        let add = |k: &str, delta: Val| {
            d.ap(
                "d",
                Op::DictFetchAdd(pb::DictFetchAdd {
                    key: Some(s(k).to_wire()),
                    delta: Some(delta.to_wire()),
                }),
            )
        };
        assert_eq!(
            as_pair(add("n", Val::Int(5)).unwrap()),
            (Val::Int(0), Val::Int(5))
        );
        assert_eq!(
            as_pair(add("n", Val::Int(-2)).unwrap()),
            (Val::Int(5), Val::Int(3))
        );
        set(&d, s("t"), s("text"));
        assert!(matches!(
            add("t", Val::Int(1)),
            Err(StoreError::InvalidArgument(_))
        ));
        assert_eq!(d.entries.lock().get(&s("t")), Some(&s("text")));
    }

    #[test]
    fn popitem_is_lifo_and_fails_when_empty() {
        let d = Dict::default();
        set(&d, s("a"), Val::Int(1));
        set(&d, s("b"), Val::Int(2));
        let pop = || d.ap("d", Op::DictPopItem(pb::DictPopItem {}));
        assert_eq!(as_pair(pop().unwrap()), (s("b"), Val::Int(2)));
        assert_eq!(as_pair(pop().unwrap()), (s("a"), Val::Int(1)));
        assert!(matches!(pop(), Err(StoreError::NotFound(_))));
    }
}
