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

use std::pin::Pin;

use procshare_proto::{self as pb, watch_event::Kind as W};
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

/// Starts a watch: checks the caller and the object, then streams.
pub fn start(
    store: &Store,
    sessions: &Sessions,
    shutdown: &CancellationToken,
    request: Request<pb::WatchRequest>,
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
    tokio::spawn(forward(watcher, tx, shutdown.clone()));
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// Moves events from the watcher to the client until the object is
/// deleted, the client goes away or the server shuts down.
async fn forward(
    mut watcher: Watcher,
    tx: mpsc::Sender<Result<pb::WatchEvent, Status>>,
    shutdown: CancellationToken,
) {
    let pump = async {
        loop {
            // Room first, then the event: while the client does not read,
            // the task waits here, and lets go of what its receiver holds
            // if it falls too far behind.
            let room = tokio::select! {
                room = tx.reserve() => room,
                _ = watcher.fell_behind() => {
                    watcher.let_go();
                    continue;
                }
            };
            let Ok(room) = room else { return };
            let Some(event) = watcher.next().await else {
                return;
            };
            room.send(Ok(to_wire(&event)));
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
        tokio::spawn(forward(watcher, tx, CancellationToken::new()));
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
