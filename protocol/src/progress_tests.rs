use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(start_paused = true)]
async fn reads_and_writes_are_noted_separately() {
    let (near, mut far) = tokio::io::duplex(64);
    let mut tracked = Tracked::new(near);
    let progress = tracked.progress();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!progress.read_within(Duration::from_millis(20)));
    assert!(!progress.written_within(Duration::from_millis(20)));
    tracked.write_all(b"out").await.expect("write");
    assert!(progress.written_within(Duration::from_millis(20)));
    assert!(!progress.read_within(Duration::from_millis(20)));
    far.write_all(b"in").await.expect("write");
    let mut buf = [0; 2];
    tracked.read_exact(&mut buf).await.expect("read");
    assert!(progress.read_within(Duration::from_millis(20)));
}
