//! The shared list: Python's `list`, with Python's index rules (negative
//! indexes count from the end, slices clamp, `insert` clamps).

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};

use super::error::{Result, StoreError};
use super::index::{clamp, position, slice};
use super::journal::Recorder;
use super::reply;
use super::val::Val;
use super::watch::{Change, Feed, Snapshot};

#[derive(Default)]
pub struct List {
    items: Mutex<Vec<Val>>,
    feed: Feed,
}

fn out_of_range(name: &str, index: i64, len: usize) -> StoreError {
    StoreError::OutOfRange(format!(
        "list {name:?}: index {index} out of range (length {len})"
    ))
}

impl List {
    pub fn apply(&self, name: &str, op: Op, rec: &Recorder) -> Result<OpResult> {
        match op {
            Op::ListPush(o) => {
                let v = Val::required(o.value, "value")?;
                let mut items = self.items.lock();
                rec.commit();
                self.feed.publish(|| Change::Pushed(v.clone()));
                items.push(v);
                Ok(reply::unit())
            }
            Op::ListExtend(o) => {
                let vs: Vec<Val> = o
                    .values
                    .into_iter()
                    .map(Val::from_wire)
                    .collect::<Result<_>>()?;
                let mut items = self.items.lock();
                rec.commit();
                self.feed.publish(|| Change::Extended(vs.clone()));
                items.extend(vs);
                Ok(reply::unit())
            }
            Op::ListGet(o) => {
                let items = self.items.lock();
                let i = position(o.index, items.len())
                    .ok_or_else(|| out_of_range(name, o.index, items.len()))?;
                Ok(reply::value(&items[i]))
            }
            Op::ListSet(o) => {
                let v = Val::required(o.value, "value")?;
                let mut items = self.items.lock();
                let len = items.len();
                let i = position(o.index, len).ok_or_else(|| out_of_range(name, o.index, len))?;
                rec.commit();
                self.feed.publish(|| Change::ItemSet {
                    index: i,
                    value: v.clone(),
                });
                items[i] = v;
                Ok(reply::unit())
            }
            Op::ListInsert(o) => {
                let v = Val::required(o.value, "value")?;
                let mut items = self.items.lock();
                let at = clamp(o.index, items.len());
                rec.commit();
                self.feed.publish(|| Change::Inserted {
                    index: at,
                    value: v.clone(),
                });
                items.insert(at, v);
                Ok(reply::unit())
            }
            Op::ListPop(o) => {
                let mut items = self.items.lock();
                let len = items.len();
                if len == 0 {
                    return Err(StoreError::OutOfRange(format!(
                        "pop from empty list {name:?}"
                    )));
                }
                let index = o.index.unwrap_or(-1);
                let i = position(index, len).ok_or_else(|| out_of_range(name, index, len))?;
                rec.commit();
                let value = items.remove(i);
                self.feed.publish(|| Change::Popped {
                    index: i,
                    value: value.clone(),
                });
                Ok(reply::value(&value))
            }
            Op::ListRemove(o) => {
                let v = Val::required(o.value, "value")?;
                let mut items = self.items.lock();
                let i = items.iter().position(|x| *x == v).ok_or_else(|| {
                    StoreError::NotFound(format!("list {name:?}: value not in list"))
                })?;
                rec.commit();
                let value = items.remove(i);
                self.feed.publish(|| Change::Popped { index: i, value });
                Ok(reply::unit())
            }
            Op::ListIndex(o) => {
                let v = Val::required(o.value, "value")?;
                let items = self.items.lock();
                let i = items.iter().position(|x| *x == v).ok_or_else(|| {
                    StoreError::NotFound(format!("list {name:?}: value not in list"))
                })?;
                Ok(reply::count(i))
            }
            Op::ListCount(o) => {
                let v = Val::required(o.value, "value")?;
                Ok(reply::count(
                    self.items.lock().iter().filter(|x| **x == v).count(),
                ))
            }
            Op::ListLen(_) => Ok(reply::count(self.items.lock().len())),
            Op::ListRange(o) => {
                let items = self.items.lock();
                let range = slice(o.start, o.stop, items.len());
                Ok(reply::values(&items[range]))
            }
            Op::ListClear(_) => {
                let mut items = self.items.lock();
                rec.commit();
                self.feed.publish(|| Change::Cleared);
                items.clear();
                Ok(reply::unit())
            }
            Op::ListReverse(_) => {
                let mut items = self.items.lock();
                rec.commit();
                self.feed.publish(|| Change::Reversed);
                items.reverse();
                Ok(reply::unit())
            }
            Op::ListSnapshot(_) => Ok(reply::values(self.items.lock().iter())),
            other => Err(super::misrouted(name, &other)),
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        vec![("len", Val::Int(self.items.lock().len() as i64))]
    }

    /// The items, and the seq `next_seq` gives while they are locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (Vec<Val>, u64) {
        let items = self.items.lock();
        (items.clone(), next_seq())
    }

    pub fn restore(items: Vec<Val>) -> Self {
        List {
            items: Mutex::new(items),
            feed: Feed::default(),
        }
    }

    /// Takes `saved`'s contents in place (an atomic batch being undone),
    /// keeping this object's feed and so its watchers.
    pub fn put_back(&self, saved: Self) {
        *self.items.lock() = saved.items.into_inner();
    }

    /// How many items: what an atomic batch notes before appending, to
    /// undo it with [`List::truncate`] instead of copying the list.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Drops the items past the first `len` (undoes appends).
    pub fn truncate(&self, len: usize) {
        self.items.lock().truncate(len);
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Runs `f` with the list locked, on its feed and its state.
    pub fn locked(&self, f: &mut dyn FnMut(&Feed, &dyn Fn() -> Snapshot)) {
        let items = self.items.lock();
        f(&self.feed, &|| Snapshot::List(items.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl List {
        fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none())
        }
    }

    fn list_of(n: i64) -> List {
        let l = List::default();
        *l.items.lock() = (0..n).map(Val::Int).collect();
        l
    }

    #[test]
    fn negative_indexes_count_from_the_end() {
        let l = list_of(3);
        let get = |i| l.ap("l", Op::ListGet(pb::ListGet { index: i }));
        assert_eq!(as_value(get(-1).unwrap()), Val::Int(2));
        assert_eq!(as_value(get(0).unwrap()), Val::Int(0));
        assert!(matches!(get(3), Err(StoreError::OutOfRange(_))));
        assert!(matches!(get(-4), Err(StoreError::OutOfRange(_))));
    }

    #[test]
    fn range_follows_python_slices() {
        let l = list_of(5);
        let range = |start, stop| {
            as_values(
                l.ap("l", Op::ListRange(pb::ListRange { start, stop }))
                    .unwrap(),
            )
        };
        assert_eq!(range(Some(1), Some(3)), vec![Val::Int(1), Val::Int(2)]);
        assert_eq!(range(Some(-2), None), vec![Val::Int(3), Val::Int(4)]);
        assert_eq!(range(Some(4), Some(2)), vec![]);
        assert_eq!(range(Some(-100), Some(100)).len(), 5);
    }

    #[test]
    fn insert_clamps_and_pop_takes_an_index() {
        let l = list_of(2);
        l.ap(
            "l",
            Op::ListInsert(pb::ListInsert {
                index: 100,
                value: Some(Val::Int(9).to_wire()),
            }),
        )
        .unwrap();
        l.ap(
            "l",
            Op::ListInsert(pb::ListInsert {
                index: -100,
                value: Some(Val::Int(7).to_wire()),
            }),
        )
        .unwrap();
        assert_eq!(
            *l.items.lock(),
            vec![Val::Int(7), Val::Int(0), Val::Int(1), Val::Int(9)]
        );
        let popped = l
            .ap("l", Op::ListPop(pb::ListPop { index: Some(1) }))
            .unwrap();
        assert_eq!(as_value(popped), Val::Int(0));
        let popped = l.ap("l", Op::ListPop(pb::ListPop { index: None })).unwrap();
        assert_eq!(as_value(popped), Val::Int(9));
    }

    #[test]
    fn pop_from_empty_and_remove_of_absent_fail_without_change() {
        let l = List::default();
        assert!(matches!(
            l.ap("l", Op::ListPop(pb::ListPop { index: None })),
            Err(StoreError::OutOfRange(_))
        ));
        let l = list_of(2);
        let err = l
            .ap(
                "l",
                Op::ListRemove(pb::ListRemove {
                    value: Some(Val::Int(5).to_wire()),
                }),
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(l.items.lock().len(), 2);
    }

    #[test]
    fn count_index_and_reverse() {
        let l = List::default();
        *l.items.lock() = vec![Val::Int(1), Val::Int(2), Val::Int(1)];
        let count = l.ap(
            "l",
            Op::ListCount(pb::ListCount {
                value: Some(Val::Int(1).to_wire()),
            }),
        );
        assert_eq!(as_count(count.unwrap()), 2);
        let index = l.ap(
            "l",
            Op::ListIndex(pb::ListIndex {
                value: Some(Val::Int(2).to_wire()),
            }),
        );
        assert_eq!(as_count(index.unwrap()), 1);
        l.ap("l", Op::ListReverse(pb::ListReverse {})).unwrap();
        assert_eq!(*l.items.lock(), vec![Val::Int(1), Val::Int(2), Val::Int(1)]);
    }
}
