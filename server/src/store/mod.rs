//! The object store: every shared object by name, and the one path,
//! [`Store::apply`], that applies an operation to one of them.
//!
//! The store knows nothing about gRPC. It takes the wire's operation messages
//! as plain data (so a log or a replica can replay exactly what live traffic
//! did) and returns [`OpResult`]s or a [`StoreError`].
//!
//! Each object kind lives in its own module with its own unit tests and its
//! own mutex; the registry itself is a [`DashMap`], so operations on
//! different objects never contend.

mod cell;
mod dict;
pub mod error;
mod list;
mod lock;
mod reply;
pub mod val;

use std::sync::Arc;

use dashmap::{mapref::entry::Entry, DashMap};
use procshare_proto::{self as pb, op::Kind as Op, Kind, OpResult};

pub use error::{kind_name, Result, StoreError};
use val::Val;

/// Longest object name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Who is asking. Locks are owned by a caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
}

enum Object {
    Dict(dict::Dict),
    List(list::List),
    Value(cell::Cell),
    Lock(lock::Lock),
}

impl Object {
    fn kind(&self) -> Kind {
        match self {
            Object::Dict(_) => Kind::Dict,
            Object::List(_) => Kind::List,
            Object::Value(_) => Kind::Value,
            Object::Lock(_) => Kind::Lock,
        }
    }

    fn new(kind: Kind, initial: Option<pb::Value>) -> Result<Object> {
        Ok(match kind {
            Kind::Dict => Object::Dict(Default::default()),
            Kind::List => Object::List(Default::default()),
            Kind::Value => Object::Value(cell::Cell::new(match initial {
                Some(v) => Val::from_wire(v)?,
                None => Val::Null,
            })),
            Kind::Lock => Object::Lock(Default::default()),
            Kind::Unspecified => {
                return Err(StoreError::InvalidArgument(
                    "open: an object kind is required".into(),
                ))
            }
        })
    }
}

/// The kind of object an operation applies to (`None` for the manager's own
/// operations: open, delete, list).
fn target_kind(op: &Op) -> Option<Kind> {
    Some(match op {
        Op::Open(_) | Op::Delete(_) | Op::ListObjects(_) => return None,
        Op::DictGet(_)
        | Op::DictSet(_)
        | Op::DictRemove(_)
        | Op::DictContains(_)
        | Op::DictLen(_)
        | Op::DictKeys(_)
        | Op::DictValues(_)
        | Op::DictItems(_)
        | Op::DictUpdate(_)
        | Op::DictClear(_)
        | Op::DictSetDefault(_)
        | Op::DictPopItem(_)
        | Op::DictCompareAndSwap(_)
        | Op::DictFetchAdd(_) => Kind::Dict,
        Op::ListPush(_)
        | Op::ListExtend(_)
        | Op::ListGet(_)
        | Op::ListSet(_)
        | Op::ListInsert(_)
        | Op::ListPop(_)
        | Op::ListRemove(_)
        | Op::ListIndex(_)
        | Op::ListCount(_)
        | Op::ListLen(_)
        | Op::ListRange(_)
        | Op::ListClear(_)
        | Op::ListReverse(_)
        | Op::ListSnapshot(_) => Kind::List,
        Op::ValueGet(_)
        | Op::ValueSet(_)
        | Op::ValueSwap(_)
        | Op::ValueCompareAndSwap(_)
        | Op::ValueFetchAdd(_) => Kind::Value,
        Op::LockAcquire(_) | Op::LockRelease(_) | Op::LockLocked(_) => Kind::Lock,
    })
}

/// What an object module answers when dispatch hands it a foreign operation.
/// Dispatch checks kinds first, so this is a server bug, reported as such.
fn misrouted(name: &str, op: &Op) -> StoreError {
    StoreError::Internal(format!("operation {op:?} routed to object {name:?}"))
}

/// Checks an object name: 1–255 bytes of UTF-8 without control characters.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(StoreError::InvalidArgument(
            "object name must not be empty".into(),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "object name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::InvalidArgument(format!(
            "object name {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Every shared object, by name.
#[derive(Default)]
pub struct Store {
    objects: DashMap<String, Arc<Object>>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one operation on behalf of `caller`. This is the only way in:
    /// unary calls, batches and streams all come through here.
    pub async fn apply(&self, caller: &Caller, op: pb::Op) -> Result<OpResult> {
        let pb::Op { name, kind } = op;
        let op = kind.ok_or_else(|| StoreError::missing_field("op.kind"))?;
        if let Op::ListObjects(_) = op {
            return Ok(self.list_objects());
        }
        validate_name(&name)?;
        let Some(wanted) = target_kind(&op) else {
            return match op {
                Op::Open(o) => self.open(name, o),
                Op::Delete(_) => self.delete(&name),
                other => Err(misrouted(&name, &other)),
            };
        };
        let object = self.get(&name, wanted)?;
        match &*object {
            Object::Dict(d) => d.apply(&name, op),
            Object::List(l) => l.apply(&name, op),
            Object::Value(c) => c.apply(&name, op),
            Object::Lock(l) => l.apply(&name, caller, op).await,
        }
    }

    /// The object called `name`, if it is of kind `wanted`.
    fn get(&self, name: &str, wanted: Kind) -> Result<Arc<Object>> {
        let object = self
            .objects
            .get(name)
            .map(|o| o.value().clone())
            .ok_or_else(|| {
                StoreError::NotFound(format!("no object named {name:?} (open it first)"))
            })?;
        check_kind(name, &object, wanted)?;
        Ok(object)
    }

    fn open(&self, name: String, open: pb::Open) -> Result<OpResult> {
        let kind = Kind::try_from(open.kind)
            .map_err(|_| StoreError::InvalidArgument(format!("unknown kind {}", open.kind)))?;
        match self.objects.entry(name) {
            Entry::Occupied(e) => check_kind(e.key(), e.get(), kind)?,
            Entry::Vacant(e) => {
                let object = Object::new(kind, open.initial)?;
                tracing::debug!(name = %e.key(), kind = kind_name(kind), "created");
                e.insert(Arc::new(object));
            }
        }
        Ok(reply::unit())
    }

    fn delete(&self, name: &str) -> Result<OpResult> {
        match self.objects.remove(name) {
            Some(_) => Ok(reply::unit()),
            None => Err(StoreError::NotFound(format!("no object named {name:?}"))),
        }
    }

    fn list_objects(&self) -> OpResult {
        let mut objects: Vec<pb::ObjectInfo> = self
            .objects
            .iter()
            .map(|e| pb::ObjectInfo {
                name: e.key().clone(),
                kind: e.value().kind() as i32,
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        reply::objects(objects)
    }

    /// How many objects exist.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

fn check_kind(name: &str, object: &Object, wanted: Kind) -> Result<()> {
    let actual = object.kind();
    if actual == wanted {
        Ok(())
    } else {
        Err(StoreError::WrongKind {
            name: name.to_owned(),
            wanted: kind_name(wanted),
            actual: kind_name(actual),
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Unwrapping results in tests.
    use super::val::Val;
    use procshare_proto::{op_result::Kind as R, OpResult};

    pub fn s(x: &str) -> Val {
        Val::Str(x.to_owned())
    }

    fn kind(r: OpResult) -> R {
        r.kind.expect("result has a kind")
    }

    fn val(v: Option<procshare_proto::Value>) -> Val {
        Val::from_wire(v.expect("value present")).expect("valid value")
    }

    pub fn as_maybe(r: OpResult) -> Option<Val> {
        match kind(r) {
            R::Maybe(m) => m.value.map(|v| val(Some(v))),
            other => panic!("expected maybe, got {other:?}"),
        }
    }

    pub fn as_value(r: OpResult) -> Val {
        match kind(r) {
            R::Value(v) => val(Some(v)),
            other => panic!("expected value, got {other:?}"),
        }
    }

    pub fn as_values(r: OpResult) -> Vec<Val> {
        match kind(r) {
            R::Values(l) => l.items.into_iter().map(|v| val(Some(v))).collect(),
            other => panic!("expected values, got {other:?}"),
        }
    }

    pub fn as_count(r: OpResult) -> u64 {
        match kind(r) {
            R::Count(n) => n,
            other => panic!("expected count, got {other:?}"),
        }
    }

    pub fn as_pair(r: OpResult) -> (Val, Val) {
        match kind(r) {
            R::Pair(p) => (val(p.first), val(p.second)),
            other => panic!("expected pair, got {other:?}"),
        }
    }

    pub fn as_swap(r: OpResult) -> (bool, Option<Val>) {
        match kind(r) {
            R::Swap(s) => (
                s.swapped,
                s.current.and_then(|m| m.value).map(|v| val(Some(v))),
            ),
            other => panic!("expected swap, got {other:?}"),
        }
    }

    pub fn as_acquired(r: OpResult) -> (bool, u64) {
        match kind(r) {
            R::Acquired(a) => (a.acquired, a.fencing_token),
            other => panic!("expected acquired, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            client_id: "t".into(),
        }
    }

    fn op(name: &str, kind: Op) -> pb::Op {
        pb::Op {
            name: name.into(),
            kind: Some(kind),
        }
    }

    fn open(kind: Kind) -> Op {
        Op::Open(pb::Open {
            kind: kind as i32,
            initial: None,
        })
    }

    #[tokio::test]
    async fn open_is_get_or_create_and_checks_the_kind() {
        let store = Store::new();
        store
            .apply(&caller(), op("x", open(Kind::Dict)))
            .await
            .unwrap();
        store
            .apply(&caller(), op("x", open(Kind::Dict)))
            .await
            .unwrap();
        let err = store
            .apply(&caller(), op("x", open(Kind::Lock)))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "\"x\" is a dict, not a lock");
        let err = store
            .apply(&caller(), op("x", Op::ListLen(pb::ListLen {})))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::WrongKind {
                wanted: "list",
                actual: "dict",
                ..
            }
        ));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn operations_on_missing_objects_and_bad_names_fail() {
        let store = Store::new();
        let err = store
            .apply(&caller(), op("nope", Op::DictLen(pb::DictLen {})))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        for bad in ["", "a\nb", &"n".repeat(256)] {
            let err = store
                .apply(&caller(), op(bad, open(Kind::Dict)))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidArgument(_)), "{bad:?}");
        }
        let err = store
            .apply(&caller(), op("x", open(Kind::Unspecified)))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidArgument(_)));
        let missing = pb::Op {
            name: "x".into(),
            kind: None,
        };
        assert!(store.apply(&caller(), missing).await.is_err());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn delete_and_list() {
        let store = Store::new();
        store
            .apply(&caller(), op("b", open(Kind::List)))
            .await
            .unwrap();
        store
            .apply(&caller(), op("a", open(Kind::Value)))
            .await
            .unwrap();
        let listed = store
            .apply(&caller(), op("", Op::ListObjects(pb::ListObjects {})))
            .await
            .unwrap();
        let Some(pb::op_result::Kind::Objects(list)) = listed.kind else {
            panic!("expected objects")
        };
        let names: Vec<_> = list.objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        store
            .apply(&caller(), op("a", Op::Delete(pb::Delete {})))
            .await
            .unwrap();
        let err = store
            .apply(&caller(), op("a", Op::Delete(pb::Delete {})))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(store.len(), 1);
    }
}
