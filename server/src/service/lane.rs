//! A connection that carries one session stream and nothing else, served
//! here directly: HTTP/2 frames and gRPC's message prefix read and written
//! by this module, not by hyper, h2 and tonic.
//!
//! The client's side of it is `procshare`'s `lane` module, and the reason is
//! the same on both ends: a session stream is one long-lived bidirectional
//! stream, and most of a call's cost in the server was the general
//! machinery around it (callgrind, the sequential and queue workloads:
//! hyper's connection task 35 % of procshared's instructions, tonic's
//! encoding and decoding around [`Responses`] most of the rest outside the
//! operation itself). Here one task owns the socket and, each time it
//! wakes:
//!
//! - reads what came and takes the frames apart: requests' bytes go to the
//!   [`Inbox`] that [`Responses`] reads them from; settings, pings and
//!   window updates are answered or applied;
//! - asks [`Responses`] for answers while there is room to hold them, and
//!   frames them as DATA within the client's flow-control windows; requests
//!   are read only as answers are asked for, so a client that does not
//!   read is held back by flow control, as on tonic's path;
//! - gives the client its window back as requests are taken, and writes.
//!
//! Everything a request goes through is the same as on tonic's path
//! ([`super::stream`]: sessions, de-duplication, waits in tasks of their
//! own, shutdown), and so is the token check ([`Auth`]). The stream ends as
//! tonic ends it: trailers with the status, then GOAWAY and the connection
//! closes. Keep-alive pings and their timeout are the server's settings.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use h2::hpack;
use procshare_proto as pb;
use procshare_proto::http2::{
    error, flag, kind, put_frame_header, put_hpack_literal, read_frame_header, read_settings,
    setting, unpad, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, FRAME_HEADER, HEADER_TABLE,
};
use prost::bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::{Code, Status};

use super::auth::Auth;
use super::grpc::Core;
use super::stream::{self, Responses};

const SESSION_PATH: &str = "/procshare.v1.Procshare/Session";
/// The largest frame taken (advertised in the settings).
const MAX_FRAME_IN: usize = 1 << 20;
/// The most header block bytes taken for one request (HEADERS and its
/// CONTINUATIONs).
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Encoded answers held back by the client's flow control before no more
/// are asked for.
const MAX_HELD_ANSWERS: usize = 256 * 1024;
/// Bytes waiting for the socket before no more frames are read (a client
/// that pings and does not read).
const MAX_UNWRITTEN: usize = 1 << 20;
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// What every session-only connection of a server shares.
pub(super) struct Config {
    pub core: Arc<Core>,
    pub auth: Auth,
    /// Largest request or answer message.
    pub max_message_bytes: usize,
    /// Ping every `.0`; close when no answer came within `.1`.
    pub keepalive: Option<(Duration, Duration)>,
}

/// A connection error: GOAWAY with `code`, then close.
#[derive(Debug)]
struct Broken {
    code: u32,
    why: String,
}

fn broken(code: u32, why: impl Into<String>) -> Broken {
    Broken {
        code,
        why: why.into(),
    }
}

/// Serves one session-only connection until it closes. `settings` is the
/// payload of the client's first SETTINGS frame; `rest` what was read
/// after it. `peer` names the client in log lines.
pub(super) async fn serve<IO>(
    io: IO,
    settings: BytesMut,
    rest: BytesMut,
    config: Arc<Config>,
    peer: String,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn::new(io, config, peer);
    conn.opening(&settings);
    conn.rbuf = rest;
    if let Err(e) = std::future::poll_fn(|cx| conn.poll_run(cx)).await {
        tracing::debug!(peer = %conn.peer, error = %e, "session connection closed");
    }
}

/// The receive window of the stream and of the connection: large enough for
/// many requests in flight, and for the largest message whole.
fn stream_window(max_message_bytes: usize) -> i64 {
    let want = (4 << 20).max(max_message_bytes.saturating_add(5 + MAX_FRAME_IN));
    want.min(0x7fff_ffff) as i64
}

enum State {
    Open,
    /// GOAWAY is queued: write what is left, then linger until the client
    /// closes or the deadline passes.
    Closing(Option<Pin<Box<Sleep>>>),
}

struct Keepalive {
    timer: Pin<Box<Sleep>>,
    /// The timer was polled since its last reset: it wakes the task when
    /// it fires, so until then it need not be polled again (a poll
    /// registers the waker anew each time).
    armed: bool,
    /// A ping is out and not answered.
    waiting: bool,
}

struct Conn<IO> {
    io: IO,
    config: Arc<Config>,
    peer: String,
    /// Read and not yet taken as frames.
    rbuf: BytesMut,
    /// Frames to write.
    wbuf: BytesMut,
    hpack: hpack::Decoder,
    /// A header block waiting for CONTINUATION frames: its stream, bytes,
    /// and whether it ends the stream.
    block: Option<(u32, BytesMut, bool)>,
    /// The session stream's id; 0 until its HEADERS came.
    stream: u32,
    /// The session, while it runs.
    responses: Option<Responses<Inbox>>,
    /// Encoded answers the client's windows have no room for yet.
    held: BytesMut,
    /// The stream ended with this status: trailers go out once `held` is
    /// written.
    trailers: Option<Status>,
    send_conn: i64,
    send_stream: i64,
    /// The client's initial stream window (its settings).
    peer_initial: i64,
    max_frame_out: usize,
    /// This end's receive window, and what the client may still send on
    /// the connection and on the stream.
    window: i64,
    recv_conn: i64,
    recv_stream: i64,
    /// Bytes taken, not yet given back.
    credit_conn: i64,
    credit_stream: i64,
    keepalive: Option<Keepalive>,
    state: State,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    fn new(io: IO, config: Arc<Config>, peer: String) -> Self {
        let window = stream_window(config.max_message_bytes);
        Conn {
            io,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            hpack: hpack::Decoder::new(HEADER_TABLE),
            block: None,
            stream: 0,
            responses: None,
            held: BytesMut::new(),
            trailers: None,
            send_conn: DEFAULT_WINDOW,
            send_stream: DEFAULT_WINDOW,
            peer_initial: DEFAULT_WINDOW,
            max_frame_out: DEFAULT_MAX_FRAME,
            window,
            recv_conn: window,
            recv_stream: window,
            credit_conn: 0,
            credit_stream: 0,
            keepalive: config.keepalive.map(|(every, _)| Keepalive {
                timer: Box::pin(tokio::time::sleep(every)),
                armed: false,
                waiting: false,
            }),
            state: State::Open,
            config,
            peer,
        }
    }

    /// This end's settings and window, and the client's first settings
    /// applied.
    fn opening(&mut self, client_settings: &[u8]) {
        let settings: [(u16, u32); 3] = [
            (setting::MAX_CONCURRENT_STREAMS, 1),
            (setting::INITIAL_WINDOW_SIZE, self.window as u32),
            (setting::MAX_FRAME_SIZE, MAX_FRAME_IN as u32),
        ];
        put_frame_header(&mut self.wbuf, 6 * settings.len(), kind::SETTINGS, 0, 0);
        for (id, v) in settings {
            self.wbuf.put_u16(id);
            self.wbuf.put_u32(v);
        }
        put_frame_header(&mut self.wbuf, 4, kind::WINDOW_UPDATE, 0, 0);
        self.wbuf.put_u32((self.window - DEFAULT_WINDOW) as u32);
        if let Err(e) = self.settings(client_settings) {
            self.go_away(e);
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        if self.wbuf.capacity() == 0 {
            self.wbuf = spare::take();
        }
        loop {
            let mut busy = false;
            if self.wbuf.len() < MAX_UNWRITTEN {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(true)) => busy = true,
                    // The client closed its end: nothing more to do (the
                    // running requests are cancelled with `responses`).
                    Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if let State::Open = self.state {
                if let Err(e) = self.take_frames() {
                    self.go_away(e);
                }
            }
            if let State::Open = self.state {
                busy |= self.poll_answers(cx);
                self.frame_answers();
                self.give_back();
            }
            if self.poll_keepalive(cx).is_err() {
                // A peer that does not answer pings does not read either:
                // nothing more is written, the connection is dropped.
                tracing::debug!(peer = %self.peer, "no answer to a ping; closing a session connection");
                return Poll::Ready(Ok(()));
            }
            match self.poll_write(cx)? {
                Poll::Ready(()) => {
                    if let State::Closing(linger) = &mut self.state {
                        // All is written: say no more is coming, and wait
                        // for the client to close (closing first could
                        // reset the connection before it read the end).
                        let linger =
                            linger.get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
                        if linger.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(()));
                        }
                        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                    }
                }
                Poll::Pending => {}
            }
            if !busy {
                self.idle();
                return Poll::Pending;
            }
        }
    }

    /// Gives back the buffers an idle connection does not need: ten
    /// thousand idle clients hold none.
    fn idle(&mut self) {
        if self.rbuf.is_empty() {
            spare::give(std::mem::take(&mut self.rbuf));
        }
        if self.wbuf.is_empty() {
            spare::give(std::mem::take(&mut self.wbuf));
        }
        if self.held.is_empty() {
            self.held = BytesMut::new();
        }
        if let Some(r) = &mut self.responses {
            let inbox = r.requests_mut();
            if inbox.data.is_empty() {
                inbox.data = BytesMut::new();
            }
        }
    }

    /// Reads once. `Ok(false)`: the client closed its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        if self.rbuf.capacity() == 0 {
            self.rbuf = spare::take();
        } else if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(DEFAULT_MAX_FRAME);
        }
        let n = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.rbuf
        ))?;
        if let State::Closing(_) = self.state {
            // Lingering: what comes is dropped.
            self.rbuf.clear();
        }
        Poll::Ready(Ok(n > 0))
    }

    /// Writes what is queued. Ready when all of it is written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<Poll<()>, std::io::Error> {
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) if n == self.wbuf.len() => self.wbuf.clear(),
                Poll::Ready(Ok(n)) => self.wbuf.advance(n),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(Poll::Pending),
            }
        }
        Ok(Poll::Ready(()))
    }

    /// Queues GOAWAY and starts closing: the session (if any) is dropped,
    /// which cancels what is running.
    fn go_away(&mut self, e: Broken) {
        if e.code != error::NO_ERROR {
            tracing::debug!(peer = %self.peer, code = e.code, why = %e.why, "closing a session connection");
        }
        self.responses = None;
        let why = e.why.as_bytes();
        let why = &why[..why.len().min(256)];
        put_frame_header(&mut self.wbuf, 8 + why.len(), kind::GOAWAY, 0, 0);
        self.wbuf.put_u32(self.stream);
        self.wbuf.put_u32(e.code);
        self.wbuf.put_slice(why);
        self.state = State::Closing(None);
    }

    /// Takes every whole frame out of `rbuf`.
    fn take_frames(&mut self) -> Result<(), Broken> {
        while let Some(h) = read_frame_header(&self.rbuf) {
            if h.len > MAX_FRAME_IN {
                return Err(broken(
                    error::FRAME_SIZE_ERROR,
                    format!("a frame of {} bytes", h.len),
                ));
            }
            if self.rbuf.len() < FRAME_HEADER + h.len {
                self.rbuf.reserve(FRAME_HEADER + h.len - self.rbuf.len());
                return Ok(());
            }
            self.rbuf.advance(FRAME_HEADER);
            let payload = self.rbuf.split_to(h.len);
            self.frame(h.kind, h.flags, h.stream, payload)?;
            if !matches!(self.state, State::Open) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, mut p: BytesMut) -> Result<(), Broken> {
        if self.block.is_some() && kind != kind::CONTINUATION {
            return Err(broken(
                error::PROTOCOL_ERROR,
                "a header block was not continued",
            ));
        }
        match kind {
            kind::DATA => self.data(flags, stream, p),
            kind::HEADERS => {
                if stream == 0 || stream.is_multiple_of(2) {
                    return Err(broken(error::PROTOCOL_ERROR, "HEADERS on a wrong stream"));
                }
                let mut block =
                    unpad(&mut p, flags).map_err(|why| broken(error::PROTOCOL_ERROR, why))?;
                if flags & flag::PRIORITY != 0 {
                    if block.len() < 5 {
                        return Err(broken(error::FRAME_SIZE_ERROR, "a short HEADERS frame"));
                    }
                    block.advance(5);
                }
                let ends = flags & flag::END_STREAM != 0;
                if flags & flag::END_HEADERS == 0 {
                    self.block = Some((stream, block, ends));
                    return Ok(());
                }
                self.header_block(stream, block, ends)
            }
            kind::CONTINUATION => {
                let Some((first, mut block, ends)) = self.block.take() else {
                    return Err(broken(
                        error::PROTOCOL_ERROR,
                        "a CONTINUATION frame out of place",
                    ));
                };
                if first != stream {
                    return Err(broken(
                        error::PROTOCOL_ERROR,
                        "a CONTINUATION frame on another stream",
                    ));
                }
                if block.len() + p.len() > MAX_HEADER_BLOCK {
                    return Err(broken(error::ENHANCE_YOUR_CALM, "headers too large"));
                }
                block.extend_from_slice(&p);
                if flags & flag::END_HEADERS == 0 {
                    self.block = Some((stream, block, ends));
                    return Ok(());
                }
                self.header_block(stream, block, ends)
            }
            kind::PRIORITY => Ok(()),
            kind::RST_STREAM => {
                if p.len() != 4 {
                    return Err(broken(
                        error::FRAME_SIZE_ERROR,
                        "an RST_STREAM frame of the wrong size",
                    ));
                }
                if stream != 0 && stream == self.stream {
                    // The client gave up the session: cancel and close.
                    self.go_away(broken(error::NO_ERROR, "the stream was reset"));
                }
                Ok(())
            }
            kind::SETTINGS => {
                if stream != 0 {
                    return Err(broken(error::PROTOCOL_ERROR, "SETTINGS on a stream"));
                }
                if flags & flag::ACK == 0 {
                    self.settings(&p)?;
                }
                Ok(())
            }
            kind::PUSH_PROMISE => Err(broken(error::PROTOCOL_ERROR, "a client pushed")),
            kind::PING => {
                if p.len() != 8 {
                    return Err(broken(
                        error::FRAME_SIZE_ERROR,
                        "a PING frame of the wrong size",
                    ));
                }
                if flags & flag::ACK != 0 {
                    if let (Some(k), Some((every, _))) =
                        (&mut self.keepalive, self.config.keepalive)
                    {
                        if k.waiting {
                            k.waiting = false;
                            k.timer.as_mut().reset(Instant::now() + every);
                            k.armed = false;
                        }
                    }
                } else {
                    put_frame_header(&mut self.wbuf, 8, kind::PING, flag::ACK, 0);
                    self.wbuf.put_slice(&p);
                }
                Ok(())
            }
            kind::GOAWAY => {
                self.go_away(broken(error::NO_ERROR, "the client went away"));
                Ok(())
            }
            kind::WINDOW_UPDATE => {
                if p.len() != 4 {
                    return Err(broken(
                        error::FRAME_SIZE_ERROR,
                        "a WINDOW_UPDATE frame of the wrong size",
                    ));
                }
                let inc = i64::from(p.get_u32() & 0x7fff_ffff);
                if inc == 0 {
                    return Err(broken(error::PROTOCOL_ERROR, "a window update of 0"));
                }
                let w = match stream {
                    0 => &mut self.send_conn,
                    s if s == self.stream => &mut self.send_stream,
                    _ => return Ok(()),
                };
                *w += inc;
                if *w > 0x7fff_ffff {
                    return Err(broken(error::FLOW_CONTROL_ERROR, "a window over 2^31-1"));
                }
                Ok(())
            }
            // Unknown kinds are ignored (RFC 9113, 4.1).
            _ => Ok(()),
        }
    }

    fn data(&mut self, flags: u8, stream: u32, mut p: BytesMut) -> Result<(), Broken> {
        if stream == 0 {
            return Err(broken(error::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = p.len() as i64;
        self.recv_conn -= len;
        if self.recv_conn < 0 {
            return Err(broken(
                error::FLOW_CONTROL_ERROR,
                "more data than the connection's window",
            ));
        }
        let open = stream == self.stream && self.responses.is_some();
        if !open {
            // A stream that is over (or refused): its bytes only count
            // against the connection.
            self.credit_conn += len;
            return Ok(());
        }
        self.recv_stream -= len;
        if self.recv_stream < 0 {
            return Err(broken(
                error::FLOW_CONTROL_ERROR,
                "more data than the stream's window",
            ));
        }
        let body = unpad(&mut p, flags).map_err(|why| broken(error::PROTOCOL_ERROR, why))?;
        // Padding is given back at once; the requests as they are taken.
        let padding = len - body.len() as i64;
        self.credit_conn += padding;
        self.credit_stream += padding;
        if let Some(r) = &mut self.responses {
            let inbox = r.requests_mut();
            if inbox.data.is_empty() {
                // Whole requests, most often: taken where they were read.
                inbox.data = body;
            } else {
                inbox.data.extend_from_slice(&body);
            }
            inbox.ended |= flags & flag::END_STREAM != 0;
        }
        Ok(())
    }

    fn settings(&mut self, p: &[u8]) -> Result<(), Broken> {
        let s = read_settings(p).map_err(|e| broken(e.code, e.why))?;
        if let Some(v) = s.initial_window {
            self.send_stream += i64::from(v) - self.peer_initial;
            self.peer_initial = i64::from(v);
        }
        if let Some(m) = s.max_frame {
            self.max_frame_out = m;
        }
        put_frame_header(&mut self.wbuf, 0, kind::SETTINGS, flag::ACK, 0);
        Ok(())
    }

    /// A whole header block: the session's request headers, the client's
    /// trailers, or another stream (refused).
    fn header_block(&mut self, stream: u32, mut block: BytesMut, ends: bool) -> Result<(), Broken> {
        if block.len() > MAX_HEADER_BLOCK {
            return Err(broken(error::ENHANCE_YOUR_CALM, "headers too large"));
        }
        let mut request = RequestHeaders::default();
        // Decoded whatever the stream, to keep the HPACK table in step.
        self.hpack
            .decode(&mut std::io::Cursor::new(&mut block), |h| {
                request.take(h);
                std::ops::ControlFlow::Continue(())
            })
            .map_err(|e| broken(error::PROTOCOL_ERROR, format!("bad header block: {e:?}")))?;
        if self.stream == 0 {
            self.stream = stream;
            match request.check(&self.config.auth, &self.peer) {
                Ok(()) => {
                    self.responses = Some(stream::serve(
                        self.config.core.clone(),
                        Inbox::new(self.config.max_message_bytes),
                    ));
                    self.put_headers(false, None);
                    if ends {
                        // No request will come: the session just ends.
                        if let Some(r) = &mut self.responses {
                            r.requests_mut().ended = true;
                        }
                    }
                }
                Err(status) => {
                    self.put_headers(true, Some(&status));
                    self.go_away(broken(error::NO_ERROR, "the call was refused"));
                }
            }
            return Ok(());
        }
        if stream == self.stream {
            if !ends {
                return Err(broken(
                    error::PROTOCOL_ERROR,
                    "headers in the middle of the stream",
                ));
            }
            if let Some(r) = &mut self.responses {
                r.requests_mut().ended = true;
            }
            return Ok(());
        }
        // This connection carries one stream.
        put_frame_header(&mut self.wbuf, 4, kind::RST_STREAM, 0, stream);
        self.wbuf.put_u32(error::REFUSED_STREAM);
        Ok(())
    }

    /// The response's headers; `trailers_only` ends the stream with
    /// `status` in them.
    fn put_headers(&mut self, trailers_only: bool, status: Option<&Status>) {
        let mut b = BytesMut::with_capacity(64);
        b.put_u8(0x88); // :status: 200 (static 8)
        put_hpack_literal(&mut b, b"content-type", b"application/grpc");
        if let Some(s) = status {
            put_status(&mut b, s);
        }
        let flags = flag::END_HEADERS | if trailers_only { flag::END_STREAM } else { 0 };
        put_frame_header(&mut self.wbuf, b.len(), kind::HEADERS, flags, self.stream);
        self.wbuf.put_slice(&b);
    }

    /// Asks the session for answers while there is room to hold them.
    /// Returns whether any came.
    fn poll_answers(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        while self.trailers.is_none() && self.held.len() < MAX_HELD_ANSWERS {
            let Some(r) = &mut self.responses else {
                break;
            };
            match Pin::new(&mut *r).poll_next(cx) {
                Poll::Ready(Some(Ok(answer))) => {
                    any = true;
                    self.put_answer(&answer);
                }
                Poll::Ready(Some(Err(status))) => self.trailers = Some(status),
                Poll::Ready(None) => self.trailers = Some(Status::new(Code::Ok, "")),
                Poll::Pending => break,
            }
        }
        if let Some(r) = &mut self.responses {
            let taken = std::mem::take(&mut r.requests_mut().taken) as i64;
            self.credit_conn += taken;
            self.credit_stream += taken;
        }
        any
    }

    /// Queues one answer: straight into a DATA frame when the windows have
    /// room and nothing is held before it.
    fn put_answer(&mut self, answer: &pb::Response) {
        let len = answer.encoded_len();
        if len > self.config.max_message_bytes {
            // As tonic: the stream ends with the error (the store keeps
            // answers below the bound; this is a safety net).
            self.trailers = Some(Status::resource_exhausted(format!(
                "an answer of {len} bytes is over the limit of {}",
                self.config.max_message_bytes
            )));
            return;
        }
        let framed = 5 + len;
        let room = self.send_conn.min(self.send_stream);
        if self.held.is_empty() && framed as i64 <= room && framed <= self.max_frame_out {
            put_frame_header(&mut self.wbuf, framed, kind::DATA, 0, self.stream);
            put_message(&mut self.wbuf, answer, len);
            self.send_conn -= framed as i64;
            self.send_stream -= framed as i64;
        } else {
            put_message(&mut self.held, answer, len);
        }
    }

    /// Frames held answers as the windows allow; then the trailers, when
    /// the stream is over and everything before them is out.
    fn frame_answers(&mut self) {
        while !self.held.is_empty() {
            let room = self
                .send_conn
                .min(self.send_stream)
                .min(self.max_frame_out as i64);
            if room <= 0 {
                return;
            }
            let n = self.held.len().min(room as usize);
            put_frame_header(&mut self.wbuf, n, kind::DATA, 0, self.stream);
            self.wbuf.put_slice(&self.held.split_to(n));
            self.send_conn -= n as i64;
            self.send_stream -= n as i64;
        }
        if let Some(status) = self.trailers.take() {
            let mut b = BytesMut::with_capacity(64);
            put_status(&mut b, &status);
            put_frame_header(
                &mut self.wbuf,
                b.len(),
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                self.stream,
            );
            self.wbuf.put_slice(&b);
            self.go_away(broken(error::NO_ERROR, "the session ended"));
        }
    }

    /// Gives the client back what was taken: at half a window, or at once
    /// when a message waits for bytes it could otherwise not send.
    fn give_back(&mut self) {
        let waiting = self
            .responses
            .as_mut()
            .is_some_and(|r| r.requests_mut().wants_more());
        let half = self.window / 2;
        if self.credit_conn > 0 && (self.credit_conn >= half || waiting) {
            put_frame_header(&mut self.wbuf, 4, kind::WINDOW_UPDATE, 0, 0);
            self.wbuf.put_u32(self.credit_conn as u32);
            self.recv_conn += self.credit_conn;
            self.credit_conn = 0;
        }
        if self.credit_stream > 0 && (self.credit_stream >= half || waiting) {
            put_frame_header(&mut self.wbuf, 4, kind::WINDOW_UPDATE, 0, self.stream);
            self.wbuf.put_u32(self.credit_stream as u32);
            self.recv_stream += self.credit_stream;
            self.credit_stream = 0;
        }
    }

    /// Pings every interval; `Err` when a ping went unanswered for the
    /// timeout.
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Result<(), ()> {
        let (Some(k), Some((_, timeout))) = (&mut self.keepalive, self.config.keepalive) else {
            return Ok(());
        };
        if k.armed && !k.timer.is_elapsed() {
            return Ok(());
        }
        if k.timer.as_mut().poll(cx).is_pending() {
            k.armed = true;
            return Ok(());
        }
        if k.waiting {
            return Err(());
        }
        put_frame_header(&mut self.wbuf, 8, kind::PING, 0, 0);
        self.wbuf.put_u64(0x7072_6f63_7368_6172); // "procshar"
        k.waiting = true;
        k.timer.as_mut().reset(Instant::now() + timeout);
        // Registers the timer's waker for the new deadline.
        k.armed = k.timer.as_mut().poll(cx).is_pending();
        Ok(())
    }
}

/// Buffers of idle connections, kept a few per thread for the next
/// connection that reads or writes: an idle connection holds none, and a
/// busy one does not allocate one per call.
mod spare {
    use std::cell::RefCell;

    use prost::bytes::BytesMut;

    const KEPT: usize = 16;
    const SIZE: usize = 16 * 1024;

    thread_local! {
        static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    pub fn take() -> BytesMut {
        SPARE
            .try_with(|s| s.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
    }

    /// Keeps `b` (emptied) if it is of a useful size and there is room.
    pub fn give(mut b: BytesMut) {
        if !(SIZE / 4..=4 * SIZE).contains(&b.capacity()) {
            return;
        }
        b.clear();
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEPT {
                s.push(b);
            }
        });
    }
}

fn put_message(out: &mut BytesMut, answer: &pb::Response, len: usize) {
    out.reserve(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    // Cannot fail: the room was reserved.
    let _ = answer.encode(out);
}

/// `grpc-status` and, if any, `grpc-message` (percent-encoded, as gRPC
/// over HTTP/2 says).
fn put_status(out: &mut BytesMut, s: &Status) {
    put_hpack_literal(
        out,
        b"grpc-status",
        (s.code() as i32).to_string().as_bytes(),
    );
    if !s.message().is_empty() {
        let mut m = Vec::with_capacity(s.message().len());
        for &c in s.message().as_bytes() {
            if (0x20..0x7f).contains(&c) && c != b'%' {
                m.push(c);
            } else {
                m.extend_from_slice(format!("%{c:02X}").as_bytes());
            }
        }
        put_hpack_literal(out, b"grpc-message", &m);
    }
}

/// What the session's request headers said.
#[derive(Default)]
struct RequestHeaders {
    post: bool,
    path_ok: bool,
    grpc: bool,
    compressed: bool,
    authorization: Option<Vec<u8>>,
}

impl RequestHeaders {
    fn take(&mut self, h: hpack::Header) {
        match h {
            hpack::Header::Method(m) => self.post = m == tonic::codegen::http::Method::POST,
            hpack::Header::Path(p) => self.path_ok = &*p == SESSION_PATH,
            hpack::Header::Field { name, value } => match name.as_str() {
                "content-type" => self.grpc = value.as_bytes().starts_with(b"application/grpc"),
                "grpc-encoding" => self.compressed = value.as_bytes() != b"identity",
                super::auth::AUTHORIZATION => self.authorization = Some(value.as_bytes().to_vec()),
                _ => {}
            },
            _ => {}
        }
    }

    /// Whether this is the session call, with the right token.
    fn check(&self, auth: &Auth, peer: &str) -> Result<(), Status> {
        if !self.post || !self.grpc {
            return Err(Status::internal("not a gRPC call"));
        }
        if !self.path_ok {
            return Err(Status::unimplemented(
                "this connection carries only the session stream (/procshare.v1.Procshare/Session)",
            ));
        }
        if self.compressed {
            return Err(Status::unimplemented(
                "compressed messages are not taken on the session stream",
            ));
        }
        auth.check_header(self.authorization.as_deref(), || peer.to_owned())
    }
}

/// The requests of a session, as they arrive: the gRPC byte stream (each
/// message behind a 5-byte prefix), decoded one at a time as [`Responses`]
/// asks.
pub(super) struct Inbox {
    data: BytesMut,
    /// The client ended its side.
    ended: bool,
    /// Bytes taken since the connection last looked (to give back).
    taken: usize,
    max_message: usize,
}

impl Inbox {
    fn new(max_message: usize) -> Self {
        Inbox {
            data: BytesMut::new(),
            ended: false,
            taken: 0,
            max_message,
        }
    }

    /// A message has begun and is not whole.
    fn wants_more(&self) -> bool {
        match self.data.get(..5) {
            None => !self.data.is_empty(),
            Some(p) => {
                let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
                self.data.len() < 5 + len
            }
        }
    }
}

impl Stream for Inbox {
    type Item = Result<pb::Request, Status>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.data.len() >= 5 {
            let len = u32::from_be_bytes([this.data[1], this.data[2], this.data[3], this.data[4]])
                as usize;
            if this.data[0] != 0 {
                return Poll::Ready(Some(Err(Status::internal(
                    "a compressed message, though no compression was agreed",
                ))));
            }
            if len > this.max_message {
                return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "a request of {len} bytes is over the server's limit of {} \
                     (--max-message-bytes)",
                    this.max_message
                )))));
            }
            if this.data.len() >= 5 + len {
                let message = this.data.split_to(5 + len);
                this.taken += 5 + len;
                return Poll::Ready(Some(
                    pb::Request::decode(&message[5..])
                        .map_err(|e| Status::internal(format!("cannot decode a request: {e}"))),
                ));
            }
        }
        if this.ended {
            if this.data.is_empty() {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(Status::internal(
                "the stream ended inside a message",
            ))));
        }
        // The connection polls again when more bytes come.
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::grpc::{Service, ServiceLimits};
    use crate::service::session::{SessionLimits, Sessions};
    use crate::store::Store;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_util::sync::CancellationToken;

    fn config() -> Arc<Config> {
        let store = Arc::new(Store::new());
        let sessions = Sessions::new(store.clone(), SessionLimits::default());
        let service = Service::new(
            store,
            sessions,
            ServiceLimits::default(),
            CancellationToken::new(),
        );
        Arc::new(Config {
            core: service.core(),
            auth: Auth::new(None),
            max_message_bytes: 4 << 20,
            keepalive: None,
        })
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = BytesMut::new();
        put_frame_header(&mut f, payload.len(), kind, flags, stream);
        f.put_slice(payload);
        f.to_vec()
    }

    /// The `Session` call's headers and one request on stream 1.
    fn session_and_request(id: u64) -> Vec<u8> {
        let mut h = BytesMut::new();
        h.put_u8(0x83); // :method: POST
        put_hpack_literal(&mut h, b":path", SESSION_PATH.as_bytes());
        put_hpack_literal(&mut h, b"content-type", b"application/grpc");
        let mut out = frame(kind::HEADERS, flag::END_HEADERS, 1, &h);
        out.extend(request(id));
        out
    }

    fn request(id: u64) -> Vec<u8> {
        let r = pb::Request {
            client_id: "unit".into(),
            request_id: id,
            op: Some(pb::Op {
                name: String::new(),
                kind: Some(pb::op::Kind::ListObjects(pb::ListObjects {})),
            }),
            ..Default::default()
        };
        let mut m = BytesMut::new();
        m.put_u8(0);
        m.put_u32(r.encoded_len() as u32);
        r.encode(&mut m).unwrap();
        frame(kind::DATA, 0, 1, &m)
    }

    /// Polls the connection once: everything the in-memory pipe holds is
    /// handled within the poll.
    async fn poll(conn: &mut Conn<DuplexStream>) {
        std::future::poll_fn(|cx| {
            assert!(conn.poll_run(cx).is_pending(), "the connection ended");
            Poll::Ready(())
        })
        .await
    }

    /// Reads what the server wrote until it holds the answer to `id`.
    async fn read_answer(client: &mut DuplexStream, id: u64) {
        let mut got = Vec::new();
        let needle = pb::Response {
            request_id: id,
            ..Default::default()
        }
        .encode_to_vec();
        while !got.windows(needle.len()).any(|w| w == needle) {
            let mut b = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut b))
                .await
                .expect("no answer within 10 s")
                .unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&b[..n]);
        }
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffers() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Conn::new(server, config(), "unit".into());
        conn.opening(&[]);
        client.write_all(&session_and_request(1)).await.unwrap();
        poll(&mut conn).await;
        read_answer(&mut client, 1).await;
        assert!(conn.responses.is_some());
        for (what, cap) in [
            ("read", conn.rbuf.capacity()),
            ("write", conn.wbuf.capacity()),
            ("held", conn.held.capacity()),
            (
                "inbox",
                conn.responses
                    .as_mut()
                    .unwrap()
                    .requests_mut()
                    .data
                    .capacity(),
            ),
        ] {
            assert_eq!(cap, 0, "the {what} buffer is kept while idle");
        }
        // And the next call takes buffers again (here, the spare ones).
        client.write_all(&request(2)).await.unwrap();
        poll(&mut conn).await;
        read_answer(&mut client, 2).await;
    }

    /// A frame of any kind (the known ones and two unknown), flags, stream
    /// and payload.
    fn any_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (
            0u8..12,
            any::<u8>(),
            0u32..6,
            proptest::collection::vec(any::<u8>(), 0..48),
        )
            .prop_map(|(kind, flags, stream, payload)| frame(kind, flags, stream, &payload))
    }

    proptest::proptest! {
        // 256 cases by default (a second); PROPTEST_CASES for a longer run.
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Whatever a client sends after its preface, the connection never
        /// panics: it answers, refuses or closes. (Polled here, in the
        /// test's thread, a panic fails the test; in a task it would only
        /// end that task.)
        #[test]
        fn any_frames_after_the_opening_never_panic(
            session_first in proptest::prelude::any::<bool>(),
            frames in proptest::collection::vec(any_frame(), 0..24),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (mut client, server) = tokio::io::duplex(1 << 20);
                let mut conn = Conn::new(server, config(), "fuzz".into());
                conn.opening(&[]);
                if session_first {
                    client.write_all(&session_and_request(1)).await.unwrap();
                }
                for f in &frames {
                    client.write_all(f).await.unwrap();
                }
                for _ in 0..4 {
                    let ended = std::future::poll_fn(|cx| Poll::Ready(conn.poll_run(cx).is_ready())).await;
                    if ended {
                        break;
                    }
                }
            });
        }
    }
}
