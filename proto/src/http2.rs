//! HTTP/2 framing (RFC 9113) as far as a connection that carries one gRPC
//! stream needs it: the constants and encoders that the client's and the
//! server's `lane` modules share. Reading frames stays in each (their
//! errors differ); header blocks are decoded with h2's HPACK decoder.

use prost::bytes::{Buf, BufMut, BytesMut};

/// The client connection preface (3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes in a frame header (4.1).
pub const FRAME_HEADER: usize = 9;
/// The flow-control window of every stream and connection until settings
/// or updates change it (6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;
/// The largest frame a peer takes until its settings say more (4.2).
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// The HPACK table size both ends start with, and keep here (6.5.2).
pub const HEADER_TABLE: usize = 4_096;

/// Frame types (6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (6); `END_STREAM` and `ACK` share a bit on different kinds.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Setting identifiers (6.5.2).
pub mod setting {
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
}

/// Error codes (7).
pub mod error {
    pub const NO_ERROR: u32 = 0x0;
    pub const PROTOCOL_ERROR: u32 = 0x1;
    pub const FLOW_CONTROL_ERROR: u32 = 0x3;
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    pub const REFUSED_STREAM: u32 = 0x7;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// A frame header: a payload of `len` bytes (under 2^24) follows.
#[inline]
pub fn put_frame_header(out: &mut impl BufMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
}

/// A frame header, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of payload that follow.
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    /// With the reserved bit cleared.
    pub stream: u32,
}

/// The frame header at the front of `b`; `None` while `b` holds fewer than
/// [`FRAME_HEADER`] bytes.
#[inline]
pub fn read_frame_header(b: &[u8]) -> Option<FrameHeader> {
    let h: &[u8; FRAME_HEADER] = b.get(..FRAME_HEADER)?.try_into().ok()?;
    Some(FrameHeader {
        len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
    })
}

/// The payload of a frame without its padding (6.1); `Err` says what is
/// wrong with a padded one.
pub fn unpad(payload: &mut BytesMut, flags: u8) -> Result<BytesMut, &'static str> {
    if flags & flag::PADDED == 0 {
        return Ok(std::mem::take(payload));
    }
    let Some(&pad) = payload.first() else {
        return Err("a padded frame without its pad length");
    };
    let pad = usize::from(pad);
    if 1 + pad > payload.len() {
        return Err("a frame padded beyond its length");
    }
    payload.advance(1);
    let keep = payload.len() - pad;
    Ok(payload.split_to(keep))
}

/// What a SETTINGS frame changes that a connection carrying one stream
/// cares about (the last value of a setting counts).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub initial_window: Option<u32>,
    pub max_frame: Option<usize>,
}

/// A SETTINGS frame refused: `code` is the connection error to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSettings {
    pub code: u32,
    pub why: String,
}

/// Reads a SETTINGS payload (not an acknowledgement), refusing the values
/// RFC 9113, 6.5.2 rules out.
pub fn read_settings(p: &[u8]) -> Result<Settings, BadSettings> {
    let bad = |code, why: String| Err(BadSettings { code, why });
    if !p.len().is_multiple_of(6) {
        return bad(
            error::FRAME_SIZE_ERROR,
            "a SETTINGS frame of the wrong size".into(),
        );
    }
    let mut out = Settings::default();
    for s in p.chunks_exact(6) {
        let id = u16::from_be_bytes([s[0], s[1]]);
        let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
        match id {
            setting::INITIAL_WINDOW_SIZE if v > 0x7fff_ffff => {
                return bad(
                    error::FLOW_CONTROL_ERROR,
                    format!("an initial window of {v}"),
                );
            }
            setting::INITIAL_WINDOW_SIZE => out.initial_window = Some(v),
            setting::MAX_FRAME_SIZE if !(DEFAULT_MAX_FRAME..1 << 24).contains(&(v as usize)) => {
                return bad(
                    error::PROTOCOL_ERROR,
                    format!("a largest frame of {v} bytes"),
                );
            }
            setting::MAX_FRAME_SIZE => out.max_frame = Some(v as usize),
            _ => {}
        }
    }
    Ok(out)
}

/// An HPACK integer with an `n`-bit prefix after the bits of `first`
/// (RFC 7541, 5.1).
pub fn put_hpack_int(out: &mut impl BufMut, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.put_u8(first | v as u8);
        return;
    }
    out.put_u8(first | max as u8);
    v -= max;
    while v >= 128 {
        out.put_u8((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.put_u8(v as u8);
}

/// An HPACK string literal, not Huffman-coded (RFC 7541, 5.2).
pub fn put_hpack_str(out: &mut impl BufMut, s: &[u8]) {
    put_hpack_int(out, 0, 7, s.len());
    out.put_slice(s);
}

/// A header field as a literal with a new name, not added to the peer's
/// table (RFC 7541, 6.2.2).
pub fn put_hpack_literal(out: &mut impl BufMut, name: &[u8], value: &[u8]) {
    out.put_u8(0x00);
    put_hpack_str(out, name);
    put_hpack_str(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_as_in_rfc_7541_appendix_c1() {
        let mut b = Vec::new();
        put_hpack_int(&mut b, 0, 5, 10);
        assert_eq!(b, [10]);
        b.clear();
        put_hpack_int(&mut b, 0, 5, 1337);
        assert_eq!(b, [31, 154, 10]);
        b.clear();
        put_hpack_int(&mut b, 0, 8, 42);
        assert_eq!(b, [42]);
    }

    fn payload(settings: &[(u16, u32)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (id, v) in settings {
            p.put_u16(*id);
            p.put_u32(*v);
        }
        p
    }

    #[test]
    fn settings_are_read_checked_and_the_last_value_counts() {
        let p = payload(&[
            (setting::INITIAL_WINDOW_SIZE, 10),
            (setting::ENABLE_PUSH, 0),
            (0x7073, 1),
            (setting::INITIAL_WINDOW_SIZE, 20),
            (setting::MAX_FRAME_SIZE, 1 << 20),
        ]);
        let s = read_settings(&p).unwrap();
        assert_eq!(s.initial_window, Some(20));
        assert_eq!(s.max_frame, Some(1 << 20));
        assert_eq!(read_settings(&[]).unwrap(), Settings::default());
        let code = |p: &[u8]| read_settings(p).unwrap_err().code;
        assert_eq!(code(&p[..7]), error::FRAME_SIZE_ERROR);
        let big = payload(&[(setting::INITIAL_WINDOW_SIZE, 1 << 31)]);
        assert_eq!(code(&big), error::FLOW_CONTROL_ERROR);
        for frame in [16_383, 1 << 24] {
            let p = payload(&[(setting::MAX_FRAME_SIZE, frame)]);
            assert_eq!(code(&p), error::PROTOCOL_ERROR, "{frame}");
        }
    }

    #[test]
    fn a_frame_header_is_length_kind_flags_stream() {
        let mut b = Vec::new();
        put_frame_header(&mut b, 0x01_02_03, kind::PING, flag::ACK, 0x7fff_ffff);
        assert_eq!(b, [1, 2, 3, kind::PING, flag::ACK, 0x7f, 0xff, 0xff, 0xff]);
        let h = read_frame_header(&b).unwrap();
        assert_eq!(
            (h.len, h.kind, h.flags, h.stream),
            (0x01_02_03, kind::PING, flag::ACK, 0x7fff_ffff)
        );
        assert_eq!(read_frame_header(&b[..8]), None);
        // The reserved bit is not part of the stream id.
        b[5] = 0xff;
        assert_eq!(read_frame_header(&b).unwrap().stream, 0x7fff_ffff);
    }
}
