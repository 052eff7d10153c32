use super::*;

const PATIENCE: Duration = Duration::from_secs(5);

#[tokio::test(start_paused = true)]
async fn a_newcomer_takes_the_slot_of_the_oldest_connection_without_a_request() {
    let connections = Connections::new(2);
    let first = connections.take(1, PATIENCE).await.expect("free");
    let second = connections.take(2, PATIENCE).await.expect("free");
    let third = connections.take(3, PATIENCE).await.expect("evicts");
    assert!(first.evicted().is_cancelled());
    assert!(!second.evicted().is_cancelled());
    drop(first);
    // The evicted connection's slot was already given away: dropping it frees nothing.
    assert_eq!(connections.open.lock().expect("lock").len(), 2);
    drop((second, third));
    assert!(connections.open.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn connections_answering_a_request_keep_their_slots_and_a_newcomer_waits() {
    let connections = Connections::new(1);
    let busy = connections.take(1, PATIENCE).await.expect("free");
    busy.busy();
    let started = tokio::time::Instant::now();
    assert!(connections.take(2, PATIENCE).await.is_none());
    assert_eq!(started.elapsed(), PATIENCE);
    assert!(!busy.evicted().is_cancelled());

    let waiting = tokio::spawn({
        let connections = connections.clone();
        async move { connections.take(3, PATIENCE).await.is_some() }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(busy);
    assert!(
        waiting.await.expect("join"),
        "the freed slot goes to the waiter"
    );
}
