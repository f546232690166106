//! Python's index rules, shared by lists and arrays.

/// The position `index` names in a sequence of `len` items: negative counts
/// from the end; `None` if outside.
pub fn position(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 {
        index.checked_add(len)?
    } else {
        index
    };
    (0..len).contains(&i).then_some(i as usize)
}

/// Python's clamping of a slice bound (and of `list.insert`'s index).
pub fn clamp(bound: i64, len: usize) -> usize {
    let len_i = len as i64;
    let i = if bound < 0 {
        bound.saturating_add(len_i)
    } else {
        bound
    };
    i.clamp(0, len_i) as usize
}

/// The range `[start:stop]` of a sequence of `len` items, Python style.
pub fn slice(start: Option<i64>, stop: Option<i64>, len: usize) -> std::ops::Range<usize> {
    let start = start.map_or(0, |b| clamp(b, len));
    let stop = stop.map_or(len, |b| clamp(b, len));
    start..stop.max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_do_not_overflow() {
        assert_eq!(position(i64::MIN, 3), None);
        assert_eq!(position(i64::MAX, 3), None);
        assert_eq!(clamp(i64::MIN, 3), 0);
        assert_eq!(clamp(i64::MAX, 3), 3);
        assert_eq!(slice(Some(2), Some(1), 5), 2..2);
        assert_eq!(slice(None, Some(-1), 5), 0..4);
    }
}
