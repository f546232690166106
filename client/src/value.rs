//! Serde types ⇄ the wire's structured `Value`.
//!
//! Values go through [`serde_json::Value`] on the way, so any type serde can
//! turn into JSON travels: numbers keep the int/float distinction, maps with
//! string keys become wire maps. Bytes (`Vec<u8>`) travel as a list of ints
//! unless sent as a wire `bytes` value by another client; NaN and infinities
//! become null, as in JSON.

use procshare_proto::{self as pb, value::Kind as V};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Number, Value as Json};

use crate::error::{Error, Result};

/// Encodes a serde value for the wire.
///
/// ```
/// let wire = procshare::value::to_wire(&vec![1, 2]).unwrap();
/// let back: Vec<i64> = procshare::value::from_wire(wire).unwrap();
/// assert_eq!(back, [1, 2]);
/// ```
pub fn to_wire<T: Serialize + ?Sized>(value: &T) -> Result<pb::Value> {
    json_to_wire(serde_json::to_value(value)?)
}

/// Decodes a wire value into a serde type.
pub fn from_wire<T: DeserializeOwned>(value: pb::Value) -> Result<T> {
    Ok(serde_json::from_value(wire_to_json(value)?)?)
}

/// A JSON value as a wire value (what the CLI sends).
pub fn json_to_wire(json: Json) -> Result<pb::Value> {
    let kind = match json {
        Json::Null => V::Null(pb::Null {}),
        Json::Bool(b) => V::Bool(b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                V::Int(i)
            } else if n.is_u64() {
                return Err(Error::InvalidArgument(format!(
                    "integer {n} does not fit in 64 signed bits"
                )));
            } else {
                V::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => V::Str(s),
        Json::Array(items) => V::List(pb::ValueList {
            items: items.into_iter().map(json_to_wire).collect::<Result<_>>()?,
        }),
        Json::Object(map) => V::Map(pb::ValueMap {
            entries: map
                .into_iter()
                .map(|(k, v)| {
                    Ok(pb::Pair {
                        first: Some(pb::Value {
                            kind: Some(V::Str(k)),
                        }),
                        second: Some(json_to_wire(v)?),
                    })
                })
                .collect::<Result<_>>()?,
        }),
    };
    Ok(pb::Value { kind: Some(kind) })
}

/// A wire value as JSON (what the CLI prints). Map keys that are not strings
/// are written as their JSON text (`1` → `"1"`), as `serde_json` expects for
/// integer-keyed maps.
pub fn wire_to_json(value: pb::Value) -> Result<Json> {
    Ok(match value.kind {
        None => return Err(Error::Protocol("value without a kind".into())),
        Some(V::Null(_)) => Json::Null,
        Some(V::Bool(b)) => Json::Bool(b),
        Some(V::Int(i)) => Json::Number(i.into()),
        Some(V::Float(f)) => Number::from_f64(f).map_or(Json::Null, Json::Number),
        Some(V::Str(s)) => Json::String(s),
        Some(V::Bytes(b)) => Json::Array(b.into_iter().map(|x| Json::Number(x.into())).collect()),
        Some(V::List(l)) => Json::Array(
            l.items
                .into_iter()
                .map(wire_to_json)
                .collect::<Result<_>>()?,
        ),
        Some(V::Map(m)) => {
            let mut map = Map::with_capacity(m.entries.len());
            for pair in m.entries {
                let key = match wire_to_json(required(pair.first)?)? {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, wire_to_json(required(pair.second)?)?);
            }
            Json::Object(map)
        }
    })
}

pub(crate) fn required(v: Option<pb::Value>) -> Result<pb::Value> {
    v.ok_or_else(|| Error::Protocol("missing value in response".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Job {
        id: u32,
        tags: Vec<String>,
        score: f64,
        done: Option<bool>,
    }

    #[test]
    fn structs_round_trip() {
        let job = Job {
            id: 7,
            tags: vec!["a".into()],
            score: 0.5,
            done: None,
        };
        assert_eq!(from_wire::<Job>(to_wire(&job).unwrap()).unwrap(), job);
    }

    #[test]
    fn ints_stay_ints_and_floats_stay_floats() {
        assert_eq!(to_wire(&3i64).unwrap().kind, Some(V::Int(3)));
        assert_eq!(to_wire(&3.0f64).unwrap().kind, Some(V::Float(3.0)));
        assert!(to_wire(&u64::MAX).is_err());
    }

    #[test]
    fn integer_keyed_maps_round_trip() {
        let m: BTreeMap<i64, String> = [(1, "a".to_string())].into();
        assert_eq!(
            from_wire::<BTreeMap<i64, String>>(to_wire(&m).unwrap()).unwrap(),
            m
        );
    }

    #[test]
    fn a_type_mismatch_is_a_serde_error() {
        let r = from_wire::<i64>(to_wire("text").unwrap());
        assert!(matches!(r, Err(Error::Serde(_))));
    }
}
