//! Array: a fixed-length typed array (Python's `manager.Array`), of i64, f64
//! or u8. Values are checked against the element type before anything is
//! written, so a bad `set_range` writes nothing.

use parking_lot::Mutex;
use procshare_proto::{op::Kind as Op, ArrayType, OpResult};

use super::error::{Result, StoreError};
use super::index::{position, slice};
use super::journal::Recorder;
use super::reply;
use super::val::Val;

/// The longest array the server will allocate.
pub const MAX_ARRAY_LEN: u64 = 1 << 26;

pub struct Array {
    data: Mutex<Data>,
}

enum Data {
    I64(Vec<i64>),
    F64(Vec<f64>),
    U8(Vec<u8>),
}

/// One element, checked against the array's type.
#[derive(Clone, Copy)]
enum Elem {
    I64(i64),
    F64(f64),
    U8(u8),
}

impl Elem {
    fn val(self) -> Val {
        match self {
            Elem::I64(i) => Val::Int(i),
            Elem::F64(f) => Val::Float(f),
            Elem::U8(b) => Val::Int(b.into()),
        }
    }
}

pub fn type_name(t: ArrayType) -> &'static str {
    match t {
        ArrayType::I64 => "i64",
        ArrayType::F64 => "f64",
        ArrayType::U8 => "u8",
        ArrayType::Unspecified => "unspecified",
    }
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::I64(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::U8(v) => v.len(),
        }
    }

    fn array_type(&self) -> ArrayType {
        match self {
            Data::I64(_) => ArrayType::I64,
            Data::F64(_) => ArrayType::F64,
            Data::U8(_) => ArrayType::U8,
        }
    }

    fn get(&self, i: usize) -> Elem {
        match self {
            Data::I64(v) => Elem::I64(v[i]),
            Data::F64(v) => Elem::F64(v[i]),
            Data::U8(v) => Elem::U8(v[i]),
        }
    }

    /// Checks `v` against the element type.
    fn elem(&self, name: &str, v: &Val) -> Result<Elem> {
        let bad = || {
            StoreError::InvalidArgument(format!(
                "array {name:?} holds {}, not {} {}",
                type_name(self.array_type()),
                v.type_name(),
                match v {
                    Val::Int(i) => i.to_string(),
                    Val::Float(f) => f.to_string(),
                    _ => String::new(),
                }
            ))
        };
        match (self, v) {
            (Data::I64(_), Val::Int(i)) => Ok(Elem::I64(*i)),
            (Data::F64(_), Val::Float(f)) => Ok(Elem::F64(*f)),
            (Data::F64(_), Val::Int(i)) => Ok(Elem::F64(*i as f64)),
            (Data::U8(_), Val::Int(i)) => u8::try_from(*i).map(Elem::U8).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }

    fn set(&mut self, i: usize, e: Elem) {
        match (self, e) {
            (Data::I64(v), Elem::I64(x)) => v[i] = x,
            (Data::F64(v), Elem::F64(x)) => v[i] = x,
            (Data::U8(v), Elem::U8(x)) => v[i] = x,
            // `elem` only makes elements of the array's own type.
            _ => {}
        }
    }
}

impl Array {
    pub fn new(array_type: ArrayType, len: u64) -> Result<Self> {
        if len > MAX_ARRAY_LEN {
            return Err(StoreError::InvalidArgument(format!(
                "array length {len} is above the limit {MAX_ARRAY_LEN}"
            )));
        }
        let n = len as usize;
        let data = match array_type {
            ArrayType::I64 => Data::I64(vec![0; n]),
            ArrayType::F64 => Data::F64(vec![0.0; n]),
            ArrayType::U8 => Data::U8(vec![0; n]),
            ArrayType::Unspecified => {
                return Err(StoreError::InvalidArgument(
                    "an array needs an element type (i64, f64 or u8)".into(),
                ))
            }
        };
        Ok(Array {
            data: Mutex::new(data),
        })
    }

    /// Checks that an existing array matches what a new open asks for.
    pub fn check_shape(&self, name: &str, array_type: ArrayType, len: u64) -> Result<()> {
        let d = self.data.lock();
        if d.array_type() != array_type || d.len() as u64 != len {
            return Err(StoreError::InvalidArgument(format!(
                "array {name:?} exists as {}[{}], not {}[{len}]",
                type_name(d.array_type()),
                d.len(),
                type_name(array_type)
            )));
        }
        Ok(())
    }

    pub fn apply(&self, name: &str, op: Op, rec: &Recorder) -> Result<OpResult> {
        let out_of_range = |index: i64, len: usize| {
            StoreError::OutOfRange(format!(
                "array {name:?}: index {index} out of range (length {len})"
            ))
        };
        match op {
            Op::ArrayGet(o) => {
                let d = self.data.lock();
                let i = position(o.index, d.len()).ok_or_else(|| out_of_range(o.index, d.len()))?;
                Ok(reply::value(&d.get(i).val()))
            }
            Op::ArraySet(o) => {
                let v = Val::required(o.value, "value")?;
                let mut d = self.data.lock();
                let i = position(o.index, d.len()).ok_or_else(|| out_of_range(o.index, d.len()))?;
                let e = d.elem(name, &v)?;
                rec.commit();
                d.set(i, e);
                Ok(reply::unit())
            }
            Op::ArrayGetRange(o) => {
                let d = self.data.lock();
                let items: Vec<Val> = slice(o.start, o.stop, d.len())
                    .map(|i| d.get(i).val())
                    .collect();
                Ok(reply::values(&items))
            }
            Op::ArraySetRange(o) => {
                let values: Vec<Val> = o
                    .values
                    .into_iter()
                    .map(Val::from_wire)
                    .collect::<Result<_>>()?;
                let mut d = self.data.lock();
                let len = d.len();
                let start = position(o.start, len)
                    .or((o.start == len as i64 && values.is_empty()).then_some(len))
                    .ok_or_else(|| out_of_range(o.start, len))?;
                if values.len() > len - start {
                    return Err(StoreError::OutOfRange(format!(
                        "array {name:?}: {} values from index {start} do not fit in length {len}",
                        values.len()
                    )));
                }
                let elems: Vec<Elem> = values
                    .iter()
                    .map(|v| d.elem(name, v))
                    .collect::<Result<_>>()?;
                rec.commit();
                for (k, e) in elems.into_iter().enumerate() {
                    d.set(start + k, e);
                }
                Ok(reply::unit())
            }
            Op::ArrayFetchAdd(o) => {
                let delta = Val::required(o.delta, "delta")?;
                let mut d = self.data.lock();
                let i = position(o.index, d.len()).ok_or_else(|| out_of_range(o.index, d.len()))?;
                let delta = d.elem(name, &delta)?;
                let previous = d.get(i);
                let new = match (previous, delta) {
                    (Elem::I64(a), Elem::I64(b)) => a.checked_add(b).map(Elem::I64),
                    (Elem::F64(a), Elem::F64(b)) => Some(Elem::F64(a + b)),
                    (Elem::U8(a), Elem::U8(b)) => a.checked_add(b).map(Elem::U8),
                    _ => None,
                }
                .ok_or_else(|| {
                    StoreError::OutOfRange(format!(
                        "array {name:?}: adding to index {} overflows {}",
                        o.index,
                        type_name(d.array_type())
                    ))
                })?;
                rec.commit();
                d.set(i, new);
                Ok(reply::pair(&previous.val(), &new.val()))
            }
            other => Err(super::misrouted(name, &other)),
        }
    }

    /// The elements, and the seq `next_seq` gives while they are locked.
    pub fn save(&self, next_seq: impl FnOnce() -> u64) -> (Vec<Val>, u64) {
        let d = self.data.lock();
        ((0..d.len()).map(|i| d.get(i).val()).collect(), next_seq())
    }

    /// An array restored from a snapshot; elements of the wrong type or
    /// beyond `len` are refused.
    pub fn restore(array_type: ArrayType, len: u64, values: Vec<Val>) -> Result<Self> {
        let a = Array::new(array_type, len)?;
        {
            let mut d = a.data.lock();
            if values.len() > d.len() {
                return Err(StoreError::InvalidArgument(
                    "snapshot array longer than its length".into(),
                ));
            }
            for (i, v) in values.iter().enumerate() {
                let e = d.elem("snapshot", v)?;
                d.set(i, e);
            }
        }
        Ok(a)
    }

    pub fn describe(&self) -> Vec<(&'static str, Val)> {
        let d = self.data.lock();
        vec![
            ("len", Val::Int(d.len() as i64)),
            ("type", Val::Str(type_name(d.array_type()).into())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::*;
    use procshare_proto as pb;

    impl Array {
        fn ap(&self, name: &str, op: Op) -> Result<OpResult> {
            self.apply(name, op, &Recorder::none())
        }
    }

    fn set(a: &Array, i: i64, v: Val) -> Result<OpResult> {
        a.ap(
            "a",
            Op::ArraySet(pb::ArraySet {
                index: i,
                value: Some(v.to_wire()),
            }),
        )
    }

    fn all(a: &Array) -> Vec<Val> {
        as_values(
            a.ap(
                "a",
                Op::ArrayGetRange(pb::ArrayGetRange {
                    start: None,
                    stop: None,
                }),
            )
            .unwrap(),
        )
    }

    #[test]
    fn types_are_checked() {
        let a = Array::new(ArrayType::U8, 3).unwrap();
        set(&a, 0, Val::Int(255)).unwrap();
        assert!(matches!(
            set(&a, 1, Val::Int(256)),
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            set(&a, 1, Val::Float(1.0)),
            Err(StoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            set(&a, 3, Val::Int(1)),
            Err(StoreError::OutOfRange(_))
        ));
        set(&a, -1, Val::Int(9)).unwrap();
        assert_eq!(all(&a), [Val::Int(255), Val::Int(0), Val::Int(9)]);
        let f = Array::new(ArrayType::F64, 1).unwrap();
        set(&f, 0, Val::Int(2)).unwrap();
        assert_eq!(all(&f), [Val::Float(2.0)]);
    }

    #[test]
    fn set_range_is_all_or_nothing() {
        let a = Array::new(ArrayType::I64, 4).unwrap();
        let set_range = |start, vals: Vec<Val>| {
            a.ap(
                "a",
                Op::ArraySetRange(pb::ArraySetRange {
                    start,
                    values: vals.iter().map(Val::to_wire).collect(),
                }),
            )
        };
        set_range(1, vec![Val::Int(1), Val::Int(2)]).unwrap();
        assert!(matches!(
            set_range(3, vec![Val::Int(1), Val::Int(2)]),
            Err(StoreError::OutOfRange(_))
        ));
        assert!(matches!(
            set_range(0, vec![Val::Int(5), s("x")]),
            Err(StoreError::InvalidArgument(_))
        ));
        assert_eq!(
            all(&a),
            [Val::Int(0), Val::Int(1), Val::Int(2), Val::Int(0)]
        );
    }

    #[test]
    fn fetch_add_refuses_overflow() {
        let a = Array::new(ArrayType::U8, 1).unwrap();
        let add = |d: i64| {
            a.ap(
                "a",
                Op::ArrayFetchAdd(pb::ArrayFetchAdd {
                    index: 0,
                    delta: Some(Val::Int(d).to_wire()),
                }),
            )
        };
        assert_eq!(as_pair(add(200).unwrap()), (Val::Int(0), Val::Int(200)));
        assert!(matches!(add(100), Err(StoreError::OutOfRange(_))));
        assert_eq!(all(&a), [Val::Int(200)]);
        assert!(Array::new(ArrayType::I64, MAX_ARRAY_LEN + 1).is_err());
        assert!(Array::new(ArrayType::Unspecified, 1).is_err());
    }
}
