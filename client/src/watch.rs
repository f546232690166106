//! Watching an object: a stream of its changes, as they are applied.
//!
//! `watch()` on a dict, list, value, queue or event proxy returns a
//! [`Watch`]: first [`ChangeKind::Started`] (or, from
//! `watch_from_snapshot()`, a [`ChangeKind::Snapshot`] of the whole state),
//! then one [`Change`] per change, in the order the server applied them.
//! Every change carries the object's `seq`, which grows by one per change,
//! so a gap would show.
//!
//! A watcher that reads too slowly does not slow the server down: it falls
//! behind, and then receives [`ChangeKind::Lagged`] (how many changes it
//! missed) followed by a [`ChangeKind::Snapshot`] of the state, on top of
//! which the later changes apply. When the object is deleted the watch ends
//! with [`ChangeKind::Deleted`].
//!
//! ```no_run
//! # async fn demo() -> procshare::Result<()> {
//! use procshare::ChangeKind;
//! let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
//! let scores = m.dict::<String, i64>("scores").await?;
//! let mut watch = scores.watch().await?;
//! while let Some(change) = watch.next().await? {
//!     match change.kind {
//!         ChangeKind::KeySet { key, value } => println!("#{} {key} = {value}", change.seq),
//!         ChangeKind::KeyRemoved { key, .. } => println!("#{} {key} removed", change.seq),
//!         other => println!("#{} {other:?}", change.seq),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use procshare_proto::{self as pb, watch_event::Kind as W, watch_snapshot::State as S};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value as Json};
use tonic::codegen::tokio_stream::Stream;

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::value::{from_wire, required};

/// One event of a [`Watch`]: what changed, and its place in the object's
/// history. `V` is the type of values (and items), `K` of a dict's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<V, K = ()> {
    /// The object's change count after this change (for `Started`,
    /// `Snapshot` and `Lagged`: of the state they describe). Per object and
    /// per server run; the next change has `seq + 1`.
    pub seq: u64,
    pub kind: ChangeKind<V, K>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind<V, K = ()> {
    /// The watch begins: changes after `seq` follow.
    Started,
    /// The whole state (first event of `watch_from_snapshot()`, or after
    /// `Lagged`).
    Snapshot(WatchState<V, K>),
    /// This watcher fell behind: `missed` changes are not delivered one by
    /// one; the snapshot that follows holds their effect.
    Lagged { missed: u64 },
    /// The object was deleted; the watch ends.
    Deleted,
    /// dict: `key` now holds `value` (insert, setdefault, compare-and-swap,
    /// fetch-add).
    KeySet { key: K, value: V },
    /// dict: `key`, which held `value`, was removed (remove, pop, popitem).
    KeyRemoved { key: K, value: V },
    /// dict: `update`, its entries in order.
    Updated(Vec<(K, V)>),
    /// dict, list: every entry removed.
    Cleared,
    /// list: appended; queue: put.
    Pushed(V),
    /// list: extended.
    Extended(Vec<V>),
    /// list: the item at `index` was removed (pop, remove); queue: the
    /// oldest item was taken (index 0).
    Popped { index: u64, value: V },
    /// list: `list[index] = value`.
    ItemSet { index: u64, value: V },
    /// list: `value` inserted, now at `index`.
    Inserted { index: u64, value: V },
    /// list: reversed in place.
    Reversed,
    /// value: its new value.
    ValueSet(V),
    /// event: the flag after a set (`true`) or a clear (`false`).
    Flag(bool),
    /// joinable queue: a task was marked done; items still unfinished.
    TaskDone { unfinished: u64 },
}

/// The whole state of a watched object.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchState<V, K = ()> {
    Dict(Vec<(K, V)>),
    List(Vec<V>),
    Value(V),
    /// The items, oldest first, and how many were put and not yet marked
    /// done.
    Queue {
        items: Vec<V>,
        unfinished: u64,
    },
    Event(bool),
}

/// The changes of one object, in order: an async stream (`next()`, or the
/// [`Stream`] trait). See the [module documentation](self).
pub struct Watch<V, K = ()> {
    stream: tonic::Streaming<pb::WatchEvent>,
    done: bool,
    /// The parts of a snapshot received so far, while more follow.
    partial: Option<pb::WatchEvent>,
    types: PhantomData<fn() -> (V, K)>,
}

impl<V: DeserializeOwned, K: DeserializeOwned> Watch<V, K> {
    /// Starts watching `name` on the connection's channel.
    pub(crate) async fn start(conn: &Connection, name: &str, snapshot: bool) -> Result<Self> {
        let mut client = conn.grpc();
        let request = pb::WatchRequest {
            client_id: conn.client_id().to_string(),
            name: name.to_owned(),
            snapshot,
            // A snapshot over the server's message limit comes in parts,
            // joined here: a big object can be watched from its state.
            parts: true,
        };
        let started = tokio::time::timeout(crate::DEFAULT_CALL_TIMEOUT, client.watch(request))
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "no answer from {} to a watch of {name:?}",
                    conn.url()
                ))
            })?;
        Ok(Watch {
            stream: started.map_err(Error::from)?.into_inner(),
            done: false,
            partial: None,
            types: PhantomData,
        })
    }

    /// The next change; `Ok(None)` once the watch is over (after
    /// [`ChangeKind::Deleted`]). A server that shuts down ends the watch
    /// with [`Error::Unavailable`].
    pub async fn next(&mut self) -> Result<Option<Change<V, K>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let got = self.stream.message().await;
            if let Some(settled) = self.settle(got.map_err(Error::from)) {
                return settled;
            }
        }
    }

    /// What a message from the stream means: a change, the end, an error,
    /// or (`None`) nothing yet: a part of a snapshot with more to come.
    fn settle(
        &mut self,
        got: Result<Option<pb::WatchEvent>>,
    ) -> Option<Result<Option<Change<V, K>>>> {
        Some(match got {
            Ok(Some(e)) => match self.join(e) {
                Ok(None) => return None,
                Ok(Some(whole)) => decode(whole).map(|change| {
                    self.done = matches!(change.kind, ChangeKind::Deleted);
                    Some(change)
                }),
                Err(e) => {
                    self.done = true;
                    Err(e)
                }
            },
            Ok(None) => {
                self.done = true;
                Err(Error::Unavailable(
                    "the server ended the watch (is it shutting down?)".into(),
                ))
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        })
    }

    /// Joins the parts of a snapshot (`more` set on all but the last):
    /// `None` while more are to come, then the whole snapshot.
    fn join(&mut self, e: pb::WatchEvent) -> Result<Option<pb::WatchEvent>> {
        let more = matches!(&e.kind, Some(W::Snapshot(s)) if s.more);
        let whole = match self.partial.take() {
            None => e,
            Some(mut so_far) => {
                join_snapshot(&mut so_far, e)?;
                so_far
            }
        };
        if more {
            self.partial = Some(whole);
            return Ok(None);
        }
        Ok(Some(whole))
    }
}

/// Appends snapshot part `next` to `so_far`; it must be the same
/// snapshot's (same seq, same kind of state).
fn join_snapshot(so_far: &mut pb::WatchEvent, next: pb::WatchEvent) -> Result<()> {
    let broken = || Error::Protocol("a snapshot in parts was broken off".into());
    if next.seq != so_far.seq {
        return Err(broken());
    }
    let (Some(W::Snapshot(a)), Some(W::Snapshot(b))) = (&mut so_far.kind, next.kind) else {
        return Err(broken());
    };
    match (&mut a.state, b.state) {
        (Some(S::Dict(m)), Some(S::Dict(n))) => m.entries.extend(n.entries),
        (Some(S::List(l)), Some(S::List(n))) | (Some(S::Queue(l)), Some(S::Queue(n))) => {
            l.items.extend(n.items)
        }
        _ => return Err(broken()),
    }
    a.more = b.more;
    Ok(())
}

impl<V: DeserializeOwned, K: DeserializeOwned> Stream for Watch<V, K> {
    type Item = Result<Change<V, K>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(got) => {
                    let got = got.transpose().map_err(Error::from);
                    if let Some(settled) = self.settle(got) {
                        return Poll::Ready(settled.transpose());
                    }
                }
            }
        }
    }
}

fn value<V: DeserializeOwned>(v: Option<pb::Value>) -> Result<V> {
    from_wire(required(v)?)
}

fn values<V: DeserializeOwned>(l: pb::ValueList) -> Result<Vec<V>> {
    l.items.into_iter().map(from_wire).collect()
}

fn pairs<V: DeserializeOwned, K: DeserializeOwned>(m: pb::ValueMap) -> Result<Vec<(K, V)>> {
    m.entries
        .into_iter()
        .map(|p| Ok((value(p.first)?, value(p.second)?)))
        .collect()
}

fn decode<V: DeserializeOwned, K: DeserializeOwned>(e: pb::WatchEvent) -> Result<Change<V, K>> {
    let kind = match e
        .kind
        .ok_or_else(|| Error::Protocol("watch event without a kind".into()))?
    {
        W::Started(_) => ChangeKind::Started,
        W::Lagged(l) => ChangeKind::Lagged { missed: l.missed },
        W::Deleted(_) => ChangeKind::Deleted,
        W::Snapshot(s) => ChangeKind::Snapshot(
            match s
                .state
                .ok_or_else(|| Error::Protocol("snapshot without a state".into()))?
            {
                S::Dict(m) => WatchState::Dict(pairs(m)?),
                S::List(l) => WatchState::List(values(l)?),
                S::Value(v) => WatchState::Value(from_wire(v)?),
                S::Queue(l) => WatchState::Queue {
                    items: values(l)?,
                    unfinished: s.unfinished,
                },
                S::Event(f) => WatchState::Event(f),
            },
        ),
        W::KeySet(k) => ChangeKind::KeySet {
            key: value(k.key)?,
            value: value(k.value)?,
        },
        W::KeyRemoved(k) => ChangeKind::KeyRemoved {
            key: value(k.key)?,
            value: value(k.value)?,
        },
        W::Updated(m) => ChangeKind::Updated(pairs(m)?),
        W::Cleared(_) => ChangeKind::Cleared,
        W::Pushed(v) => ChangeKind::Pushed(from_wire(v)?),
        W::Extended(l) => ChangeKind::Extended(values(l)?),
        W::Popped(i) => ChangeKind::Popped {
            index: i.index,
            value: value(i.value)?,
        },
        W::ItemSet(i) => ChangeKind::ItemSet {
            index: i.index,
            value: value(i.value)?,
        },
        W::Inserted(i) => ChangeKind::Inserted {
            index: i.index,
            value: value(i.value)?,
        },
        W::Reversed(_) => ChangeKind::Reversed,
        W::ValueSet(v) => ChangeKind::ValueSet(from_wire(v)?),
        W::Flag(f) => ChangeKind::Flag(f),
        W::TaskDone(n) => ChangeKind::TaskDone { unfinished: n },
    };
    Ok(Change { seq: e.seq, kind })
}

impl<V: Serialize, K: Serialize> Change<V, K> {
    /// The change as one JSON object, as `procshare watch` prints it:
    /// `{"seq": 3, "event": "key_set", "key": "a", "value": 1}`.
    ///
    /// ```
    /// use procshare::{Change, ChangeKind};
    /// let c: Change<i64, String> = Change {
    ///     seq: 3,
    ///     kind: ChangeKind::KeySet { key: "a".into(), value: 1 },
    /// };
    /// assert_eq!(
    ///     c.to_json().unwrap().to_string(),
    ///     r#"{"event":"key_set","key":"a","seq":3,"value":1}"#
    /// );
    /// ```
    pub fn to_json(&self) -> Result<Json> {
        fn j<T: Serialize>(v: &T) -> Result<Json> {
            Ok(serde_json::to_value(v)?)
        }
        let pairs = |entries: &[(K, V)]| -> Result<Json> {
            entries
                .iter()
                .map(|(k, v)| Ok(json!([j(k)?, j(v)?])))
                .collect::<Result<Vec<_>>>()
                .map(Json::Array)
        };
        let list = |items: &[V]| -> Result<Json> {
            items
                .iter()
                .map(j)
                .collect::<Result<Vec<_>>>()
                .map(Json::Array)
        };
        let mut out = match &self.kind {
            ChangeKind::Started => json!({"event": "started"}),
            ChangeKind::Snapshot(state) => match state {
                WatchState::Dict(e) => json!({"event": "snapshot", "dict": pairs(e)?}),
                WatchState::List(l) => json!({"event": "snapshot", "list": list(l)?}),
                WatchState::Value(v) => json!({"event": "snapshot", "value": j(v)?}),
                WatchState::Queue { items, unfinished } => {
                    json!({"event": "snapshot", "queue": list(items)?, "unfinished": unfinished})
                }
                WatchState::Event(f) => json!({"event": "snapshot", "flag": f}),
            },
            ChangeKind::Lagged { missed } => json!({"event": "lagged", "missed": missed}),
            ChangeKind::Deleted => json!({"event": "deleted"}),
            ChangeKind::KeySet { key, value } => {
                json!({"event": "key_set", "key": j(key)?, "value": j(value)?})
            }
            ChangeKind::KeyRemoved { key, value } => {
                json!({"event": "key_removed", "key": j(key)?, "value": j(value)?})
            }
            ChangeKind::Updated(e) => json!({"event": "updated", "entries": pairs(e)?}),
            ChangeKind::Cleared => json!({"event": "cleared"}),
            ChangeKind::Pushed(v) => json!({"event": "pushed", "value": j(v)?}),
            ChangeKind::Extended(l) => json!({"event": "extended", "values": list(l)?}),
            ChangeKind::Popped { index, value } => {
                json!({"event": "popped", "index": index, "value": j(value)?})
            }
            ChangeKind::ItemSet { index, value } => {
                json!({"event": "item_set", "index": index, "value": j(value)?})
            }
            ChangeKind::Inserted { index, value } => {
                json!({"event": "inserted", "index": index, "value": j(value)?})
            }
            ChangeKind::Reversed => json!({"event": "reversed"}),
            ChangeKind::ValueSet(v) => json!({"event": "value_set", "value": j(v)?}),
            ChangeKind::Flag(f) => json!({"event": "flag", "set": f}),
            ChangeKind::TaskDone { unfinished } => {
                json!({"event": "task_done", "unfinished": unfinished})
            }
        };
        out["seq"] = json!(self.seq);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> pb::Value {
        pb::Value {
            kind: Some(pb::value::Kind::Int(i)),
        }
    }

    fn part(seq: u64, state: S, more: bool) -> pb::WatchEvent {
        pb::WatchEvent {
            seq,
            kind: Some(W::Snapshot(pb::WatchSnapshot {
                state: Some(state),
                unfinished: 3,
                more,
            })),
        }
    }

    fn list(items: &[i64]) -> S {
        S::List(pb::ValueList {
            items: items.iter().map(|&i| int(i)).collect(),
        })
    }

    #[test]
    fn parts_of_one_snapshot_join_in_order_and_anything_else_is_refused() {
        let mut whole = part(7, list(&[1, 2]), true);
        join_snapshot(&mut whole, part(7, list(&[3]), true)).unwrap();
        join_snapshot(&mut whole, part(7, list(&[4, 5]), false)).unwrap();
        assert_eq!(whole, part(7, list(&[1, 2, 3, 4, 5]), false));

        let mut so_far = part(7, list(&[1]), true);
        let other_seq = join_snapshot(&mut so_far, part(8, list(&[2]), false));
        assert!(
            matches!(other_seq, Err(Error::Protocol(_))),
            "{other_seq:?}"
        );
        let dict = S::Dict(pb::ValueMap { entries: vec![] });
        let other_kind = join_snapshot(&mut so_far, part(7, dict, false));
        assert!(
            matches!(other_kind, Err(Error::Protocol(_))),
            "{other_kind:?}"
        );
        let not_a_snapshot = pb::WatchEvent {
            seq: 7,
            kind: Some(W::Flag(true)),
        };
        let change = join_snapshot(&mut so_far, not_a_snapshot);
        assert!(matches!(change, Err(Error::Protocol(_))), "{change:?}");
    }
}
