//! Sorting accepted connections: one that says it carries only a session
//! stream is served by [`super::lane`]; every other goes to tonic, with the
//! bytes read while deciding given back first.
//!
//! A client says so with [`SESSION_ONLY_SETTING`] in the SETTINGS frame
//! that follows the HTTP/2 preface, the first thing any HTTP/2 client
//! sends. Deciding needs at most those two (a few dozen bytes), and stops
//! at the first byte that does not match: an HTTP/1 request, a TLS hello or
//! a client without the setting costs one read more than before, nothing
//! else.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use procshare_proto::http2::{flag, kind, FRAME_HEADER, PREFACE};
use procshare_proto::SESSION_ONLY_SETTING;
use prost::bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The largest first SETTINGS frame looked into (64 settings; RFC 9113
/// defines 7). A longer one goes to tonic, which takes any.
const MAX_SETTINGS_LOOKED_AT: usize = 6 * 64;

/// What a connection's first bytes say.
#[derive(Debug, PartialEq)]
pub(super) enum Opening {
    /// The session stream alone. `settings` is the payload of the client's
    /// first SETTINGS frame (to be applied and acknowledged); `rest` what
    /// was read after it.
    SessionOnly { settings: BytesMut, rest: BytesMut },
    /// Anything else; these bytes were read and must be seen first.
    Other(BytesMut),
}

/// Reads until `io`'s first bytes decide what it is.
pub(super) async fn sort<IO: AsyncRead + Unpin>(io: &mut IO) -> io::Result<Opening> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match decide(&buf) {
            Decision::SessionOnly(len) => {
                buf.advance(PREFACE.len() + FRAME_HEADER);
                let settings = buf.split_to(len);
                return Ok(Opening::SessionOnly {
                    settings,
                    rest: buf,
                });
            }
            Decision::Other => return Ok(Opening::Other(buf)),
            Decision::NeedMore => {}
        }
        buf.reserve(512);
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(Opening::Other(buf));
        }
    }
}

#[derive(Debug, PartialEq)]
enum Decision {
    /// With the settings' payload length.
    SessionOnly(usize),
    Other,
    NeedMore,
}

fn decide(b: &[u8]) -> Decision {
    let n = b.len().min(PREFACE.len());
    if b[..n] != PREFACE[..n] {
        return Decision::Other;
    }
    let Some(h) = b.get(PREFACE.len()..PREFACE.len() + FRAME_HEADER) else {
        return Decision::NeedMore;
    };
    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
    if h[3] != kind::SETTINGS
        || h[4] & flag::ACK != 0
        || stream != 0
        || !len.is_multiple_of(6)
        || len > MAX_SETTINGS_LOOKED_AT
    {
        return Decision::Other;
    }
    let start = PREFACE.len() + FRAME_HEADER;
    let Some(payload) = b.get(start..start + len) else {
        return Decision::NeedMore;
    };
    let marked = payload
        .chunks_exact(6)
        .any(|s| u16::from_be_bytes([s[0], s[1]]) == SESSION_ONLY_SETTING);
    if marked {
        Decision::SessionOnly(len)
    } else {
        Decision::Other
    }
}

/// A connection with bytes already read from it put back in front.
pub(super) struct Rewind<IO> {
    read: BytesMut,
    io: IO,
}

impl<IO> Rewind<IO> {
    pub(super) fn new(read: BytesMut, io: IO) -> Self {
        Rewind { read, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Rewind<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::bytes::BufMut;

    fn opening(settings: &[(u16, u32)]) -> Vec<u8> {
        let mut b = PREFACE.to_vec();
        b.put_uint(6 * settings.len() as u64, 3);
        b.put_u8(kind::SETTINGS);
        b.put_u8(0);
        b.put_u32(0);
        for (id, v) in settings {
            b.put_u16(*id);
            b.put_u32(*v);
        }
        b
    }

    #[test]
    fn the_setting_marks_a_session_only_connection() {
        let marked = opening(&[(0x2, 0), (SESSION_ONLY_SETTING, 1)]);
        assert_eq!(decide(&marked), Decision::SessionOnly(12));
        // Every shorter prefix needs more, never decides wrongly.
        for n in 0..marked.len() {
            assert_eq!(decide(&marked[..n]), Decision::NeedMore, "{n} bytes");
        }
        assert_eq!(
            decide(&opening(&[(0x2, 0), (0x4, 65_535)])),
            Decision::Other
        );
        assert_eq!(decide(&opening(&[])), Decision::Other);
    }

    #[test]
    fn anything_else_is_decided_at_its_first_odd_byte() {
        assert_eq!(decide(b"GET / HTTP/1.1\r\n"), Decision::Other);
        assert_eq!(decide(&[0x16, 0x03, 0x01]), Decision::Other); // a TLS hello
        assert_eq!(decide(b"PRI * HTTP/2.0\r\n\r\nXX"), Decision::Other);
        // A first frame that is not SETTINGS.
        let mut b = PREFACE.to_vec();
        b.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0]);
        assert_eq!(decide(&b), Decision::Other);
    }

    #[tokio::test]
    async fn bytes_read_while_sorting_are_given_back_in_order() -> io::Result<()> {
        let mut sent = opening(&[(0x4, 1 << 20)]);
        sent.extend_from_slice(b"and the rest of the connection");
        let (mut client, mut server) = tokio::io::duplex(4096);
        tokio::io::AsyncWriteExt::write_all(&mut client, &sent).await?;
        drop(client);
        let Opening::Other(read) = sort(&mut server).await? else {
            panic!("an unmarked connection was taken for a session-only one");
        };
        let mut all = Vec::new();
        Rewind::new(read, server).read_to_end(&mut all).await?;
        assert_eq!(all, sent);

        let mut sent = opening(&[(SESSION_ONLY_SETTING, 1)]);
        sent.extend_from_slice(b"next frames");
        let (mut client, mut server) = tokio::io::duplex(4096);
        tokio::io::AsyncWriteExt::write_all(&mut client, &sent).await?;
        let Opening::SessionOnly { settings, rest } = sort(&mut server).await? else {
            panic!("a marked connection was not recognised");
        };
        assert_eq!(&settings[..2], &SESSION_ONLY_SETTING.to_be_bytes());
        // Whatever came in the same read after the settings is kept.
        let mut next = rest.to_vec();
        if next.len() < 11 {
            let mut more = vec![0; 11 - next.len()];
            server.read_exact(&mut more).await?;
            next.extend_from_slice(&more);
        }
        assert_eq!(next, b"next frames");
        Ok(())
    }
}
