//! Every method of the async client against a real `procshared`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::Server;
use procshare::{Error, Kind, Manager, Swap};

async fn manager(server: &Server) -> Manager {
    Manager::connect(&server.url()).await.expect("connect")
}

#[tokio::test]
async fn dict_methods() {
    let server = Server::start();
    let m = manager(&server).await;
    let d = m.dict::<String, i64>("d").await.unwrap();
    let k = |s: &str| s.to_string();

    assert!(d.is_empty().await.unwrap());
    assert_eq!(d.insert(k("a"), 1).await.unwrap(), None);
    assert_eq!(d.insert(k("a"), 2).await.unwrap(), Some(1));
    assert_eq!(d.get(&k("a")).await.unwrap(), Some(2));
    assert_eq!(d.get(&k("zz")).await.unwrap(), None);
    assert!(d.contains_key(&k("a")).await.unwrap());
    assert!(!d.contains_key(&k("zz")).await.unwrap());

    d.update([(k("b"), 3), (k("c"), 4)]).await.unwrap();
    assert_eq!(d.len().await.unwrap(), 3);
    assert_eq!(d.keys().await.unwrap(), ["a", "b", "c"]);
    assert_eq!(d.values().await.unwrap(), [2, 3, 4]);
    assert_eq!(
        d.items().await.unwrap(),
        [(k("a"), 2), (k("b"), 3), (k("c"), 4)]
    );
    let snap: HashMap<String, i64> = d.snapshot().await.unwrap();
    assert_eq!(snap.len(), 3);

    assert_eq!(d.setdefault(k("a"), 100).await.unwrap(), 2);
    assert_eq!(d.setdefault(k("e"), 5).await.unwrap(), 5);
    assert_eq!(d.popitem().await.unwrap(), (k("e"), 5));
    assert_eq!(d.remove(&k("c")).await.unwrap(), Some(4));
    assert_eq!(d.remove(&k("c")).await.unwrap(), None);
    assert_eq!(d.pop(&k("b")).await.unwrap(), 3);
    assert!(matches!(d.pop(&k("b")).await, Err(Error::NotFound(_))));

    // compare_and_swap: on a missing key, on a match, on a mismatch.
    let swapped = d.compare_and_swap(&k("n"), None, &10).await.unwrap();
    assert_eq!(
        swapped,
        Swap {
            swapped: true,
            current: Some(10)
        }
    );
    let missed = d.compare_and_swap(&k("n"), Some(&9), &11).await.unwrap();
    assert_eq!(
        missed,
        Swap {
            swapped: false,
            current: Some(10)
        }
    );
    let hit = d.compare_and_swap(&k("n"), Some(&10), &11).await.unwrap();
    assert!(hit.swapped);

    // fetch_add: previous value; a missing key counts as 0.
    assert_eq!(d.fetch_add(&k("n"), 4).await.unwrap(), 11);
    assert_eq!(d.add(&k("fresh"), 7).await.unwrap(), (0, 7));
    assert_eq!(d.get(&k("n")).await.unwrap(), Some(15));

    d.clear().await.unwrap();
    assert_eq!(d.len().await.unwrap(), 0);
    assert!(matches!(d.popitem().await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn dict_errors_change_nothing() {
    let server = Server::start();
    let m = manager(&server).await;
    let text = m.dict::<String, String>("mixed").await.unwrap();
    text.insert("t".into(), "text".into()).await.unwrap();
    // Adding to a string is refused and leaves it alone.
    let numbers = m.dict::<String, i64>("mixed").await.unwrap();
    let err = numbers.fetch_add(&"t".into(), 1).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref msg) if msg.contains("mixed")),
        "{err}"
    );
    assert_eq!(
        text.get(&"t".into()).await.unwrap().as_deref(),
        Some("text")
    );
    // Reading a string as a number is a client-side type error.
    assert!(matches!(
        numbers.get(&"t".into()).await,
        Err(Error::Serde(_))
    ));
    // Integer overflow is refused, not wrapped.
    numbers.insert("big".into(), i64::MAX).await.unwrap();
    assert!(matches!(
        numbers.fetch_add(&"big".into(), 1).await,
        Err(Error::OutOfRange(_))
    ));
    assert_eq!(numbers.get(&"big".into()).await.unwrap(), Some(i64::MAX));
}

#[tokio::test]
async fn structured_keys_and_values() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug, Clone)]
    struct Job {
        id: u32,
        tags: Vec<String>,
        weight: f64,
    }
    let server = Server::start();
    let m = manager(&server).await;
    let d = m.dict::<(i32, String), Job>("jobs").await.unwrap();
    let job = Job {
        id: 1,
        tags: vec!["x".into()],
        weight: 0.5,
    };
    d.insert((1, "a".into()), job.clone()).await.unwrap();
    assert_eq!(d.get(&(1, "a".into())).await.unwrap(), Some(job));
    assert_eq!(d.get(&(1, "b".into())).await.unwrap(), None);
    let maps = m
        .dict::<i64, BTreeMap<String, Vec<i64>>>("maps")
        .await
        .unwrap();
    let v: BTreeMap<String, Vec<i64>> = [("k".to_string(), vec![1, 2])].into();
    maps.insert(7, v.clone()).await.unwrap();
    assert_eq!(maps.get(&7).await.unwrap(), Some(v));
}

#[tokio::test]
async fn list_methods() {
    let server = Server::start();
    let m = manager(&server).await;
    let l = m.list::<i64>("l").await.unwrap();
    assert!(l.is_empty().await.unwrap());
    l.push(1).await.unwrap();
    l.extend([2, 3, 2]).await.unwrap();
    assert_eq!(l.snapshot().await.unwrap(), [1, 2, 3, 2]);
    assert_eq!(l.get(0).await.unwrap(), 1);
    assert_eq!(l.get(-1).await.unwrap(), 2);
    l.set(-1, 4).await.unwrap();
    l.insert(0, 0).await.unwrap();
    assert_eq!(l.snapshot().await.unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(l.range(Some(1), Some(3)).await.unwrap(), [1, 2]);
    assert_eq!(l.range(Some(-2), None).await.unwrap(), [3, 4]);
    assert_eq!(l.index(&3).await.unwrap(), 3);
    l.push(3).await.unwrap();
    assert_eq!(l.count(&3).await.unwrap(), 2);
    l.remove(&3).await.unwrap();
    assert_eq!(l.snapshot().await.unwrap(), [0, 1, 2, 4, 3]);
    assert_eq!(l.pop().await.unwrap(), 3);
    assert_eq!(l.pop_at(0).await.unwrap(), 0);
    l.reverse().await.unwrap();
    assert_eq!(l.snapshot().await.unwrap(), [4, 2, 1]);
    assert_eq!(l.len().await.unwrap(), 3);
    l.clear().await.unwrap();
    assert_eq!(l.len().await.unwrap(), 0);
}

#[tokio::test]
async fn list_errors() {
    let server = Server::start();
    let m = manager(&server).await;
    let l = m.list::<i64>("l").await.unwrap();
    assert!(matches!(l.pop().await, Err(Error::OutOfRange(_))));
    l.extend([1, 2]).await.unwrap();
    let err = l.get(2).await.unwrap_err();
    assert!(
        matches!(err, Error::OutOfRange(ref msg) if msg.contains("\"l\"") && msg.contains("2")),
        "{err}"
    );
    assert!(matches!(l.get(-3).await, Err(Error::OutOfRange(_))));
    assert!(matches!(l.set(5, 0).await, Err(Error::OutOfRange(_))));
    assert!(matches!(l.pop_at(9).await, Err(Error::OutOfRange(_))));
    assert!(matches!(l.remove(&7).await, Err(Error::NotFound(_))));
    assert!(matches!(l.index(&7).await, Err(Error::NotFound(_))));
    assert_eq!(l.snapshot().await.unwrap(), [1, 2]);
}

#[tokio::test]
async fn value_methods() {
    let server = Server::start();
    let m = manager(&server).await;
    let v = m.value::<i64>("v", &10).await.unwrap();
    assert_eq!(v.get().await.unwrap(), 10);
    // Opening again keeps the value; the initial only applies to a new one.
    let again = m.value::<i64>("v", &0).await.unwrap();
    assert_eq!(again.get().await.unwrap(), 10);
    v.set(&20).await.unwrap();
    assert_eq!(v.swap(&30).await.unwrap(), 20);
    assert_eq!(v.fetch_add(5).await.unwrap(), 30);
    assert_eq!(v.add(-35).await.unwrap(), (35, 0));
    let missed = v.compare_and_swap(&1, &2).await.unwrap();
    assert_eq!(
        missed,
        Swap {
            swapped: false,
            current: Some(0)
        }
    );
    let hit = v.compare_and_swap(&0, &2).await.unwrap();
    assert_eq!(
        hit,
        Swap {
            swapped: true,
            current: Some(2)
        }
    );

    let f = m.value::<f64>("f", &0.5).await.unwrap();
    assert_eq!(f.add(0.25).await.unwrap(), (0.5, 0.75));
    let s = m.value::<String>("s", &"x".into()).await.unwrap();
    assert!(matches!(
        s.fetch_add("y".into()).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(s.get().await.unwrap(), "x");
}

#[tokio::test]
async fn lock_methods() {
    let server = Server::start();
    let a = manager(&server).await;
    let b = manager(&server).await;
    assert_ne!(a.client_id(), b.client_id());
    let la = a.lock("l").await.unwrap();
    let lb = b.lock("l").await.unwrap();

    assert!(!la.locked().await.unwrap());
    let t1 = la.acquire().await.unwrap();
    assert!(la.locked().await.unwrap());
    assert_eq!(lb.try_acquire().await.unwrap(), None);
    let err = lb
        .acquire_timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(ref msg) if msg.contains("\"l\"")),
        "{err}"
    );
    assert!(matches!(lb.release().await, Err(Error::NotOwner(_))));
    la.release().await.unwrap();
    assert!(matches!(la.release().await, Err(Error::NotOwner(_))));

    let t2 = lb.try_acquire().await.unwrap().expect("free lock");
    assert!(t2 > t1, "fencing tokens grow: {t1} then {t2}");

    // A waiter blocked on the server is handed the lock on release.
    let waiter = tokio::spawn(async move { la.acquire_timeout(Duration::from_secs(20)).await });
    // The waiter cannot get it while b holds it; release lets it through.
    lb.release().await.unwrap();
    let t3 = waiter.await.unwrap().unwrap();
    assert!(t3 > t2);
    assert!(lb.locked().await.unwrap());
}

#[tokio::test]
async fn names_kinds_delete_and_listing() {
    let server = Server::start();
    let m = manager(&server).await;
    m.dict::<String, i64>("shared").await.unwrap();
    let err = m.lock("shared").await.err().expect("wrong kind");
    assert!(
        matches!(err, Error::WrongKind(ref msg) if msg.contains("dict") && msg.contains("lock")),
        "{err}"
    );
    m.list::<i64>("a-list").await.unwrap();
    let listed = m.list_objects().await.unwrap();
    let listed: Vec<_> = listed.iter().map(|o| (o.kind, o.name.as_str())).collect();
    assert_eq!(
        listed,
        [(Some(Kind::List), "a-list"), (Some(Kind::Dict), "shared")]
    );

    let d = m.dict::<String, i64>("shared").await.unwrap();
    m.delete("shared").await.unwrap();
    assert!(matches!(d.len().await, Err(Error::NotFound(_))));
    assert!(matches!(m.delete("shared").await, Err(Error::NotFound(_))));
    // The name is free again, for any kind.
    m.lock("shared").await.unwrap();

    for bad in [String::new(), "a\u{7}b".into(), "x".repeat(256)] {
        let err = m
            .dict::<i64, i64>(&bad)
            .await
            .err()
            .expect("bad name refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
    }
    m.dict::<i64, i64>(&"é".repeat(127))
        .await
        .expect("254 bytes is fine");
}

#[tokio::test]
async fn ping_and_unreachable_server() {
    let server = Server::start();
    let m = manager(&server).await;
    assert_eq!(m.ping().await.unwrap(), env!("CARGO_PKG_VERSION"));
    drop(m);
    let addr = server.addr.clone();
    drop(server);
    let err = Manager::builder()
        .url(format!("http://{addr}"))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .err()
        .expect("nothing listens any more");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let err = Manager::connect("ftp://example")
        .await
        .err()
        .expect("bad scheme");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn blocking_facade() {
    let server = Server::start();
    let m = procshare::blocking::Manager::connect(&server.url()).unwrap();
    assert_eq!(m.ping().unwrap(), env!("CARGO_PKG_VERSION"));
    let d = m.dict::<String, i64>("d").unwrap();
    d.insert("k".into(), 1).unwrap();
    assert_eq!(d.fetch_add(&"k".into(), 2).unwrap(), 1);
    assert_eq!(d.get(&"k".into()).unwrap(), Some(3));
    let l = m.list::<String>("l").unwrap();
    l.extend(["a".to_string(), "b".to_string()]).unwrap();
    assert_eq!(l.pop().unwrap(), "b");
    let v = m.value::<i64>("v", &1).unwrap();
    assert_eq!(v.add(1).unwrap(), (1, 2));
    let lock = m.lock("lock").unwrap();
    {
        let guard = lock.guard().unwrap();
        assert!(guard.token() > 0);
        assert!(lock.locked().unwrap());
    }
    assert!(!lock.locked().unwrap(), "the guard released the lock");
    assert_eq!(m.list_objects().unwrap().len(), 4);
}
