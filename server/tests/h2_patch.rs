//! The behaviour `vendor/h2` adds (PROCSHARE-PATCH.md, item 8), on a real
//! HTTP/2 connection between h2's own client and server over an in-memory
//! pipe: a response stream waiting in `poll_reset` is not woken when its
//! send capacity grows (after each frame it sends: that wake-up cost
//! procshared two `futex` calls per call), and is woken when the peer
//! resets the stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn poll_reset_is_woken_by_a_reset_and_not_by_capacity() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);

    // The server: answers one request with a streaming body, hands the
    // body's stream to the test, and drives its connection.
    let (stream_tx, stream_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut conn = h2::server::handshake(server_io).await.expect("handshake");
        let (_request, mut respond) = conn
            .accept()
            .await
            .expect("a request")
            .expect("a request, not an error");
        let body = respond
            .send_response(http::Response::new(()), false)
            .expect("response headers");
        let _ = stream_tx.send(body);
        while let Some(r) = conn.accept().await {
            if r.is_err() {
                break;
            }
        }
    });

    // The client: one request whose side stays open (to reset it later).
    let (mut client, conn) = h2::client::handshake(client_io).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::post("http://test/stream")
        .body(())
        .expect("request");
    let (response, mut request_body) = client.send_request(request, false).expect("send");
    let mut body = stream_rx.await.expect("the server's response stream");
    let mut incoming = tokio::time::timeout(DEADLINE, response)
        .await
        .expect("response headers in time")
        .expect("response headers")
        .into_body();

    // The response stream waits for a reset, as hyper's body pipe does
    // between messages.
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    body.reserve_capacity(1);
    assert!(body.poll_reset(&mut cx).is_pending());

    // Frames sent, and capacity asked for again: the peer reads each one,
    // so the connection has written it (where upstream h2 woke the stream).
    for i in 0..3 {
        body.send_data(Bytes::from(format!("message {i}")), false)
            .expect("send_data");
        let got = tokio::time::timeout(DEADLINE, incoming.data())
            .await
            .expect("a frame in time")
            .expect("a frame")
            .expect("a frame, not an error");
        assert_eq!(got, Bytes::from(format!("message {i}")));
        let _ = incoming.flow_control().release_capacity(got.len());
        body.reserve_capacity(1);
        assert!(body.poll_reset(&mut cx).is_pending());
    }
    assert_eq!(
        count.get(),
        0,
        "a stream in poll_reset was woken by capacity"
    );

    // The peer resets the stream: that wakes it, and poll_reset says why.
    request_body.send_reset(h2::Reason::CANCEL);
    tokio::time::timeout(DEADLINE, async {
        while count.get() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("woken by the reset in time");
    let reason = match body.poll_reset(&mut cx) {
        Poll::Ready(r) => r.expect("a reason"),
        Poll::Pending => panic!("woken, but poll_reset still pending"),
    };
    assert_eq!(reason, h2::Reason::CANCEL);
}
