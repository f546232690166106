//! Connections that carry only a session stream, served outside tonic
//! (`service/lane.rs`), spoken to frame by frame over a real socket: what a
//! client other than ours may send, and what ours relies on.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::hpack;
use procshare_proto as pb;
use procshare_proto::http2::error::REFUSED_STREAM;
use procshare_proto::http2::flag::{ACK, END_HEADERS, END_STREAM};
use procshare_proto::http2::kind::{
    DATA, GOAWAY, HEADERS, PING, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};
use procshare_proto::http2::setting::{INITIAL_WINDOW_SIZE, MAX_CONCURRENT_STREAMS};
use procshare_proto::http2::{put_frame_header, read_frame_header, FRAME_HEADER, PREFACE};
use procshare_server::service::{serve, ServerConfig, Token};
use procshare_server::store::Store;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(10);
const SESSION: &str = "/procshare.v1.Procshare/Session";

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start(config: ServerConfig) -> Server {
    let listener = procshare_server::service::listen_tcp(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, Arc::new(Store::new()), config, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        done,
    }
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Bytes,
}

/// A client that writes and reads HTTP/2 frames itself.
struct Raw {
    s: TcpStream,
    buf: BytesMut,
    hpack: hpack::Decoder,
}

impl Raw {
    /// Connects and sends the preface and settings: with the session-only
    /// mark when `marked`, and `settings` besides.
    async fn open(addr: std::net::SocketAddr, marked: bool, settings: &[(u16, u32)]) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut raw = Raw {
            s,
            buf: BytesMut::new(),
            hpack: hpack::Decoder::new(4096),
        };
        let mut all = settings.to_vec();
        if marked {
            all.push((pb::SESSION_ONLY_SETTING, 1));
        }
        let mut p = BytesMut::new();
        for (id, v) in all {
            p.put_u16(id);
            p.put_u32(v);
        }
        raw.s.write_all(PREFACE).await.unwrap();
        raw.send(SETTINGS, 0, 0, &p).await;
        raw
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut f = BytesMut::new();
        put_frame_header(&mut f, payload.len(), kind, flags, stream);
        f.put_slice(payload);
        self.s.write_all(&f).await.unwrap();
    }

    /// A gRPC call's request headers, as literals.
    async fn call(&mut self, stream: u32, path: &str, token: Option<&str>, flags: u8) {
        let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
        let mut fields = vec![
            (":path".to_owned(), path.to_owned()),
            (":authority".to_owned(), "localhost".to_owned()),
            ("content-type".to_owned(), "application/grpc".to_owned()),
            ("te".to_owned(), "trailers".to_owned()),
        ];
        if let Some(t) = token {
            fields.push(("authorization".to_owned(), format!("Bearer {t}")));
        }
        for (name, value) in fields {
            b.push(0x00);
            for s in [name.as_bytes(), value.as_bytes()] {
                assert!(s.len() < 127);
                b.push(s.len() as u8);
                b.extend_from_slice(s);
            }
        }
        self.send(HEADERS, END_HEADERS | flags, stream, &b).await;
    }

    async fn message(&mut self, stream: u32, m: &impl Message, flags: u8) {
        let body = m.encode_to_vec();
        let mut p = vec![0];
        p.extend_from_slice(&(body.len() as u32).to_be_bytes());
        p.extend_from_slice(&body);
        self.send(DATA, flags, stream, &p).await;
    }

    /// The next frame; `None` when the server closed the connection.
    async fn frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(h) = read_frame_header(&self.buf) {
                    if self.buf.len() >= FRAME_HEADER + h.len {
                        self.buf.advance(FRAME_HEADER);
                        return Some(Frame {
                            kind: h.kind,
                            flags: h.flags,
                            stream: h.stream,
                            payload: self.buf.split_to(h.len).freeze(),
                        });
                    }
                }
                match self.s.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("no frame and no close within the deadline")
    }

    /// The next frame of kind `kind`, skipping others (their header blocks
    /// decoded, to keep the table in step).
    async fn next_of(&mut self, kind: u8) -> Frame {
        loop {
            let f = self.frame().await.expect("the connection closed");
            if f.kind == kind {
                return f;
            }
            if f.kind == HEADERS {
                self.fields(&f);
            }
        }
    }

    fn fields(&mut self, f: &Frame) -> Vec<(String, String)> {
        let mut block = BytesMut::from(&f.payload[..]);
        let mut out = Vec::new();
        self.hpack
            .decode(&mut std::io::Cursor::new(&mut block), |h| {
                match h {
                    hpack::Header::Field { name, value } => out.push((
                        name.to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )),
                    hpack::Header::Status(s) => out.push((":status".into(), s.as_str().into())),
                    _ => {}
                }
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        out
    }

    /// The next header block: its fields and whether it ends the stream.
    async fn headers(&mut self) -> (Vec<(String, String)>, bool) {
        let f = self.next_of(HEADERS).await;
        assert_ne!(f.flags & END_HEADERS, 0, "the block is in one frame");
        (self.fields(&f), f.flags & END_STREAM != 0)
    }

    /// Reads gRPC messages off DATA frames until `n` are whole.
    async fn responses(&mut self, n: usize) -> Vec<pb::Response> {
        let mut bytes = BytesMut::new();
        let mut out = Vec::new();
        while out.len() < n {
            let f = self.next_of(DATA).await;
            bytes.extend_from_slice(&f.payload);
            out.extend(whole_responses(&mut bytes));
        }
        out
    }

    /// Reads until the server closes; returns the kinds of the frames seen.
    async fn until_closed(&mut self) -> Vec<u8> {
        let mut kinds = Vec::new();
        while let Some(f) = self.frame().await {
            kinds.push(f.kind);
        }
        kinds
    }
}

/// Takes the whole gRPC messages off the front of `bytes`.
fn whole_responses(bytes: &mut BytesMut) -> Vec<pb::Response> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        if bytes.len() < 5 + len {
            break;
        }
        let m = bytes.split_to(5 + len);
        out.push(pb::Response::decode(&m[5..]).unwrap());
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn op(request_id: u64, name: &str, kind: pb::op::Kind) -> pb::Request {
    pb::Request {
        client_id: "raw".into(),
        request_id,
        op: Some(pb::Op {
            name: name.into(),
            kind: Some(kind),
        }),
        ..Default::default()
    }
}

fn list_objects(request_id: u64) -> pb::Request {
    op(
        request_id,
        "",
        pb::op::Kind::ListObjects(pb::ListObjects {}),
    )
}

fn open_queue(request_id: u64, name: &str) -> pb::Request {
    op(
        request_id,
        name,
        pb::op::Kind::Open(pb::Open {
            kind: pb::Kind::Queue as i32,
            ..Default::default()
        }),
    )
}

fn is_ok(r: &pb::Response) -> bool {
    matches!(r.outcome, Some(pb::response::Outcome::Ok(_)))
}

#[tokio::test]
async fn a_marked_connection_carries_the_session_stream_and_refuses_others() {
    let server = start(ServerConfig::default()).await;
    let mut c = Raw::open(server.addr, true, &[]).await;
    // Its settings say one stream: this is not tonic's connection.
    let settings = c.next_of(SETTINGS).await;
    let said: Vec<(u16, u32)> = settings
        .payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    assert!(said.contains(&(MAX_CONCURRENT_STREAMS, 1)), "{said:?}");

    c.call(1, SESSION, None, 0).await;
    c.message(1, &open_queue(1, "q"), 0).await;
    c.message(1, &list_objects(2), 0).await;
    let (fields, ends) = c.headers().await;
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert!(!ends);
    let answers = c.responses(2).await;
    assert_eq!(
        answers.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(answers.iter().all(is_ok), "{answers:?}");

    // Another stream is refused; the session goes on.
    c.call(3, "/procshare.v1.Procshare/Ping", None, END_STREAM)
        .await;
    let reset = c.next_of(RST_STREAM).await;
    assert_eq!(reset.stream, 3);
    assert_eq!(&reset.payload[..], REFUSED_STREAM.to_be_bytes());
    c.message(1, &list_objects(3), 0).await;
    assert_eq!(c.responses(1).await[0].request_id, 3);

    // The client ends its side: trailers with OK, GOAWAY, the socket closes.
    c.send(DATA, END_STREAM, 1, &[]).await;
    let (trailers, ends) = c.headers().await;
    assert!(ends);
    assert_eq!(field(&trailers, "grpc-status"), Some("0"));
    let rest = c.until_closed().await;
    assert!(rest.contains(&GOAWAY), "{rest:?}");
}

#[tokio::test]
async fn an_unmarked_connection_goes_to_tonic_with_its_first_bytes_intact() {
    let server = start(ServerConfig::default()).await;
    two_calls_at_once_are_answered(server.addr, false).await;
}

#[tokio::test]
async fn with_direct_sessions_off_a_marked_connection_goes_to_tonic() {
    let server = start(ServerConfig {
        direct_sessions: false,
        ..ServerConfig::default()
    })
    .await;
    two_calls_at_once_are_answered(server.addr, true).await;
}

async fn two_calls_at_once_are_answered(addr: std::net::SocketAddr, marked: bool) {
    let mut c = Raw::open(addr, marked, &[]).await;
    // Two unary calls at once, which a session-only connection refuses.
    for stream in [1, 3] {
        c.call(stream, "/procshare.v1.Procshare/Ping", None, 0)
            .await;
        c.message(stream, &pb::PingRequest {}, END_STREAM).await;
    }
    let mut answered = Vec::new();
    while answered.len() < 2 {
        let f = c.frame().await.expect("tonic closed the connection");
        if f.kind == DATA {
            let reply = pb::PingResponse::decode(&f.payload[5..]).unwrap();
            assert!(!reply.version.is_empty());
            answered.push(f.stream);
        } else if f.kind == HEADERS {
            c.fields(&f);
        }
    }
    answered.sort();
    assert_eq!(answered, [1, 3]);
}

#[tokio::test]
async fn the_token_is_checked_before_the_session_starts() {
    let config = ServerConfig {
        token: Some(Token::new("s3cret", "test").unwrap()),
        ..ServerConfig::default()
    };
    let server = start(config).await;
    for (token, message) in [(None, "requires a token"), (Some("guess"), "wrong token")] {
        let mut c = Raw::open(server.addr, true, &[]).await;
        c.call(1, SESSION, token, 0).await;
        c.message(1, &open_queue(1, "q"), 0).await;
        let (fields, ends) = c.headers().await;
        assert!(ends, "a refusal is trailers only");
        assert_eq!(field(&fields, "grpc-status"), Some("16"));
        assert!(field(&fields, "grpc-message").unwrap().contains(message));
        let rest = c.until_closed().await;
        assert!(!rest.contains(&DATA), "nothing was answered: {rest:?}");
    }
    // Nothing the refused calls sent was applied.
    let mut c = Raw::open(server.addr, true, &[]).await;
    c.call(1, SESSION, Some("s3cret"), 0).await;
    c.message(1, &list_objects(1), 0).await;
    let r = c.responses(1).await.remove(0);
    let Some(pb::response::Outcome::Ok(pb::OpResult {
        kind: Some(pb::op_result::Kind::Objects(list)),
    })) = r.outcome
    else {
        panic!("{r:?}");
    };
    assert!(list.objects.is_empty(), "{list:?}");
}

#[tokio::test]
async fn a_request_that_cannot_be_read_ends_the_stream_with_its_status() {
    let config = ServerConfig {
        max_message_bytes: 1024,
        ..ServerConfig::default()
    };
    let server = start(config).await;
    let prefix = |flag: u8, len: u32| {
        let mut p = vec![flag];
        p.extend_from_slice(&len.to_be_bytes());
        p
    };
    let mut garbage = prefix(0, 3);
    garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
    let mut compressed = prefix(1, 1);
    compressed.push(0);
    let cases = [
        (garbage, "13", "cannot decode"),
        (prefix(0, 4096), "8", "over the server's limit"),
        (compressed, "13", "compressed"),
    ];
    for (bytes, status, message) in cases {
        let mut c = Raw::open(server.addr, true, &[]).await;
        c.call(1, SESSION, None, 0).await;
        // A good request first: it is answered before the stream ends.
        c.message(1, &list_objects(1), 0).await;
        c.send(DATA, 0, 1, &bytes).await;
        assert_eq!(c.responses(1).await[0].request_id, 1);
        let (trailers, ends) = c.headers().await;
        assert!(ends);
        assert_eq!(
            field(&trailers, "grpc-status"),
            Some(status),
            "{trailers:?}"
        );
        let m = field(&trailers, "grpc-message").unwrap_or_default();
        assert!(m.contains(message), "{m}");
        c.until_closed().await;
    }
}

#[tokio::test]
async fn answers_never_pass_the_clients_window() {
    let server = start(ServerConfig::default()).await;
    // A stream window of 10 bytes: every answer needs several grants.
    let mut c = Raw::open(server.addr, true, &[(INITIAL_WINDOW_SIZE, 10)]).await;
    c.call(1, SESSION, None, 0).await;
    let n = 5;
    for id in 1..=n {
        c.message(1, &list_objects(id), 0).await;
    }
    let mut granted = 10usize;
    let mut received = 0usize;
    let mut bytes = BytesMut::new();
    let mut ids = Vec::new();
    while ids.len() < n as usize {
        let f = c.frame().await.expect("closed");
        match f.kind {
            DATA => {
                received += f.payload.len();
                assert!(
                    received <= granted,
                    "{received} bytes sent, {granted} granted"
                );
                bytes.extend_from_slice(&f.payload);
                ids.extend(whole_responses(&mut bytes).iter().map(|r| r.request_id));
                if received == granted {
                    c.send(WINDOW_UPDATE, 0, 1, &7u32.to_be_bytes()).await;
                    granted += 7;
                }
            }
            HEADERS => {
                c.fields(&f);
            }
            _ => {}
        }
    }
    assert_eq!(ids, (1..=n).collect::<Vec<_>>());
}

#[tokio::test]
async fn pings_are_answered_and_a_client_that_answers_none_is_let_go() {
    let config = ServerConfig {
        keepalive_interval: Some(Duration::from_millis(100)),
        keepalive_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = start(config).await;
    let mut c = Raw::open(server.addr, true, &[]).await;
    c.call(1, SESSION, None, 0).await;
    c.send(PING, 0, 0, b"12345678").await;
    let pong = loop {
        let f = c.next_of(PING).await;
        if f.flags & ACK != 0 {
            break f;
        }
    };
    assert_eq!(&pong.payload[..], b"12345678");
    // This client never acknowledges the server's pings: the server closes
    // the connection (`until_closed` fails after its deadline otherwise).
    c.until_closed().await;
}

#[tokio::test]
async fn shutdown_ends_a_blocked_wait_then_the_stream_then_the_server() {
    let mut server = start(ServerConfig {
        shutdown_grace: DEADLINE,
        ..ServerConfig::default()
    })
    .await;
    let mut c = Raw::open(server.addr, true, &[]).await;
    c.call(1, SESSION, None, 0).await;
    c.message(1, &open_queue(1, "q"), 0).await;
    let get = pb::op::Kind::QueueGet(pb::QueueGet {
        blocking: true,
        timeout_secs: None,
    });
    c.message(1, &op(2, "q", get), 0).await;
    assert!(is_ok(&c.responses(1).await[0]));
    // The get is blocked; ListObjects behind it is answered.
    c.message(1, &list_objects(3), 0).await;
    assert_eq!(c.responses(1).await[0].request_id, 3);

    let _ = server.stop.take().unwrap().send(());
    let r = c.responses(1).await.remove(0);
    assert_eq!(r.request_id, 2);
    let Some(pb::response::Outcome::Error(e)) = r.outcome else {
        panic!("{r:?}");
    };
    assert_eq!(e.kind, pb::ErrorKind::Unavailable as i32);
    let (trailers, ends) = c.headers().await;
    assert!(ends);
    assert_eq!(field(&trailers, "grpc-status"), Some("0"));
    c.until_closed().await;
    tokio::time::timeout(DEADLINE, server.done)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
}
