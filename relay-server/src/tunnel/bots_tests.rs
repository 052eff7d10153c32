use super::*;

fn known() -> KnownBots {
    KnownBots::new(["shop"])
}

fn names(bots: &[&str]) -> Vec<String> {
    bots.iter().map(|bot| bot.to_string()).collect()
}

#[tokio::test]
async fn declared_bots_are_remembered_across_restarts() {
    let dir = test_support::temp_dir("known-bots");
    let file = dir.join("known-bots");
    Arc::new(known().remember_in(file.clone()))
        .note_hello(&names(&["echo"]), &[])
        .await;
    let restarted = Arc::new(known().remember_in(file.clone()));
    assert!(restarted.knows("echo"));
    assert!(!restarted.knows("other"));
    restarted.note_hello(&names(&["echo"]), &[]).await;
    let lines = std::fs::read_to_string(&file).expect("file");
    assert_eq!(lines, "echo\n", "each bot is written once");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn modes_agents_ask_for_are_remembered_and_cleared() {
    let dir = test_support::temp_dir("bot-modes");
    let file = dir.join("bot-modes");
    let bots = names(&["echo", "shop"]);
    let first = Arc::new(known().remember_modes_in(file.clone()));
    first
        .note_hello(&bots, &[("echo".into(), DeliveryMode::Durable)])
        .await;
    let restarted = Arc::new(known().remember_modes_in(file.clone()));
    assert_eq!(restarted.declared_mode("echo"), Some(DeliveryMode::Durable));
    assert_eq!(restarted.declared_mode("shop"), None);
    restarted.note_hello(&bots, &[]).await;
    let again = known().remember_modes_in(file);
    assert_eq!(again.declared_mode("echo"), None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bots_are_known_when_configured_or_declared() {
    let bots = known();
    assert!(bots.knows("shop"));
    assert!(!bots.knows("echo"));
    assert!(bots.note_declared("echo"));
    assert!(!bots.note_declared("echo"), "not new the second time");
    assert!(bots.knows("echo"));
}

#[test]
fn declared_modes_are_bounded() {
    let bots = known();
    let many: Vec<String> = (0..=MAX_SEEN_BOTS).map(|n| format!("bot{n}")).collect();
    let asked: Vec<(String, DeliveryMode)> = many
        .iter()
        .map(|bot| (bot.clone(), DeliveryMode::Durable))
        .collect();
    assert!(bots.note_modes(&many, &asked));
    assert_eq!(
        bots.declared_modes.lock().expect("lock").len(),
        MAX_SEEN_BOTS
    );
    assert_eq!(
        bots.declared_mode(&many[MAX_SEEN_BOTS]),
        None,
        "past the cap: the default"
    );
    // A bot already kept may still change its mode.
    assert!(bots.note_modes(&many[..1], &[]));
    assert_eq!(bots.declared_mode(&many[0]), None);
}

#[tokio::test]
async fn one_hello_with_many_new_bots_is_one_write_of_each_file() {
    let dir = test_support::temp_dir("bots-one-write");
    let bots = Arc::new(
        known()
            .remember_in(dir.join("known-bots"))
            .remember_modes_in(dir.join("bot-modes")),
    );
    let many: Vec<String> = (0..1000).map(|n| format!("bot{n}")).collect();
    let asked = vec![(many[7].clone(), DeliveryMode::Durable)];
    bots.note_hello(&many, &asked).await;
    let seen = std::fs::read_to_string(dir.join("known-bots")).expect("file");
    assert_eq!(seen.lines().count(), 1000);
    let modes = std::fs::read_to_string(dir.join("bot-modes")).expect("file");
    assert_eq!(modes, "bot7 durable\n");
    assert!(!dir.join("bot-modes.new").exists());
    let _ = std::fs::remove_dir_all(dir);
}
