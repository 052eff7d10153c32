use super::*;

#[tokio::test(start_paused = true)]
async fn a_burst_is_written_then_lines_are_counted_until_the_window_ends() {
    let budget = LogBudget::new();
    for _ in 0..NOTICE_BURST {
        assert_eq!(budget.allow(), Some(0));
    }
    assert_eq!(budget.allow(), None);
    assert_eq!(budget.allow(), None);
    tokio::time::advance(NOTICE_WINDOW).await;
    assert_eq!(
        budget.allow(),
        Some(2),
        "the next line says what was left out"
    );
    assert_eq!(budget.allow(), Some(0));
}
