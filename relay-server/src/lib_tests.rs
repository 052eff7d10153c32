use std::os::unix::fs::PermissionsExt;

use test_support::TempDir;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The store holds message text and the data dir tokens: none of it is readable by others,
/// whatever the umask (0644 files and a 0755 folder under the usual 022 before).
#[tokio::test]
async fn the_data_dir_and_everything_the_relay_writes_there_are_private() {
    let dir = TempDir::new("private");
    let root = dir.path().join("data");
    let mut config = Config::new(&root);
    config.tls = TlsMode::self_signed();
    let relay = Relay::prepare(config).expect("relay prepares");
    let data_dir = DataDir::new(&root);
    assert_eq!(mode(&root), 0o700, "the data dir");
    for file in [
        data_dir.store(),
        data_dir.agent_token(),
        data_dir.admin_token(),
        data_dir.self_signed_key(),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(relay);

    // What agents declare is written there too.
    let bots = KnownBots::new([])
        .remember_in(data_dir.known_bots())
        .remember_modes_in(data_dir.bot_modes());
    Arc::new(bots)
        .note_hello(
            &["echo".into()],
            &[("echo".into(), protocol::DeliveryMode::Durable)],
        )
        .await;
    assert_eq!(mode(&data_dir.known_bots()), 0o600);
    assert_eq!(mode(&data_dir.bot_modes()), 0o600);
}
