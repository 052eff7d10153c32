//! The store's failures: a disk that fills up and frees again, and a damaged store file at
//! start. In both the relay keeps going: updates it cannot store get 503 (Telegram keeps them),
//! it recovers by itself, and what it answered 200 for reaches the bot in order.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use e2e::{FakeTelegram, TestAgent, TestBot, TestRelay, eventually, update_json};
use hyper::Method;
use relay_server::config::{BotSettings, DeliveryMode};
use test_support::Tmpfs;

fn durable_config(data_dir: PathBuf) -> relay_server::Config {
    let mut config = TestRelay::config();
    config.data_dir = data_dir;
    let settings = BotSettings {
        mode: Some(DeliveryMode::Durable),
        ..BotSettings::default()
    };
    config.bots.insert("echo".into(), settings);
    config
}

async fn healthz(telegram: &FakeTelegram) -> (u16, String) {
    let reply = telegram
        .request(Method::GET, "/healthz", &[], Bytes::new())
        .await;
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).trim().to_owned(),
    )
}

/// The update_ids that reached the bot, first arrivals only, in arrival order.
fn arrived(bot: &TestBot) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    bot.received()
        .iter()
        .filter_map(|request| {
            let update: serde_json::Value = serde_json::from_slice(&request.body).ok()?;
            update["update_id"].as_u64()
        })
        .filter(|id| seen.insert(*id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_then_the_store_recovers_by_itself_when_space_returns() {
    let Some(tmpfs) = Tmpfs::mount_or_skip("6m") else {
        return;
    };
    let relay = TestRelay::start_with(durable_config(tmpfs.path().join("relay")));
    let telegram = FakeTelegram::new(&relay);
    let body = "x".repeat(3000);
    let mut accepted = Vec::new();
    let mut next_id = 1u64;
    for _ in 0..5 {
        let reply = telegram
            .send("/hook/echo", update_json(next_id, 1, &body))
            .await;
        assert_eq!(reply.status, 200, "stored while the disk has room");
        accepted.push(next_id);
        next_id += 1;
    }
    assert_eq!(healthz(&telegram).await, (200, "ok".into()));

    let filler = tmpfs.path().join("filler");
    let filled = tmpfs.fill(&filler);
    assert!(filled > 0, "the filler took the free space");
    // Updates keep coming, as from Telegram; once the store cannot grow they get 503.
    let mut refused = None;
    for _ in 0..2000 {
        let id = next_id;
        next_id += 1;
        let reply = telegram.send("/hook/echo", update_json(id, 1, &body)).await;
        match reply.status {
            200 => accepted.push(id),
            503 => {
                refused = Some(id);
                break;
            }
            other => panic!("update {id} got {other}"),
        }
    }
    let refused = refused.expect("a full disk refuses updates with 503");
    let deadline = tokio::time::Instant::now() + e2e::DEADLINE;
    loop {
        if healthz(&telegram).await == (503, "store failing".into()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never reported the failing store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = relay.admin(Method::GET, "/stats").await;
    let store = &stats["store"];
    assert!(store["healthy"].is_boolean(), "{stats}");
    if store["healthy"] == false {
        let error = store["error"].as_str().expect("an error while failing");
        assert!(!error.contains(&body[..20]), "no update contents: {error}");
    }
    // The disk stays full for a while and updates keep coming. A reopen may succeed (its write
    // fits in room inside the file) and the next append fail again: whatever is answered 200 is
    // kept, and an update answered 503 (here never retried) must never reach the bot.
    let mut abandoned = Vec::new();
    let full_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < full_until {
        let id = next_id;
        next_id += 1;
        match telegram
            .send("/hook/echo", update_json(id, 1, &body))
            .await
            .status
        {
            200 => accepted.push(id),
            503 => abandoned.push(id),
            other => panic!("update {id} got {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!abandoned.is_empty(), "the disk is still full");

    std::fs::remove_file(&filler).expect("free the space");
    // Telegram retries the refused update until it gets 200; the store must take it again
    // without a restart (the reopen backs off to at most 16 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = telegram
            .send("/hook/echo", update_json(refused, 1, &body))
            .await;
        if reply.status == 200 {
            accepted.push(refused);
            break;
        }
        assert_eq!(reply.status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store did not recover after space returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(healthz(&telegram).await, (200, "ok".into()));
    let stats = relay.admin(Method::GET, "/stats").await;
    assert_eq!(stats["store"]["healthy"], true, "{stats}");
    for _ in 0..5 {
        let reply = telegram
            .send("/hook/echo", update_json(next_id, 1, &body))
            .await;
        assert_eq!(reply.status, 200, "stored again");
        accepted.push(next_id);
        next_id += 1;
    }

    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let expected = accepted.len();
    eventually("everything answered 200 is delivered", || {
        arrived(&bot).len() >= expected
    })
    .await;
    relay.stat_reaches("waiting", 0).await;
    let got = arrived(&bot);
    // One chat: delivered in the order the relay answered 200.
    assert_eq!(got, accepted, "every acknowledged update, in order");
    assert!(
        abandoned.iter().all(|id| !got.contains(id)),
        "refused updates are not delivered"
    );
    drop(relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_file_is_moved_aside_and_the_relay_starts_with_an_empty_one() {
    let data_dir = e2e::temp_dir("damaged-store");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let store = data_dir.join("store.redb");
    let damaged: Vec<u8> = (0..256 * 1024u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&store, &damaged).expect("write a damaged store");

    let relay = TestRelay::start_with(durable_config(data_dir.clone()));
    let aside: Vec<PathBuf> = std::fs::read_dir(&data_dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().contains("store.redb.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside: {aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).expect("read"),
        damaged,
        "kept whole"
    );
    let stats = relay.admin(Method::GET, "/stats").await;
    assert_eq!(
        stats["store"]["moved_aside"].as_str(),
        aside[0].to_str(),
        "{stats}"
    );
    assert_eq!(stats["store"]["healthy"], true);

    let telegram = FakeTelegram::new(&relay);
    let reply = telegram.send("/hook/echo", update_json(1, 5, "hi")).await;
    assert_eq!(reply.status, 200, "stored in the new store");
    let bot = TestBot::ok().await;
    let _agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    eventually("the update is delivered", || arrived(&bot) == vec![1]).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
