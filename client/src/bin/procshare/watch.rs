//! `procshare watch NAME`: an object's changes as JSON lines.

use clap::Args;
use procshare::{ChangeKind, Error, Manager, Watch};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value as Json;

use crate::{interrupted, say, Failure, Outcome};

#[derive(Args)]
pub(crate) struct WatchArgs {
    /// The object to watch: a dict, list, value, queue or event.
    name: String,
    /// Start with a `snapshot` line holding the whole object instead of a
    /// `started` line.
    #[arg(long)]
    snapshot: bool,
    /// Exit (0) once N changes since the start were reported, one by one or,
    /// after a `lagged` line, through the snapshot that follows it.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Prints one JSON object per event, flushing each line, until the object
/// is deleted (exit 0), `--count` changes went by (exit 0), SIGINT/SIGTERM
/// (exit 0) or the server goes away (exit 1).
pub(crate) async fn watch(m: &Manager, args: WatchArgs) -> Outcome {
    let stop = interrupted();
    // The kind decides the proxy; opening an existing object changes nothing.
    let described = m.describe(&args.name).await?;
    let kind = described["kind"].as_str().unwrap_or("unknown").to_owned();
    let name = args.name.as_str();
    let snapshot = args.snapshot;
    let run = async {
        match kind.as_str() {
            "dict" => {
                let d = m.dict::<Json, Json>(name).await?;
                print(
                    start(snapshot, d.watch(), d.watch_from_snapshot()).await?,
                    args.count,
                )
                .await
            }
            "list" => {
                let l = m.list::<Json>(name).await?;
                print(
                    start(snapshot, l.watch(), l.watch_from_snapshot()).await?,
                    args.count,
                )
                .await
            }
            "value" => {
                let v = m.value::<Json>(name, &Json::Null).await?;
                print(
                    start(snapshot, v.watch(), v.watch_from_snapshot()).await?,
                    args.count,
                )
                .await
            }
            "queue" | "joinable_queue" => {
                let q = if kind == "queue" {
                    m.queue::<Json>(name, 0).await?
                } else {
                    m.joinable_queue::<Json>(name, 0).await?
                };
                print(
                    start(snapshot, q.watch(), q.watch_from_snapshot()).await?,
                    args.count,
                )
                .await
            }
            "event" => {
                let e = m.event(name).await?;
                print(
                    start(snapshot, e.watch(), e.watch_from_snapshot()).await?,
                    args.count,
                )
                .await
            }
            other => Err(Failure::Call(Error::WrongKind(format!(
                "{name:?} is a {other}: only a dict, list, value, queue or event can be watched"
            )))),
        }
    };
    tokio::select! {
        r = run => r,
        _ = stop => Ok(()),
    }
}

/// Awaits one of the two ways to start, building only the one asked for.
async fn start<W>(
    snapshot: bool,
    plain: impl std::future::Future<Output = procshare::Result<W>>,
    from_snapshot: impl std::future::Future<Output = procshare::Result<W>>,
) -> procshare::Result<W> {
    if snapshot {
        from_snapshot.await
    } else {
        plain.await
    }
}

async fn print<V, K>(mut watch: Watch<V, K>, count: Option<u64>) -> Outcome
where
    V: Serialize + DeserializeOwned,
    K: Serialize + DeserializeOwned,
{
    let mut base = None;
    while let Some(change) = watch.next().await? {
        say(&change.to_json()?.to_string());
        let base = *base.get_or_insert(change.seq);
        let counts = !matches!(change.kind, ChangeKind::Started | ChangeKind::Lagged { .. });
        if let Some(n) = count {
            if counts && change.seq >= base.saturating_add(n) {
                break;
            }
        }
    }
    Ok(())
}
