//! The `Watch` rpc: a store [`Watcher`] turned into a stream of
//! `WatchEvent` messages.
//!
//! Each watch is one small task that forwards events into a short channel
//! which tonic drains into the response. When the client goes away tonic
//! drops the stream, the channel closes, and the task ends; when the server
//! shuts down the task ends the stream with UNAVAILABLE, so that a graceful
//! shutdown never waits on an open watch. A client that reads slowly only
//! fills the channel: the task then stops reading the feed, the feed moves
//! on without it, and the watcher resynchronises (lagged + snapshot); if
//! what the feed holds for it grows past its bound in bytes, the waiting
//! task lets go of it at once.
//!
//! A snapshot larger than a message may be (`--max-message-bytes`) goes in
//! parts to a client that asked for them (`WatchRequest.parts`): a big dict
//! or list could otherwise never be watched from a snapshot, nor a watcher
//! of it resynchronise.

use std::pin::Pin;

use procshare_proto::{self as pb, watch_event::Kind as W};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::session::Sessions;
use super::status::to_status;
use crate::store::val::{pair_to_wire, Val};
use crate::store::watch::{Change, Event, Snapshot, Watcher};
use crate::store::Store;

/// The response stream of a watch.
pub type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEvent, Status>> + Send + 'static>>;

/// Events buffered between the watch task and the connection: few, as an
/// event may carry a value of up to `--max-value-bytes`.
const BUFFER: usize = 16;

/// Starts a watch: checks the caller and the object, then streams events
/// of at most `max_event_bytes`.
pub fn start(
    store: &Store,
    sessions: &Sessions,
    shutdown: &CancellationToken,
    request: Request<pb::WatchRequest>,
    max_event_bytes: usize,
) -> Result<Response<WatchStream>, Status> {
    let r = request.into_inner();
    if r.client_id.len() > super::grpc::MAX_CLIENT_ID_LEN {
        return Err(Status::invalid_argument(format!(
            "client_id is {} bytes long; the limit is {}",
            r.client_id.len(),
            super::grpc::MAX_CLIENT_ID_LEN
        )));
    }
    // An expired session is refused as in every other call.
    sessions.resolve(&r.client_id).map_err(|e| to_status(&e))?;
    let watcher = store
        .watch(&r.name, r.snapshot)
        .map_err(|e| to_status(&e))?;
    tracing::debug!(name = %r.name, client = %r.client_id, "watch started");
    let (tx, rx) = mpsc::channel(BUFFER);
    let size = Sizing {
        max_event_bytes,
        parts: r.parts,
    };
    tokio::spawn(forward(watcher, tx, size, shutdown.clone()));
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// How large an event may be, and whether a larger snapshot may be split.
#[derive(Debug, Clone, Copy)]
struct Sizing {
    max_event_bytes: usize,
    parts: bool,
}

type Sender = mpsc::Sender<Result<pb::WatchEvent, Status>>;

/// Room for one event in the channel; while the client does not read, the
/// task waits here, and lets go of what its receiver holds if it falls too
/// far behind. `None` once the client is gone.
async fn room<'a>(
    tx: &'a Sender,
    watcher: &mut Watcher,
) -> Option<mpsc::Permit<'a, Result<pb::WatchEvent, Status>>> {
    loop {
        tokio::select! {
            room = tx.reserve() => return room.ok(),
            _ = watcher.fell_behind() => watcher.let_go(),
        }
    }
}

/// Moves events from the watcher to the client until the object is
/// deleted, the client goes away or the server shuts down.
async fn forward(mut watcher: Watcher, tx: Sender, size: Sizing, shutdown: CancellationToken) {
    let pump = async {
        loop {
            // Room first, then the event.
            let Some(first) = room(&tx, &mut watcher).await else {
                return;
            };
            let Some(event) = watcher.next().await else {
                return;
            };
            let mut parts = in_parts(to_wire(&event), size).into_iter();
            let Some(part) = parts.next() else { return };
            let failed = part.is_err();
            first.send(part);
            for part in parts {
                let Some(room) = room(&tx, &mut watcher).await else {
                    return;
                };
                room.send(part);
            }
            if failed {
                return;
            }
        }
    };
    tokio::select! {
        _ = pump => {}
        _ = tx.closed() => {}
        _ = shutdown.cancelled() => {
            // A full buffer means a client that is not reading: it loses
            // the reason, not the end of the stream.
            let _ = tx.try_send(Err(Status::unavailable("the server is shutting down")));
        }
    }
}

/// Bytes of a snapshot event besides its entries or items: the seq, the
/// event's and the state's keys and lengths, `unfinished`, `more`.
const SNAPSHOT_ENVELOPE: usize = 64;

/// `event` as it goes on the wire: whole if it fits in `max_event_bytes`;
/// a snapshot that does not, in parts if the client takes them, else a
/// RESOURCE_EXHAUSTED that ends the watch. (Only a snapshot can be larger:
/// a change is one operation's, within `--max-value-bytes`.)
fn in_parts(event: pb::WatchEvent, size: Sizing) -> Vec<Result<pb::WatchEvent, Status>> {
    use pb::watch_snapshot::State as S;
    let bytes = event.encoded_len();
    if bytes <= size.max_event_bytes {
        return vec![Ok(event)];
    }
    let too_large = || {
        Status::resource_exhausted(format!(
            "the watch's snapshot is {bytes} bytes, over the largest message \
             (--max-message-bytes); a client that asks for parts gets it in several"
        ))
    };
    let seq = event.seq;
    let Some(W::Snapshot(snapshot)) = event.kind else {
        return vec![Err(Status::resource_exhausted(format!(
            "a change of {bytes} bytes is over the largest message (--max-message-bytes)"
        )))];
    };
    if !size.parts {
        return vec![Err(too_large())];
    }
    let budget = size
        .max_event_bytes
        .saturating_sub(SNAPSHOT_ENVELOPE)
        .max(1);
    let unfinished = snapshot.unfinished;
    let states: Vec<S> = match snapshot.state {
        Some(S::Dict(m)) => chunks(m.entries, budget)
            .into_iter()
            .map(|entries| S::Dict(pb::ValueMap { entries }))
            .collect(),
        Some(S::List(l)) => chunks(l.items, budget)
            .into_iter()
            .map(|items| S::List(pb::ValueList { items }))
            .collect(),
        Some(S::Queue(l)) => chunks(l.items, budget)
            .into_iter()
            .map(|items| S::Queue(pb::ValueList { items }))
            .collect(),
        // One value (within --max-value-bytes) or a flag: nothing to split.
        _ => return vec![Err(too_large())],
    };
    let last = states.len().saturating_sub(1);
    states
        .into_iter()
        .enumerate()
        .map(|(i, state)| {
            Ok(pb::WatchEvent {
                seq,
                kind: Some(W::Snapshot(pb::WatchSnapshot {
                    state: Some(state),
                    unfinished,
                    more: i < last,
                })),
            })
        })
        .collect()
}

/// `items` in runs of at most `budget` encoded bytes each (as repeated
/// message fields); an item larger than that goes alone.
fn chunks<T: Message>(items: Vec<T>, budget: usize) -> Vec<Vec<T>> {
    let mut runs = vec![Vec::new()];
    let mut used = 0;
    for item in items {
        let len = prost::encoding::message::encoded_len(1, &item);
        if let Some(run) = runs
            .last_mut()
            .filter(|r| r.is_empty() || used + len <= budget)
        {
            run.push(item);
            used += len;
        } else {
            runs.push(vec![item]);
            used = len;
        }
    }
    runs
}

fn list(items: &[Val]) -> pb::ValueList {
    pb::ValueList {
        items: items.iter().map(Val::to_wire).collect(),
    }
}

fn map(entries: &[(Val, Val)]) -> pb::ValueMap {
    pb::ValueMap {
        entries: entries.iter().map(|(k, v)| pair_to_wire(k, v)).collect(),
    }
}

fn item(index: usize, value: &Val) -> pb::WatchItem {
    pb::WatchItem {
        index: index as u64,
        value: Some(value.to_wire()),
    }
}

/// An event as the wire carries it.
pub fn to_wire(event: &Event) -> pb::WatchEvent {
    let kind = match event {
        Event::Started { .. } => W::Started(pb::WatchStarted {}),
        Event::Lagged { missed, .. } => W::Lagged(pb::WatchLagged { missed: *missed }),
        Event::Snapshot { state, .. } => {
            use pb::watch_snapshot::State as S;
            let (state, unfinished) = match state {
                Snapshot::Dict(e) => (S::Dict(map(e)), 0),
                Snapshot::List(items) => (S::List(list(items)), 0),
                Snapshot::Value(v) => (S::Value(v.to_wire()), 0),
                Snapshot::Queue { items, unfinished } => (S::Queue(list(items)), *unfinished),
                Snapshot::Event(flag) => (S::Event(*flag), 0),
            };
            W::Snapshot(pb::WatchSnapshot {
                state: Some(state),
                unfinished,
                more: false,
            })
        }
        Event::Change(p) => match &p.change {
            Change::KeySet { key, value } => W::KeySet(pb::WatchKeySet {
                key: Some(key.to_wire()),
                value: Some(value.to_wire()),
            }),
            Change::KeyRemoved { key, value } => W::KeyRemoved(pb::WatchKeyRemoved {
                key: Some(key.to_wire()),
                value: Some(value.to_wire()),
            }),
            Change::Updated(entries) => W::Updated(map(entries)),
            Change::Cleared => W::Cleared(pb::WatchCleared {}),
            Change::Pushed(v) => W::Pushed(v.to_wire()),
            Change::Extended(vs) => W::Extended(list(vs)),
            Change::Popped { index, value } => W::Popped(item(*index, value)),
            Change::ItemSet { index, value } => W::ItemSet(item(*index, value)),
            Change::Inserted { index, value } => W::Inserted(item(*index, value)),
            Change::Reversed => W::Reversed(pb::WatchReversed {}),
            Change::ValueSet(v) => W::ValueSet(v.to_wire()),
            Change::Flag(f) => W::Flag(*f),
            Change::TaskDone { unfinished } => W::TaskDone(*unfinished),
            Change::Deleted => W::Deleted(pb::WatchDeleted {}),
        },
    };
    pb::WatchEvent {
        seq: event.seq(),
        kind: Some(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{op, open, s};
    use crate::store::watch::BYTES;
    use crate::store::Caller;
    use pb::op::Kind as Op;

    fn dict_snapshot(n: usize, bytes: usize) -> pb::WatchEvent {
        let entries = (0..n)
            .map(|i| pair_to_wire(&s(&format!("k{i}")), &s(&"x".repeat(bytes))))
            .collect();
        pb::WatchEvent {
            seq: 42,
            kind: Some(W::Snapshot(pb::WatchSnapshot {
                state: Some(pb::watch_snapshot::State::Dict(pb::ValueMap { entries })),
                unfinished: 0,
                more: false,
            })),
        }
    }

    #[test]
    fn a_snapshot_over_the_limit_is_split_into_parts_that_fit() {
        let whole = dict_snapshot(50, 1000);
        let size = Sizing {
            max_event_bytes: 8192,
            parts: true,
        };
        let parts: Vec<pb::WatchEvent> = in_parts(whole.clone(), size)
            .into_iter()
            .map(|p| p.expect("a part"))
            .collect();
        assert!(parts.len() >= 7, "{} parts", parts.len());
        let mut entries = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                p.encoded_len() <= 8192,
                "part {i}: {} bytes",
                p.encoded_len()
            );
            assert_eq!(p.seq, 42);
            let Some(W::Snapshot(snap)) = &p.kind else {
                panic!("{p:?}")
            };
            assert_eq!(snap.more, i + 1 < parts.len(), "part {i}");
            let Some(pb::watch_snapshot::State::Dict(m)) = &snap.state else {
                panic!("{snap:?}")
            };
            entries.extend(m.entries.iter().cloned());
        }
        let Some(W::Snapshot(pb::WatchSnapshot {
            state: Some(pb::watch_snapshot::State::Dict(m)),
            ..
        })) = whole.kind
        else {
            unreachable!()
        };
        assert_eq!(entries, m.entries, "all of them, in order");

        // What fits goes whole; without parts a large one is refused.
        let small = dict_snapshot(3, 10);
        assert_eq!(in_parts(small.clone(), size).pop().unwrap().unwrap(), small);
        let refused = in_parts(
            dict_snapshot(50, 1000),
            Sizing {
                parts: false,
                ..size
            },
        );
        let err = refused.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_stalled_watch_falls_behind_by_bytes_and_resyncs() {
        let store = Store::new();
        let me = Caller::new("c", "");
        store
            .apply(&me, op("d", open(pb::Kind::Dict)))
            .await
            .unwrap();
        let watcher = store.watch("d", false).unwrap();
        // A client that reads nothing: room for one event.
        let (tx, mut rx) = mpsc::channel(1);
        let size = Sizing {
            max_event_bytes: usize::MAX,
            parts: false,
        };
        tokio::spawn(forward(watcher, tx, size, CancellationToken::new()));
        let big = s(&"v".repeat(1 << 20));
        let n = (BYTES >> 20) as u64 * 2;
        for _ in 0..n {
            let set = Op::DictSet(pb::DictSet {
                key: Some(s("k").to_wire()),
                value: Some(big.to_wire()),
            });
            store.apply(&me, op("d", set)).await.unwrap();
        }
        let mut events = Vec::new();
        while events.len() < 3 {
            events.push(rx.recv().await.expect("the watch goes on"));
        }
        let kinds: Vec<_> = events
            .into_iter()
            .map(|e| e.expect("an event").kind.expect("a kind"))
            .collect();
        assert!(matches!(kinds[0], W::Started(_)), "{:?}", kinds[0]);
        assert!(
            matches!(kinds[1], W::Lagged(pb::WatchLagged { missed }) if missed == n),
            "{:?}",
            kinds[1]
        );
        assert!(matches!(kinds[2], W::Snapshot(_)), "{:?}", kinds[2]);
    }
}
