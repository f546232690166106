//! The session stream on a connection of its own, spoken directly: HTTP/2
//! framing and gRPC's message prefix written and read here, not by hyper,
//! h2 and tonic.
//!
//! Every call of a client goes over one long-lived stream, and a call's
//! cost in the client was mostly the general machinery around it: h2's
//! stream state, its priority and flow-control queues, hyper's body pipe
//! and tonic's body wrappers and decoder, with a task hop between each
//! (callgrind, one client making 20,000 sequential calls: more than half of
//! its 21.7k instructions a call were in h2 and hyper). One bidirectional
//! stream needs little of that: a request is a DATA frame carrying the
//! encoded request behind its 5-byte gRPC prefix, a response the same the
//! other way. What this module does:
//!
//! - opens the connection (TCP or a Unix socket; `https://` URLs keep
//!   tonic's connection, TLS is not done here), sends the HTTP/2 preface,
//!   its settings (with [`pb::SESSION_ONLY_SETTING`], which procshared
//!   takes as "serve this connection's one stream directly" and any other
//!   server ignores) and the request's headers, and waits for the
//!   response's headers: a server without the stream answers
//!   UNIMPLEMENTED as before;
//! - a writer task takes the encoded requests from the caller's channel,
//!   as many as are queued, and writes them in as few DATA frames and
//!   `write`s as the server's flow-control windows and frame size allow,
//!   with the control frames the reader asks for (settings and ping
//!   acknowledgements, window updates);
//! - the [`Reader`] reads frames, answers the server's settings and pings,
//!   gives back flow-control window as it takes data, and decodes the
//!   responses; the trailers end the stream (with the server's status);
//! - with keep-alive on, a task pings the server every interval and shuts
//!   the socket down if no answer comes within the timeout, as hyper did.
//!
//! Everything else about HTTP/2 (other streams, pushes, priorities) is not
//! needed here: the connection carries this one stream and nothing else.
//! Header blocks are decoded with h2's own HPACK decoder.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use h2::hpack;
use procshare_proto as pb;
use procshare_proto::http2::{
    flag, kind, put_frame_header, put_hpack_int, put_hpack_literal, put_hpack_str,
    read_frame_header, read_settings, setting, unpad, DEFAULT_MAX_FRAME, DEFAULT_WINDOW,
    FRAME_HEADER, HEADER_TABLE, PREFACE,
};
use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::codegen::http::{HeaderMap, StatusCode};
use tonic::{Code, Status};

const STREAM: u32 = 1;
/// The largest frame this end takes (advertised in its settings).
const MAX_FRAME_IN: usize = 1 << 20;

/// Where the server listens.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp { host: String, port: u16 },
    Unix(std::path::PathBuf),
}

/// How to open a lane.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub target: Target,
    /// The `:authority` of the request (`host:port`).
    pub authority: String,
    /// The `authorization` header, if a token is used.
    pub authorization: Option<String>,
    pub connect_timeout: Duration,
    /// Ping every `.0`, give up when no answer came within `.1`.
    pub keepalive: Option<(Duration, Duration)>,
    /// The receive window of the stream (the connection's is twice it).
    pub window: u32,
}

/// What the reader (or the keep-alive task) has the writer send.
#[derive(Default)]
struct Control {
    /// Encoded frames to write before any more data.
    frames: Vec<u8>,
    /// Window the server gave back, on the connection and on the stream.
    conn_credit: i64,
    stream_credit: i64,
    /// The server's largest frame, when its settings change it.
    max_frame: Option<usize>,
}

/// What the two halves of a lane share.
struct Shared {
    control: Mutex<Control>,
    /// Wakes the writer: an empty message (never a request) on the
    /// callers' own channel, held weakly so that the channel still closes
    /// when the last caller's sender goes.
    wake: mpsc::WeakUnboundedSender<Bytes>,
    /// Ping acknowledgements received.
    pongs: AtomicU64,
    /// The reader is gone (the stream ended): the keep-alive stops.
    closed: AtomicBool,
}

impl Shared {
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        // Plain data: a panic while it was held leaves nothing half-done.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_writer(&self) {
        if let Some(tx) = self.wake.upgrade() {
            let _ = tx.send(Bytes::new());
        }
    }
}

/// The header block of the `Session` call: indexed or literal fields, none
/// added to the server's table (nothing is repeated on this connection).
fn request_headers(s: &Settings) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    b.push(0x83); // :method: POST (static 3)
    b.push(0x86); // :scheme: http (static 6)
    put_hpack_int(&mut b, 0x00, 4, 4); // :path (static name 4), literal
    put_hpack_str(&mut b, b"/procshare.v1.Procshare/Session");
    put_hpack_int(&mut b, 0x00, 4, 1); // :authority (static name 1)
    put_hpack_str(&mut b, s.authority.as_bytes());
    for (name, value) in [
        (&b"content-type"[..], &b"application/grpc"[..]),
        (b"te", b"trailers"),
        (b"user-agent", b"procshare"),
    ] {
        put_hpack_literal(&mut b, name, value);
    }
    if let Some(auth) = &s.authorization {
        b.push(0x10); // never indexed: a secret
        put_hpack_str(&mut b, b"authorization");
        put_hpack_str(&mut b, auth.as_bytes());
    }
    b
}

/// The first bytes of the connection: preface, settings, the connection's
/// larger window, the request's headers.
fn opening(s: &Settings) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(PREFACE);
    let settings: [(u16, u32); 4] = [
        (setting::ENABLE_PUSH, 0),
        (setting::INITIAL_WINDOW_SIZE, s.window),
        (setting::MAX_FRAME_SIZE, MAX_FRAME_IN as u32),
        // This connection carries the session stream alone: procshared
        // serves it outside its general HTTP/2 stack; others ignore it.
        (pb::SESSION_ONLY_SETTING, 1),
    ];
    put_frame_header(&mut out, 6 * settings.len(), kind::SETTINGS, 0, 0);
    for (id, v) in settings {
        out.put_u16(id);
        out.put_u32(v);
    }
    let conn_window = 2 * i64::from(s.window);
    put_frame_header(&mut out, 4, kind::WINDOW_UPDATE, 0, 0);
    out.put_u32((conn_window - DEFAULT_WINDOW) as u32);
    let headers = request_headers(s);
    put_frame_header(
        &mut out,
        headers.len(),
        kind::HEADERS,
        flag::END_HEADERS,
        STREAM,
    );
    out.extend_from_slice(&headers);
    out
}

type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Shuts the socket down under the reader's and the writer's feet (the
/// keep-alive's way to end a connection to a server that went silent).
enum Killer {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Killer {
    fn kill(&self) {
        let _ = match self {
            Killer::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Killer::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

async fn connect(t: &Target) -> std::io::Result<(ReadHalf, WriteHalf, Killer)> {
    match t {
        Target::Tcp { host, port } => {
            let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            s.set_nodelay(true)?;
            let std = s.into_std()?;
            let killer = Killer::Tcp(std.try_clone()?);
            let s = tokio::net::TcpStream::from_std(std)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w), killer))
        }
        Target::Unix(path) => {
            let s = tokio::net::UnixStream::connect(path).await?;
            let std = s.into_std()?;
            let killer = Killer::Unix(std.try_clone()?);
            let s = tokio::net::UnixStream::from_std(std)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w), killer))
        }
    }
}

/// Opens a lane: the requests go into the returned sender (encoded, as
/// [`crate::encode`] makes them; an empty one is never sent), the
/// responses come out of the [`Reader`]. Fails as the call would: a
/// server without the stream is UNIMPLEMENTED, one that cannot be reached
/// UNAVAILABLE.
pub(crate) async fn open(s: &Settings) -> Result<(mpsc::UnboundedSender<Bytes>, Reader), Status> {
    let unreachable =
        |e: &dyn std::fmt::Display| Status::unavailable(format!("cannot connect: {e}"));
    let (r, w, killer) = match tokio::time::timeout(s.connect_timeout, connect(&s.target)).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return Err(unreachable(&e)),
        Err(_) => return Err(unreachable(&"timed out")),
    };
    start(r, w, Some(killer), s).await
}

/// [`open`] on a connection made already.
async fn start(
    r: ReadHalf,
    w: WriteHalf,
    killer: Option<Killer>,
    s: &Settings,
) -> Result<(mpsc::UnboundedSender<Bytes>, Reader), Status> {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        control: Mutex::new(Control::default()),
        wake: tx.downgrade(),
        pongs: AtomicU64::new(0),
        closed: AtomicBool::new(false),
    });
    tokio::spawn(write(w, rx, shared.clone(), opening(s)));
    let mut reader = Reader {
        io: r,
        buf: BytesMut::with_capacity(DEFAULT_MAX_FRAME),
        hpack: hpack::Decoder::new(HEADER_TABLE),
        block: None,
        messages: BytesMut::new(),
        shared: shared.clone(),
        window: i64::from(s.window),
        unacked_conn: 0,
        unacked_stream: 0,
        peer_window: DEFAULT_WINDOW,
        ended: false,
    };
    if let (Some((every, timeout)), Some(killer)) = (s.keepalive, killer) {
        tokio::spawn(keepalive(shared, killer, every, timeout));
    }
    match reader.next().await? {
        Event::Headers => Ok((tx, reader)),
        Event::End => Err(Status::unavailable(
            "the server ended the session stream at once",
        )),
        Event::Response(_) => Err(Status::internal("the server answered before its headers")),
    }
}

/// Writes the connection's opening, then the requests and control frames,
/// until every sender is gone (then it ends the stream) or a write fails.
async fn write(
    mut io: WriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
    opening: Vec<u8>,
) {
    let mut out: Vec<u8> = opening;
    // The gRPC byte stream not yet sent: requests behind their prefixes.
    let mut body = BytesMut::new();
    let mut conn_window = DEFAULT_WINDOW;
    let mut stream_window = DEFAULT_WINDOW;
    let mut max_frame = DEFAULT_MAX_FRAME;
    let mut done = false;
    loop {
        {
            let mut c = shared.control();
            out.append(&mut c.frames);
            conn_window += std::mem::take(&mut c.conn_credit);
            stream_window += std::mem::take(&mut c.stream_credit);
            if let Some(m) = c.max_frame.take() {
                max_frame = m;
            }
        }
        while !body.is_empty() {
            let room = conn_window.min(stream_window).min(max_frame as i64);
            if room <= 0 {
                break;
            }
            let n = body.len().min(room as usize);
            put_frame_header(&mut out, n, kind::DATA, 0, STREAM);
            out.extend_from_slice(&body.split_to(n));
            conn_window -= n as i64;
            stream_window -= n as i64;
        }
        if done && body.is_empty() {
            // No caller is left: the server answers what is running, then
            // ends the stream, and the reader takes it from there.
            put_frame_header(&mut out, 0, kind::DATA, flag::END_STREAM, STREAM);
        }
        if !out.is_empty() {
            if let Err(e) = io.write_all(&out).await {
                tracing::debug!(error = %e, "procshare session connection: write failed");
                return;
            }
            out.clear();
        }
        if done {
            // (With requests still held back by flow control, no one waits
            // for their answers: the connection just closes.)
            let _ = io.flush().await;
            return;
        }
        // A request or a wake-up (an empty one), then all that is queued.
        match rx.recv().await {
            None => done = true,
            Some(first) => {
                let mut next = Some(first);
                while let Some(m) = next {
                    if !m.is_empty() {
                        body.reserve(5 + m.len());
                        body.put_u8(0);
                        body.put_u32(m.len() as u32);
                        body.extend_from_slice(&m);
                    }
                    next = rx.try_recv().ok();
                }
            }
        }
    }
}

/// Pings the server every `every`; shuts the connection down when a ping
/// goes unanswered for `timeout`. Ends with the stream.
async fn keepalive(shared: Arc<Shared>, killer: Killer, every: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        let before = shared.pongs.load(Ordering::Relaxed);
        {
            let mut c = shared.control();
            put_frame_header(&mut c.frames, 8, kind::PING, 0, 0);
            c.frames.put_u64(before);
        }
        shared.wake_writer();
        tokio::time::sleep(timeout).await;
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        if shared.pongs.load(Ordering::Relaxed) == before {
            tracing::debug!("procshare session connection: no answer to a ping; closing it");
            killer.kill();
            return;
        }
    }
}

/// What the reader found next.
enum Event {
    /// The response's headers (the stream is open).
    Headers,
    Response(pb::Response),
    /// The stream ended well.
    End,
}

/// The response half of a lane.
pub(crate) struct Reader {
    io: ReadHalf,
    /// Bytes read and not yet taken as frames.
    buf: BytesMut,
    hpack: hpack::Decoder,
    /// A header block still waiting for its CONTINUATION frames, and
    /// whether it ends the stream.
    block: Option<(BytesMut, bool)>,
    /// The gRPC byte stream received and not yet decoded.
    messages: BytesMut,
    shared: Arc<Shared>,
    /// The stream's receive window (the connection's is twice it).
    window: i64,
    unacked_conn: i64,
    unacked_stream: i64,
    /// The server's initial stream window, from its settings.
    peer_window: i64,
    ended: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        // The writer may be waiting: it finds the channel closed when the
        // callers' senders are gone.
    }
}

fn broken(why: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("the session connection broke: {why}"))
}

impl Reader {
    /// The next response; `Ok(None)` when the server ended the stream.
    pub async fn message(&mut self) -> Result<Option<pb::Response>, Status> {
        loop {
            match self.next().await? {
                Event::Response(r) => return Ok(Some(r)),
                Event::End => return Ok(None),
                Event::Headers => {}
            }
        }
    }

    async fn next(&mut self) -> Result<Event, Status> {
        loop {
            if let Some(r) = self.decode_one()? {
                return Ok(Event::Response(r));
            }
            if self.ended {
                return Ok(Event::End);
            }
            let (len, kind, flags, stream) = self.frame_header().await?;
            if let Some(event) = self.frame(len, kind, flags, stream)? {
                return Ok(event);
            }
        }
    }

    /// Reads until a whole frame is buffered; returns its header (the
    /// payload stays in `buf`, behind the header, which is taken).
    async fn frame_header(&mut self) -> Result<(usize, u8, u8, u32), Status> {
        loop {
            if let Some(h) = read_frame_header(&self.buf) {
                if h.len > MAX_FRAME_IN {
                    return Err(broken(format!("a frame of {} bytes", h.len)));
                }
                if self.buf.len() >= FRAME_HEADER + h.len {
                    self.buf.advance(FRAME_HEADER);
                    return Ok((h.len, h.kind, h.flags, h.stream));
                }
                self.buf.reserve(FRAME_HEADER + h.len - self.buf.len());
            } else {
                self.buf.reserve(DEFAULT_MAX_FRAME);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return Err(broken("the server closed the connection")),
                Ok(_) => {}
                Err(e) => return Err(broken(e)),
            }
        }
    }

    /// Handles one frame whose payload (`len` bytes) is at the front of
    /// `buf`.
    fn frame(
        &mut self,
        len: usize,
        kind: u8,
        flags: u8,
        stream: u32,
    ) -> Result<Option<Event>, Status> {
        let mut payload = self.buf.split_to(len);
        match kind {
            kind::DATA => {
                self.give_back(len);
                if stream != STREAM {
                    return Ok(None);
                }
                let body = unpad(&mut payload, flags).map_err(broken)?;
                self.messages.extend_from_slice(&body);
                if flags & flag::END_STREAM != 0 {
                    return Err(broken("the stream ended without a status"));
                }
                Ok(None)
            }
            kind::HEADERS => {
                let mut block = unpad(&mut payload, flags).map_err(broken)?;
                if flags & flag::PRIORITY != 0 {
                    if block.len() < 5 {
                        return Err(broken("a short HEADERS frame"));
                    }
                    block.advance(5);
                }
                let ends = flags & flag::END_STREAM != 0;
                if flags & flag::END_HEADERS == 0 {
                    self.block = Some((block, ends));
                    return Ok(None);
                }
                self.header_block(block, ends, stream)
            }
            kind::CONTINUATION => {
                let Some((mut block, ends)) = self.block.take() else {
                    return Err(broken("a CONTINUATION frame out of place"));
                };
                block.extend_from_slice(&payload);
                if flags & flag::END_HEADERS == 0 {
                    self.block = Some((block, ends));
                    return Ok(None);
                }
                self.header_block(block, ends, stream)
            }
            kind::RST_STREAM if stream == STREAM => {
                let code = if payload.len() >= 4 {
                    payload.get_u32()
                } else {
                    0
                };
                Err(broken(format!("the server reset the stream (code {code})")))
            }
            kind::SETTINGS => {
                if flags & flag::ACK == 0 {
                    self.settings(&payload)?;
                }
                Ok(None)
            }
            kind::PING => {
                if payload.len() != 8 {
                    return Err(broken("a PING frame of the wrong size"));
                }
                if flags & flag::ACK != 0 {
                    self.shared.pongs.fetch_add(1, Ordering::Relaxed);
                } else {
                    let mut c = self.shared.control();
                    put_frame_header(&mut c.frames, 8, kind::PING, flag::ACK, 0);
                    c.frames.extend_from_slice(&payload);
                    drop(c);
                    self.shared.wake_writer();
                }
                Ok(None)
            }
            kind::GOAWAY => {
                let last = if payload.len() >= 4 {
                    payload.get_u32() & 0x7fff_ffff
                } else {
                    0
                };
                if last < STREAM {
                    return Err(broken("the server is going away"));
                }
                // It finishes the stream first.
                Ok(None)
            }
            kind::WINDOW_UPDATE => {
                if payload.len() != 4 {
                    return Err(broken("a WINDOW_UPDATE frame of the wrong size"));
                }
                let inc = i64::from(payload.get_u32() & 0x7fff_ffff);
                let mut c = self.shared.control();
                match stream {
                    0 => c.conn_credit += inc,
                    STREAM => c.stream_credit += inc,
                    _ => return Ok(None),
                }
                drop(c);
                self.shared.wake_writer();
                Ok(None)
            }
            kind::PUSH_PROMISE => Err(broken("the server pushed, though told not to")),
            // PRIORITY, a reset of another stream, unknown kinds: nothing
            // to do on this connection.
            _ => Ok(None),
        }
    }

    /// Data taken: once half a window is taken, the server gets it back.
    fn give_back(&mut self, len: usize) {
        let len = len as i64;
        self.unacked_conn += len;
        self.unacked_stream += len;
        let stream = self.unacked_stream >= self.window / 2;
        let conn = self.unacked_conn >= self.window;
        if !stream && !conn {
            return;
        }
        let mut c = self.shared.control();
        if conn {
            put_frame_header(&mut c.frames, 4, kind::WINDOW_UPDATE, 0, 0);
            c.frames.put_u32(self.unacked_conn as u32);
            self.unacked_conn = 0;
        }
        if stream {
            put_frame_header(&mut c.frames, 4, kind::WINDOW_UPDATE, 0, STREAM);
            c.frames.put_u32(self.unacked_stream as u32);
            self.unacked_stream = 0;
        }
        drop(c);
        self.shared.wake_writer();
    }

    fn settings(&mut self, p: &[u8]) -> Result<(), Status> {
        let s = read_settings(p).map_err(|e| broken(e.why))?;
        let mut c = self.shared.control();
        if let Some(v) = s.initial_window {
            c.stream_credit += i64::from(v) - self.peer_window;
            self.peer_window = i64::from(v);
        }
        if s.max_frame.is_some() {
            c.max_frame = s.max_frame;
        }
        put_frame_header(&mut c.frames, 0, kind::SETTINGS, flag::ACK, 0);
        drop(c);
        self.shared.wake_writer();
        Ok(())
    }

    /// A whole header block: the response's headers, or its trailers (or
    /// both at once, for an error before any response).
    fn header_block(
        &mut self,
        mut block: BytesMut,
        ends: bool,
        stream: u32,
    ) -> Result<Option<Event>, Status> {
        let mut status = None;
        let mut fields = HeaderMap::new();
        let mut cursor = std::io::Cursor::new(&mut block);
        self.hpack
            .decode(&mut cursor, |h| {
                match h {
                    hpack::Header::Status(s) => status = Some(s),
                    hpack::Header::Field { name, value } => {
                        fields.append(name, value);
                    }
                    _ => {}
                }
                std::ops::ControlFlow::Continue(())
            })
            .map_err(|e| broken(format!("bad header block: {e:?}")))?;
        if stream != STREAM {
            return Ok(None);
        }
        if let Some(s) = status {
            if s != StatusCode::OK {
                return Err(http_status(s));
            }
        }
        if !ends {
            return Ok(Some(Event::Headers));
        }
        self.ended = true;
        match Status::from_header_map(&fields) {
            Some(s) if s.code() == Code::Ok => Ok(None),
            Some(s) => Err(s),
            None => Err(broken("the stream ended without a status")),
        }
    }

    /// Takes one whole response off the front of `messages`.
    fn decode_one(&mut self) -> Result<Option<pb::Response>, Status> {
        if self.messages.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([
            self.messages[1],
            self.messages[2],
            self.messages[3],
            self.messages[4],
        ]) as usize;
        if self.messages.len() < 5 + len {
            // Room for what is announced, but not more than a few frames'
            // worth ahead of the data: the length is the server's word.
            let missing = 5 + len - self.messages.len();
            self.messages.reserve(missing.min(4 * MAX_FRAME_IN));
            return Ok(None);
        }
        if self.messages[0] != 0 {
            return Err(Status::internal(
                "the server sent a compressed message, which this client did not ask for",
            ));
        }
        let r = pb::Response::decode(&self.messages[5..5 + len])
            .map_err(|e| Status::internal(format!("cannot decode a response: {e}")))?;
        self.messages.advance(5 + len);
        Ok(Some(r))
    }
}

/// gRPC's mapping of an HTTP status that is not 200.
fn http_status(s: StatusCode) -> Status {
    let code = match s.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("the server answered HTTP {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    fn settings(window: u32) -> Settings {
        Settings {
            target: Target::Unix("/nowhere".into()),
            authority: "example:50051".into(),
            authorization: Some("Bearer s3cret".into()),
            connect_timeout: Duration::from_secs(1),
            keepalive: None,
            window,
        }
    }

    /// Decodes a header block into (name, value) pairs, pseudo-headers
    /// by their names.
    fn decode_block(block: &[u8]) -> Vec<(String, String)> {
        let mut d = hpack::Decoder::new(HEADER_TABLE);
        let mut buf = BytesMut::from(block);
        let mut out = Vec::new();
        d.decode(&mut std::io::Cursor::new(&mut buf), |h| {
            let pair = match h {
                hpack::Header::Field { name, value } => {
                    (name.to_string(), value.to_str().unwrap().to_owned())
                }
                hpack::Header::Method(m) => (":method".into(), m.to_string()),
                hpack::Header::Scheme(v) => (":scheme".into(), (*v).to_owned()),
                hpack::Header::Path(v) => (":path".into(), (*v).to_owned()),
                hpack::Header::Authority(v) => (":authority".into(), (*v).to_owned()),
                other => panic!("unexpected {other:?}"),
            };
            out.push(pair);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_request_headers_decode_to_the_session_call() {
        let got = decode_block(&request_headers(&settings(1 << 20)));
        let want = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/procshare.v1.Procshare/Session"),
            (":authority", "example:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "procshare"),
            ("authorization", "Bearer s3cret"),
        ];
        let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    /// The server's end of a lane under test: reads and writes raw frames.
    struct Peer {
        io: DuplexStream,
        buf: BytesMut,
    }

    impl Peer {
        async fn frame(&mut self) -> (u8, u8, u32, BytesMut) {
            loop {
                if let Some(h) = read_frame_header(&self.buf) {
                    if self.buf.len() >= FRAME_HEADER + h.len {
                        self.buf.advance(FRAME_HEADER);
                        return (h.kind, h.flags, h.stream, self.buf.split_to(h.len));
                    }
                }
                let n =
                    tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                        .await
                        .expect("a frame within 10 s")
                        .unwrap();
                assert!(n > 0, "the client closed the connection");
            }
        }

        /// The next frame that is not a SETTINGS acknowledgement.
        async fn next(&mut self) -> (u8, u8, u32, BytesMut) {
            loop {
                let f = self.frame().await;
                if !(f.0 == kind::SETTINGS && f.1 & flag::ACK != 0) {
                    return f;
                }
            }
        }

        async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            let mut out = Vec::new();
            put_frame_header(&mut out, payload.len(), kind, flags, stream);
            out.extend_from_slice(payload);
            self.io.write_all(&out).await.unwrap();
        }
    }

    /// A lane whose server end is `Peer`, past the opening: the server's
    /// settings give the stream `peer_window` bytes of window.
    async fn lane(peer_window: u32) -> (mpsc::UnboundedSender<Bytes>, Reader, Peer) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (r, w) = tokio::io::split(client);
        let mut peer = Peer {
            io: server,
            buf: BytesMut::new(),
        };
        let opened =
            tokio::spawn(
                async move { start(Box::new(r), Box::new(w), None, &settings(1 << 20)).await },
            );
        let mut preface = vec![0; PREFACE.len()];
        peer.io.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, PREFACE);
        let (k, _, _, _) = peer.next().await;
        assert_eq!(k, kind::SETTINGS);
        let (k, _, stream, mut p) = peer.next().await;
        assert_eq!((k, stream), (kind::WINDOW_UPDATE, 0));
        assert_eq!(i64::from(p.get_u32()), (2 << 20) - DEFAULT_WINDOW);
        let (k, flags, stream, _) = peer.next().await;
        assert_eq!(
            (k, flags, stream),
            (kind::HEADERS, flag::END_HEADERS, STREAM)
        );
        let mut s = Vec::new();
        s.put_u16(setting::INITIAL_WINDOW_SIZE);
        s.put_u32(peer_window);
        peer.send(kind::SETTINGS, 0, 0, &s).await;
        // :status 200 (static 8).
        peer.send(kind::HEADERS, flag::END_HEADERS, STREAM, &[0x88])
            .await;
        let (tx, reader) = within(opened).await.unwrap().unwrap();
        (tx, reader, peer)
    }

    /// `f`, or a failed test after 10 s.
    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("within 10 s")
    }

    fn grpc(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0];
        out.put_u32(body.len() as u32);
        out.extend_from_slice(&body);
        out
    }

    #[tokio::test]
    async fn requests_wait_for_window_and_go_on_when_it_is_given_back() {
        let (tx, mut reader, mut peer) = lane(10).await;
        // The reader takes the window updates, as in a client.
        tokio::spawn(async move { while let Ok(Some(_)) = reader.message().await {} });
        tx.send(Bytes::from_static(b"0123456789abcdefghij"))
            .unwrap();
        // 25 bytes of gRPC stream, 10 of window: 10 now, no more.
        let (k, _, stream, p) = peer.next().await;
        assert_eq!((k, stream, p.len()), (kind::DATA, STREAM, 10));
        let mut sent = p.to_vec();
        let mut inc = Vec::new();
        inc.put_u32(100);
        peer.send(kind::WINDOW_UPDATE, 0, STREAM, &inc).await;
        let (k, _, _, p) = peer.next().await;
        assert_eq!(k, kind::DATA);
        sent.extend_from_slice(&p);
        assert_eq!(&sent[..5], &[0, 0, 0, 0, 20]);
        assert_eq!(&sent[5..], b"0123456789abcdefghij");
        // The connection's window was given back in the opening already.
        drop(tx);
        let (k, flags, _, p) = peer.next().await;
        assert_eq!((k, flags, p.len()), (kind::DATA, flag::END_STREAM, 0));
    }

    #[tokio::test]
    async fn responses_across_frames_pings_window_and_trailers() {
        let (tx, mut reader, mut peer) = lane(1 << 20).await;
        // The reader runs on its own, as in a client; what it reads comes
        // out here (empty messages, as the zeros below make, are left out).
        let (out_tx, mut out) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let r = reader.message().await;
                let end = !matches!(r, Ok(Some(_)));
                if !matches!(&r, Ok(Some(m)) if m.request_id == 0) {
                    let _ = out_tx.send(r);
                }
                if end {
                    return;
                }
            }
        });
        let r1 = pb::Response {
            request_id: 7,
            ..Default::default()
        };
        let r2 = pb::Response {
            request_id: 8,
            ..Default::default()
        };
        let mut stream = grpc(&r1);
        stream.extend_from_slice(&grpc(&r2));
        // Split in the middle of the first message's prefix.
        peer.send(kind::DATA, 0, STREAM, &stream[..3]).await;
        peer.send(kind::PING, 0, 0, b"12345678").await;
        peer.send(kind::DATA, 0, STREAM, &stream[3..]).await;
        let id = |r: Option<Result<Option<pb::Response>, Status>>| {
            r.unwrap().unwrap().unwrap().request_id
        };
        assert_eq!(id(within(out.recv()).await), 7);
        assert_eq!(id(within(out.recv()).await), 8);
        let (k, flags, _, p) = peer.next().await;
        assert_eq!(
            (k, flags, &p[..]),
            (kind::PING, flag::ACK, &b"12345678"[..])
        );
        // Half the stream's window taken: it is given back. (Zeros are
        // empty messages, one after another.)
        let big = vec![0u8; 1 << 19];
        peer.send(kind::DATA, 0, STREAM, &big).await;
        let (k, _, stream_id, mut p) = peer.next().await;
        assert_eq!((k, stream_id), (kind::WINDOW_UPDATE, STREAM));
        assert!(p.get_u32() as usize >= 1 << 19);
        drop(tx);
        let (k, flags, _, _) = peer.next().await;
        assert_eq!((k, flags), (kind::DATA, flag::END_STREAM));
        // Trailers with an error: grpc-status 5, grpc-message "gone".
        let mut block = vec![0x00];
        put_hpack_str(&mut block, b"grpc-status");
        put_hpack_str(&mut block, b"5");
        block.push(0x00);
        put_hpack_str(&mut block, b"grpc-message");
        put_hpack_str(&mut block, b"gone");
        let trailers = flag::END_HEADERS | flag::END_STREAM;
        peer.send(kind::HEADERS, trailers, STREAM, &block).await;
        let err = within(out.recv()).await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.message(), "gone");
    }

    #[tokio::test]
    async fn settings_out_of_range_break_the_connection() {
        for (id, v) in [
            (setting::MAX_FRAME_SIZE, 0),
            (setting::MAX_FRAME_SIZE, 1 << 24),
            (setting::INITIAL_WINDOW_SIZE, 1 << 31),
        ] {
            let (_tx, mut reader, mut peer) = lane(1 << 20).await;
            let mut p = Vec::new();
            p.put_u16(id);
            p.put_u32(v);
            peer.send(kind::SETTINGS, 0, 0, &p).await;
            let err = within(reader.message()).await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "setting {id} = {v}: {err}");
        }
    }

    #[tokio::test]
    async fn a_server_that_stops_answering_pings_is_let_go_of() {
        // It takes the connection and reads, but never writes: as a server
        // that hangs, or a host cut off, looks from here.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut sink = vec![0; 4096];
            while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        let mut s = settings(1 << 20);
        s.target = Target::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        s.keepalive = Some((Duration::from_millis(50), Duration::from_millis(100)));
        let opened = tokio::time::timeout(Duration::from_secs(10), open(&s))
            .await
            .expect("given up on within 10 s");
        let err = opened.err().expect("refused");
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        // The socket was shut down: the silent server saw it end.
        tokio::time::timeout(Duration::from_secs(10), silent)
            .await
            .expect("the connection ended")
            .unwrap();
    }

    #[tokio::test]
    async fn a_server_without_the_stream_is_unimplemented() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(client);
        let opened =
            tokio::spawn(
                async move { start(Box::new(r), Box::new(w), None, &settings(1 << 20)).await },
            );
        let mut peer = Peer {
            io: server,
            buf: BytesMut::new(),
        };
        let mut preface = vec![0; PREFACE.len()];
        peer.io.read_exact(&mut preface).await.unwrap();
        let mut block = vec![0x88, 0x00];
        put_hpack_str(&mut block, b"grpc-status");
        put_hpack_str(&mut block, b"12");
        peer.send(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            STREAM,
            &block,
        )
        .await;
        let err = within(opened).await.unwrap().err().expect("refused");
        assert_eq!(err.code(), Code::Unimplemented);
    }
}
