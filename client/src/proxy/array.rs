use std::marker::PhantomData;

use procshare_proto::{self as pb, op::Kind as Op};
use serde::{de::DeserializeOwned, Serialize};

use super::Handle;
use crate::error::Result;

mod sealed {
    pub trait Sealed {}
    impl Sealed for i64 {}
    impl Sealed for f64 {}
    impl Sealed for u8 {}
}

/// The element types an [`ArrayProxy`] can hold: `i64`, `f64` and `u8`
/// (Python's typecodes `'q'`, `'d'` and `'B'`).
pub trait ArrayElement: sealed::Sealed + Serialize + DeserializeOwned + Copy {
    #[doc(hidden)]
    const WIRE: pb::ArrayType;
}

impl ArrayElement for i64 {
    const WIRE: pb::ArrayType = pb::ArrayType::I64;
}
impl ArrayElement for f64 {
    const WIRE: pb::ArrayType = pb::ArrayType::F64;
}
impl ArrayElement for u8 {
    const WIRE: pb::ArrayType = pb::ArrayType::U8;
}

/// A shared fixed-length array, Python's `manager.Array(typecode, n)`.
///
/// Indexes follow Python (`-1` is the last); an index outside the array is
/// [`Error::OutOfRange`](crate::Error::OutOfRange). `fetch_add` is atomic
/// and refuses to overflow.
///
/// ```no_run
/// # async fn demo() -> procshare::Result<()> {
/// let m = procshare::Manager::connect("http://127.0.0.1:50051").await?;
/// let hist = m.array::<i64>("histogram", 10).await?; // ten zeros
/// hist.fetch_add(3, 1).await?;
/// assert_eq!(hist.get(3).await?, 1);
/// # Ok(()) }
/// ```
pub struct ArrayProxy<T> {
    handle: Handle,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for ArrayProxy<T> {
    fn clone(&self) -> Self {
        ArrayProxy {
            handle: self.handle.clone(),
            item: PhantomData,
        }
    }
}

impl<T: ArrayElement> ArrayProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        ArrayProxy {
            handle,
            item: PhantomData,
        }
    }

    /// The array's name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The number of elements.
    pub async fn len(&self) -> Result<usize> {
        Ok(self.handle.describe_u64("len").await? as usize)
    }

    /// Whether the array has no elements.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// The element at `index`.
    pub async fn get(&self, index: i64) -> Result<T> {
        super::value(
            self.handle
                .call(Op::ArrayGet(pb::ArrayGet { index }))
                .await?,
        )
    }

    /// Sets the element at `index`.
    pub async fn set(&self, index: i64, value: T) -> Result<()> {
        let op = Op::ArraySet(pb::ArraySet {
            index,
            value: super::wire(&value)?,
        });
        super::unit(self.handle.call(op).await?)
    }

    /// Python's slice `a[start:stop]` (`None` is the end on that side).
    pub async fn get_range(&self, start: Option<i64>, stop: Option<i64>) -> Result<Vec<T>> {
        let op = Op::ArrayGetRange(pb::ArrayGetRange { start, stop });
        super::values(self.handle.call(op).await?)
    }

    /// Writes `values` from `start` on, all or nothing.
    pub async fn set_range(&self, start: i64, values: &[T]) -> Result<()> {
        let values = values
            .iter()
            .map(crate::value::to_wire)
            .collect::<Result<_>>()?;
        let op = Op::ArraySetRange(pb::ArraySetRange { start, values });
        super::unit(self.handle.call(op).await?)
    }

    /// Atomically adds `delta` to the element at `index`; returns the
    /// previous value.
    pub async fn fetch_add(&self, index: i64, delta: T) -> Result<T> {
        let op = Op::ArrayFetchAdd(pb::ArrayFetchAdd {
            index,
            delta: super::wire(&delta)?,
        });
        Ok(super::pair::<T, T>(self.handle.call(op).await?)?.0)
    }

    /// The whole array, as one consistent copy.
    pub async fn snapshot(&self) -> Result<Vec<T>> {
        self.get_range(None, None).await
    }
}
