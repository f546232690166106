//! Namespace: named attributes, Python's `manager.Namespace()`. Storing a
//! whole serde struct sets its fields as attributes in one atomic step.

use indexmap::IndexMap;
use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, OpResult};

use super::error::{Result, StoreError};
use super::journal::Recorder;
use super::reply;
use super::val::Val;

#[derive(Default)]
pub struct Namespace {
    attrs: Mutex<IndexMap<String, Val>>,
}

fn attr_name(attr: String) -> Result<String> {
    if attr.is_empty() || attr.len() > super::MAX_NAME_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "attribute names are 1 to {} bytes long",
            super::MAX_NAME_LEN
        )));
    }
    Ok(attr)
}

impl Namespace {
    pub fn apply(&self, name: &str, op: Op, rec: &Recorder) -> Result<OpResult> {
        match op {
            Op::NamespaceGet(o) => Ok(reply::maybe(self.attrs.lock().get(&o.attr))),
            Op::NamespaceSet(o) => {
                let attr = attr_name(o.attr)?;
                let value = Val::required(o.value, "value")?;
                let mut attrs = self.attrs.lock();
                rec.commit();
                attrs.insert(attr, value);
                Ok(reply::unit())
            }
            Op::NamespaceDelete(o) => {
                let mut attrs = self.attrs.lock();
                let removed = attrs.shift_remove(&o.attr);
                if removed.is_some() {
                    rec.commit();
                }
                Ok(reply::maybe(removed.as_ref()))
            }
            Op::NamespaceLoad(_) => {
                let attrs = self.attrs.lock();
                let keys: Vec<Val> = attrs.keys().map(|k| Val::Str(k.clone())).collect();
                Ok(reply::pairs(keys.iter().zip(attrs.values())))
            }
            Op::NamespaceStore(o) => {
                let mut new = Vec::new();
                for pair in o.attrs.map(|m| m.entries).unwrap_or_default() {
                    match Val::pair_from_wire(pair)? {
                        (Val::Str(k), v) => new.push((attr_name(k)?, v)),
                        (k, _) => {
                            return Err(StoreError::InvalidArgument(format!(
                                "namespace {name:?}: attribute names are strings, not {}",
                                k.type_name()
                            )))
                        }
                    }
                }
                let mut attrs = self.attrs.lock();
                rec.commit();
                if o.replace {
                    attrs.clear();
                }
                attrs.extend(new);
                Ok(reply::unit())
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        vec![("len", Val::Int(self.attrs.lock().len() as i64))]
    }

    /// The attributes, and the seq `next_seq` gives while they are locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (Vec<(Val, Val)>, u64) {
        let attrs = self.attrs.lock();
        let saved = attrs
            .iter()
            .map(|(k, v)| (Val::Str(k.clone()), v.clone()))
            .collect();
        (saved, next_seq())
    }

    /// A namespace restored from a snapshot; non-string names are skipped.
    pub fn restore(attrs: Vec<(Val, Val)>) -> Self {
        let ns = Namespace::default();
        ns.attrs
            .lock()
            .extend(attrs.into_iter().filter_map(|(k, v)| match k {
                Val::Str(k) => Some((k, v)),
                _ => None,
            }));
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Namespace {
        fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none())
        }
    }

    #[test]
    fn set_get_delete_and_store() {
        let ns = Namespace::default();
        let set = |a: &str, v: Val| {
            ns.ap(
                "n",
                Op::NamespaceSet(pb::NamespaceSet {
                    attr: a.into(),
                    value: Some(v.to_wire()),
                }),
            )
        };
        set("x", Val::Int(1)).unwrap();
        assert!(matches!(
            set("", Val::Int(1)),
            Err(StoreError::InvalidArgument(_))
        ));
        let get = |a: &str| {
            as_maybe(
                ns.ap("n", Op::NamespaceGet(pb::NamespaceGet { attr: a.into() }))
                    .unwrap(),
            )
        };
        assert_eq!(get("x"), Some(Val::Int(1)));
        assert_eq!(get("y"), None);
        let store = |entries: Vec<(Val, Val)>, replace| {
            ns.ap(
                "n",
                Op::NamespaceStore(pb::NamespaceStore {
                    attrs: Some(pb::ValueMap {
                        entries: entries
                            .iter()
                            .map(|(k, v)| crate::store::val::pair_to_wire(k, v))
                            .collect(),
                    }),
                    replace,
                }),
            )
        };
        // A non-string attribute name refuses the whole store.
        let bad = store(
            vec![(s("y"), Val::Int(2)), (Val::Int(3), Val::Int(3))],
            false,
        );
        assert!(matches!(bad, Err(StoreError::InvalidArgument(_))));
        assert_eq!(get("y"), None);
        store(vec![(s("y"), Val::Int(2))], true).unwrap();
        assert_eq!(get("x"), None, "replaced");
        assert_eq!(get("y"), Some(Val::Int(2)));
        let removed = ns
            .ap(
                "n",
                Op::NamespaceDelete(pb::NamespaceDelete { attr: "y".into() }),
            )
            .unwrap();
        assert_eq!(as_maybe(removed), Some(Val::Int(2)));
    }
}
