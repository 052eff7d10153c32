use super::*;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

const CONFIG: LinkConfig = LinkConfig {
    heartbeat_timeout: Duration::from_secs(30),
    frame_limit: crate::MAX_FRAME_LEN,
    progress: None,
};

/// A 300-byte binary message that takes 4 s to arrive, 30 bytes every 400 ms, read with a
/// 1 s heartbeat; `tracked` puts [`crate::Tracked`] under the reader.
async fn read_slow_message(tracked: bool) -> Result<Bytes, LinkError> {
    use tokio::io::AsyncWriteExt;
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let near = crate::Tracked::new(near);
    let config = LinkConfig {
        heartbeat_timeout: Duration::from_secs(1),
        progress: tracked.then(|| near.progress()),
        ..CONFIG
    };
    let ws = WebSocketStream::from_raw_socket(near, Role::Client, None).await;
    let (_sink, stream) = ws.split();
    let (outbox, _queue) = mpsc::channel(1);
    let mut reader = LinkReader::new(stream, outbox, config);
    let sender = tokio::spawn(async move {
        // An unmasked (server-to-client) binary frame of 300 bytes: FIN + opcode 2, then
        // length 126 and the 16-bit length.
        far.write_all(&[0x82, 126, 1, 44]).await.expect("header");
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            far.write_all(&[7; 30]).await.expect("chunk");
        }
        far
    });
    let read = reader.next_bytes().await;
    drop(sender);
    read
}

#[tokio::test(start_paused = true)]
async fn a_large_message_arriving_slowly_is_not_mistaken_for_a_dead_peer() {
    let bytes = read_slow_message(true).await.expect("the message arrives");
    assert_eq!(bytes.len(), 300);
    // Without progress tracking the heartbeat counts whole messages only.
    assert!(matches!(
        read_slow_message(false).await,
        Err(LinkError::Dead(_))
    ));
}

async fn pair() -> (
    WebSocketStream<tokio::io::DuplexStream>,
    WebSocketStream<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let a = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
    let b = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    (a, b)
}

/// Runs one side as a live link: a writer task and a reader.
fn live(
    ws: WebSocketStream<tokio::io::DuplexStream>,
) -> (
    Outbox,
    LinkReader<futures_util::stream::SplitStream<WebSocketStream<tokio::io::DuplexStream>>>,
    CancellationToken,
) {
    let (sink, stream) = ws.split();
    let (outbox, queue) = mpsc::channel(OUTBOX_CAPACITY);
    let stop = CancellationToken::new();
    tokio::spawn(write_loop(sink, queue, CONFIG, stop.clone()));
    (
        outbox.clone(),
        LinkReader::new(stream, outbox, CONFIG),
        stop,
    )
}

#[tokio::test(start_paused = true)]
async fn two_live_sides_keep_each_other_alive_with_pings() {
    let (a, b) = pair().await;
    let (a_out, mut a_in, _a_stop) = live(a);
    let (_b_out, mut b_in, _b_stop) = live(b);
    let b_task = tokio::spawn(async move { b_in.next().await });
    // Ten heartbeat timeouts of silence apart from pings: neither side declares the other dead.
    tokio::time::sleep(CONFIG.heartbeat_timeout * 10).await;
    a_out
        .send(message(&Frame::Cancel(5)).expect("encode"))
        .await
        .expect("queue");
    let got = b_task.await.expect("join").expect("frame");
    assert_eq!(got, Frame::Cancel(5));
    // And a's reader is still alive too.
    assert!(
        tokio::time::timeout(CONFIG.heartbeat_timeout * 2, a_in.next())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_declared_dead_after_the_heartbeat_timeout() {
    let (a, _silent) = pair().await;
    let (_out, mut reader, _stop) = live(a);
    let started = tokio::time::Instant::now();
    let err = reader.next().await.expect_err("dead");
    assert!(matches!(err, LinkError::Dead(_)));
    assert_eq!(started.elapsed(), CONFIG.heartbeat_timeout);
}

#[tokio::test(start_paused = true)]
async fn stop_sends_going_away_and_the_peer_sees_the_code() {
    let (a, b) = pair().await;
    let (_a_out, _a_in, a_stop) = live(a);
    let (_b_out, mut b_in, _b_stop) = live(b);
    a_stop.cancel();
    let err = b_in.next().await.expect_err("closed");
    assert!(
        matches!(err, LinkError::Closed { code: 1001, .. }),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn oversized_and_text_messages_end_the_link() {
    let (mut a, b) = pair().await;
    let small = LinkConfig {
        frame_limit: 16,
        ..CONFIG
    };
    let (b_sink, b_stream) = b.split();
    drop(b_sink);
    let (outbox, _queue) = mpsc::channel(1);
    let mut reader = LinkReader::new(b_stream, outbox, small);
    a.send(Message::Binary(Bytes::from(vec![0; 17])))
        .await
        .expect("send");
    assert!(matches!(
        reader.next().await,
        Err(LinkError::Decode(DecodeError::TooLarge { .. }))
    ));
    a.send(Message::text("hi")).await.expect("send");
    assert!(matches!(reader.next().await, Err(LinkError::Text)));
}

#[test]
fn close_reason_is_cut_at_a_char_boundary() {
    let long = "é".repeat(100);
    let Message::Close(Some(frame)) = close_message(4001, &long) else {
        panic!("not a close");
    };
    assert!(frame.reason.len() <= 123);
    assert_eq!(u16::from(frame.code), 4001);
}
