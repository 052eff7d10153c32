use super::*;

fn known() -> KnownBots {
    KnownBots::new(["shop"])
}

#[test]
fn declared_bots_are_remembered_across_restarts() {
    let dir = test_support::temp_dir("known-bots");
    let file = dir.join("known-bots");
    known().remember_in(file.clone()).note_declared("echo");
    let restarted = known().remember_in(file.clone());
    assert!(restarted.knows("echo"));
    assert!(!restarted.knows("other"));
    restarted.note_declared("echo");
    let lines = std::fs::read_to_string(&file).expect("file");
    assert_eq!(lines, "echo\n", "each bot is written once");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn modes_agents_ask_for_are_remembered_and_cleared() {
    let dir = test_support::temp_dir("bot-modes");
    let file = dir.join("bot-modes");
    let bots = vec!["echo".to_string(), "shop".to_string()];
    let first = known().remember_modes_in(file.clone());
    first.note_modes(&bots, &[("echo".into(), DeliveryMode::Durable)]);
    let restarted = known().remember_modes_in(file.clone());
    assert_eq!(restarted.declared_mode("echo"), Some(DeliveryMode::Durable));
    assert_eq!(restarted.declared_mode("shop"), None);
    restarted.note_modes(&bots, &[]);
    let again = known().remember_modes_in(file);
    assert_eq!(again.declared_mode("echo"), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bots_are_known_when_configured_or_declared() {
    let bots = known();
    assert!(bots.knows("shop"));
    assert!(!bots.knows("echo"));
    bots.note_declared("echo");
    assert!(bots.knows("echo"));
}
