use super::*;

#[test]
fn each_counter_counts_on_its_own() {
    let stats = Stats::default();
    stats.count(Counter::DuplicateStored);
    stats.count(Counter::DuplicateStored);
    stats.count(Counter::DuplicateLive);
    stats.count(Counter::ReplyOk);
    stats.count(Counter::ReplyFailed);
    stats.count(Counter::ReplyDropped);
    stats.count(Counter::ReplyDropped);
    stats.count(Counter::ReplyDropped);
    assert_eq!(
        stats.snapshot(),
        StatsSnapshot {
            duplicates_stored: 2,
            duplicates_live: 1,
            replies_ok: 1,
            replies_failed: 1,
            replies_dropped: 3,
        }
    );
}
