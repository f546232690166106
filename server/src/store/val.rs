//! [`Val`], the store's own form of a structured value.
//!
//! The wire `Value` is a prost message: it cannot be a hash-map key and may
//! arrive without a kind. `Val` is validated once, at the edge, and then
//! compares and hashes by type and content, so it can key a dict.

use std::hash::{Hash, Hasher};

use procshare_proto::{self as pb, value::Kind as V};

use super::error::{Result, StoreError};

/// A validated structured value. Two values are equal when they have the same
/// type and content: `1` and `1.0` are different keys (unlike Python), and
/// floats compare by bit pattern, so a NaN key can be found again.
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Val>),
    Map(Vec<(Val, Val)>),
}

/// Normalises `-0.0` to `0.0` so that the two compare and hash alike.
fn float_bits(f: f64) -> u64 {
    if f == 0.0 {
        0
    } else {
        f.to_bits()
    }
}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Float(a), Val::Float(b)) => float_bits(*a) == float_bits(*b),
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Bytes(a), Val::Bytes(b)) => a == b,
            (Val::List(a), Val::List(b)) => a == b,
            (Val::Map(a), Val::Map(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Val {}

impl Hash for Val {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Val::Null => {}
            Val::Bool(b) => b.hash(state),
            Val::Int(i) => i.hash(state),
            Val::Float(f) => float_bits(*f).hash(state),
            Val::Str(s) => s.hash(state),
            Val::Bytes(b) => b.hash(state),
            Val::List(items) => items.hash(state),
            Val::Map(entries) => entries.hash(state),
        }
    }
}

impl Val {
    /// Validates a wire value. A value (or nested value) without a kind is an
    /// `InvalidArgument` error.
    pub fn from_wire(v: pb::Value) -> Result<Val> {
        Ok(match v.kind {
            None => return Err(StoreError::InvalidArgument("value has no kind".into())),
            Some(V::Null(_)) => Val::Null,
            Some(V::Bool(b)) => Val::Bool(b),
            Some(V::Int(i)) => Val::Int(i),
            Some(V::Float(f)) => Val::Float(f),
            Some(V::Str(s)) => Val::Str(s),
            Some(V::Bytes(b)) => Val::Bytes(b),
            Some(V::List(l)) => Val::List(
                l.items
                    .into_iter()
                    .map(Val::from_wire)
                    .collect::<Result<_>>()?,
            ),
            Some(V::Map(m)) => Val::Map(
                m.entries
                    .into_iter()
                    .map(Val::pair_from_wire)
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// Validates a required wire field: absent is `InvalidArgument`.
    pub fn required(v: Option<pb::Value>, what: &str) -> Result<Val> {
        Val::from_wire(v.ok_or_else(|| StoreError::missing_field(what))?)
    }

    /// Validates a wire pair whose both halves are required.
    pub fn pair_from_wire(p: pb::Pair) -> Result<(Val, Val)> {
        Ok((
            Val::required(p.first, "pair.first")?,
            Val::required(p.second, "pair.second")?,
        ))
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::Value {
        let kind = match self {
            Val::Null => V::Null(pb::Null {}),
            Val::Bool(b) => V::Bool(*b),
            Val::Int(i) => V::Int(*i),
            Val::Float(f) => V::Float(*f),
            Val::Str(s) => V::Str(s.clone()),
            Val::Bytes(b) => V::Bytes(b.clone()),
            Val::List(items) => V::List(pb::ValueList {
                items: items.iter().map(Val::to_wire).collect(),
            }),
            Val::Map(entries) => V::Map(pb::ValueMap {
                entries: entries.iter().map(|(k, v)| pair_to_wire(k, v)).collect(),
            }),
        };
        pb::Value { kind: Some(kind) }
    }

    /// `self + delta` for numbers: int + int stays an int (overflow is an
    /// error, never a wrap), anything with a float is a float.
    pub fn add(&self, delta: &Val) -> Result<Val> {
        match (self, delta) {
            (Val::Int(a), Val::Int(b)) => a
                .checked_add(*b)
                .map(Val::Int)
                .ok_or_else(|| StoreError::OutOfRange(format!("integer overflow: {a} + {b}"))),
            (Val::Int(a), Val::Float(b)) => Ok(Val::Float(*a as f64 + b)),
            (Val::Float(a), Val::Int(b)) => Ok(Val::Float(a + *b as f64)),
            (Val::Float(a), Val::Float(b)) => Ok(Val::Float(a + b)),
            (Val::Int(_) | Val::Float(_), _) => Err(StoreError::InvalidArgument(format!(
                "delta must be an int or a float, not {}",
                delta.type_name()
            ))),
            _ => Err(StoreError::InvalidArgument(format!(
                "cannot add to a {}: not a number",
                self.type_name()
            ))),
        }
    }

    /// The zero of `delta`'s numeric type: what a missing entry counts as.
    pub fn zero_like(delta: &Val) -> Val {
        match delta {
            Val::Float(_) => Val::Float(0.0),
            _ => Val::Int(0),
        }
    }

    /// About how many bytes this value holds, itself and on the heap.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Val>()
            + match self {
                Val::Null | Val::Bool(_) | Val::Int(_) | Val::Float(_) => 0,
                Val::Str(s) => s.len(),
                Val::Bytes(b) => b.len(),
                Val::List(items) => items.iter().map(Val::bytes).sum(),
                Val::Map(entries) => entries.iter().map(|(k, v)| k.bytes() + v.bytes()).sum(),
            }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::List(_) => "list",
            Val::Map(_) => "map",
        }
    }
}

pub fn pair_to_wire(a: &Val, b: &Val) -> pb::Pair {
    pb::Pair {
        first: Some(a.to_wire()),
        second: Some(b.to_wire()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn round_trips_through_the_wire() {
        let v = Val::Map(vec![(
            Val::Str("k".into()),
            Val::List(vec![
                Val::Null,
                Val::Bool(true),
                Val::Int(-3),
                Val::Float(1.5),
                Val::Bytes(vec![0, 255]),
            ]),
        )]);
        assert_eq!(Val::from_wire(v.to_wire()).unwrap(), v);
    }

    #[test]
    fn a_value_without_kind_is_refused() {
        let nested = pb::Value {
            kind: Some(V::List(pb::ValueList {
                items: vec![pb::Value { kind: None }],
            })),
        };
        assert!(matches!(
            Val::from_wire(nested),
            Err(StoreError::InvalidArgument(_))
        ));
    }

    #[test]
    fn keys_compare_by_type_and_content() {
        let set: HashSet<Val> = [
            Val::Int(1),
            Val::Float(1.0),
            Val::Float(-0.0),
            Val::Float(0.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 3);
        assert_eq!(Val::Float(f64::NAN), Val::Float(f64::NAN));
    }

    #[test]
    fn add_keeps_ints_exact_and_refuses_overflow() {
        assert_eq!(Val::Int(2).add(&Val::Int(3)).unwrap(), Val::Int(5));
        assert_eq!(Val::Int(2).add(&Val::Float(0.5)).unwrap(), Val::Float(2.5));
        assert!(matches!(
            Val::Int(i64::MAX).add(&Val::Int(1)),
            Err(StoreError::OutOfRange(_))
        ));
        assert!(Val::Str("a".into()).add(&Val::Int(1)).is_err());
        assert!(Val::Int(1).add(&Val::Str("a".into())).is_err());
    }
}
