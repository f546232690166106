use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::Handle;
use crate::error::{Error, Result};
use crate::value::{from_wire, json_to_wire, wire_to_json};

/// A shared namespace, Python's `manager.Namespace()`: attributes by name,
/// each any serde value; or a whole serde struct stored and loaded at once.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Config { workers: u32, verbose: bool }
///
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let ns = m.namespace("config").await?;
/// ns.store(&Config { workers: 8, verbose: false }).await?;
/// ns.set("verbose", &true).await?;
/// let c: Config = ns.load().await?;
/// assert!(c.verbose);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NamespaceProxy {
    handle: Handle,
}

impl NamespaceProxy {
    pub(crate) fn new(handle: Handle) -> Self {
        NamespaceProxy { handle }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The attribute `attr`, or [`Error::NotFound`] (Python's AttributeError).
    pub async fn get<T: DeserializeOwned>(&self, attr: &str) -> Result<T> {
        self.try_get(attr).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "namespace {:?} has no attribute {attr:?}",
                self.name()
            ))
        })
    }

    /// The attribute `attr`, if set.
    pub async fn try_get<T: DeserializeOwned>(&self, attr: &str) -> Result<Option<T>> {
        let op = Op::NamespaceGet(pb::NamespaceGet { attr: attr.into() });
        super::maybe(self.handle.call(op).await?)
    }

    /// Sets the attribute `attr`.
    pub async fn set<T: Serialize + ?Sized>(&self, attr: &str, value: &T) -> Result<()> {
        let op = Op::NamespaceSet(pb::NamespaceSet {
            attr: attr.into(),
            value: super::wire(value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Removes the attribute `attr`; [`Error::NotFound`] if it is not set.
    pub async fn delete(&self, attr: &str) -> Result<()> {
        let op = Op::NamespaceDelete(pb::NamespaceDelete { attr: attr.into() });
        let removed: Option<serde_json::Value> = super::maybe(self.handle.call(op).await?)?;
        removed.map(|_| ()).ok_or_else(|| {
            Error::NotFound(format!(
                "namespace {:?} has no attribute {attr:?}",
                self.name()
            ))
        })
    }

    /// Every attribute, as a JSON object.
    pub async fn attributes(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let pairs = match self
            .handle
            .call(Op::NamespaceLoad(pb::NamespaceLoad {}))
            .await?
        {
            pb::op_result::Kind::Pairs(m) => m,
            other => return Err(Error::Protocol(format!("expected pairs, got {other:?}"))),
        };
        match wire_to_json(pb::Value {
            kind: Some(pb::value::Kind::Map(pairs)),
        })? {
            serde_json::Value::Object(map) => Ok(map),
            _ => Err(Error::Protocol("namespace attributes are not a map".into())),
        }
    }

    /// Loads every attribute into a serde struct (one consistent copy).
    pub async fn load<T: DeserializeOwned>(&self) -> Result<T> {
        let attrs = self.attributes().await?;
        from_wire(json_to_wire(serde_json::Value::Object(attrs))?)
    }

    /// Stores a serde struct: its fields become the attributes, and other
    /// attributes are removed, in one atomic step.
    pub async fn store<T: Serialize>(&self, value: &T) -> Result<()> {
        self.store_with(value, true).await
    }

    /// Sets the struct's fields as attributes, keeping the others.
    pub async fn update<T: Serialize>(&self, value: &T) -> Result<()> {
        self.store_with(value, false).await
    }

    async fn store_with<T: Serialize>(&self, value: &T, replace: bool) -> Result<()> {
        let attrs = match crate::value::to_wire(value)?.kind {
            Some(pb::value::Kind::Map(m)) => m,
            _ => {
                return Err(Error::InvalidArgument(
                    "a namespace stores a struct or a map with string keys".into(),
                ))
            }
        };
        let op = Op::NamespaceStore(pb::NamespaceStore {
            attrs: Some(attrs),
            replace,
        });
        super::unit(self.handle.call(op).await?)
    }
}
