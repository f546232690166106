//! Builders for [`OpResult`], the one result type every operation returns.

use procshare_proto::{self as pb, op_result::Kind as R, OpResult};

use super::val::{pair_to_wire, Val};

fn of(kind: R) -> OpResult {
    OpResult { kind: Some(kind) }
}

pub fn unit() -> OpResult {
    of(R::Unit(pb::Unit {}))
}

pub fn value(v: &Val) -> OpResult {
    of(R::Value(v.to_wire()))
}

pub fn maybe(v: Option<&Val>) -> OpResult {
    of(R::Maybe(wire_maybe(v)))
}

pub fn wire_maybe(v: Option<&Val>) -> pb::Maybe {
    pb::Maybe {
        value: v.map(Val::to_wire),
    }
}

pub fn flag(b: bool) -> OpResult {
    of(R::Flag(b))
}

pub fn count(n: usize) -> OpResult {
    of(R::Count(n as u64))
}

pub fn values<'a>(items: impl IntoIterator<Item = &'a Val>) -> OpResult {
    of(R::Values(pb::ValueList {
        items: items.into_iter().map(Val::to_wire).collect(),
    }))
}

pub fn pairs<'a>(entries: impl IntoIterator<Item = (&'a Val, &'a Val)>) -> OpResult {
    of(R::Pairs(pb::ValueMap {
        entries: entries
            .into_iter()
            .map(|(k, v)| pair_to_wire(k, v))
            .collect(),
    }))
}

pub fn pair(a: &Val, b: &Val) -> OpResult {
    of(R::Pair(pair_to_wire(a, b)))
}

pub fn swap(swapped: bool, current: Option<&Val>) -> OpResult {
    of(R::Swap(pb::SwapResult {
        swapped,
        current: Some(wire_maybe(current)),
    }))
}

pub fn acquired(acquired: bool, fencing_token: u64) -> OpResult {
    of(R::Acquired(pb::Acquired {
        acquired,
        fencing_token,
    }))
}

pub fn objects(objects: Vec<pb::ObjectInfo>) -> OpResult {
    of(R::Objects(pb::ObjectList { objects }))
}
