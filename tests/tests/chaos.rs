//! The chaos test: thousands of updates across many chats, sent Telegram-style (one in flight
//! per chat, retried until 2xx), while the agent is killed and restarted several times, the
//! relay is killed once, and the bot fails a share of first attempts. Nothing may be lost, each
//! chat must stay in order, and duplicates may come only from the one window the agent cannot
//! close (killed after the bot answered, before it recorded the update).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::{Answer, FakeTelegram, TestAgent, TestBot, TestRelay, update_json};

const CHATS: usize = 50;
const PER_CHAT: usize = 100;
const TOTAL: usize = CHATS * PER_CHAT;
const AGENT_KILLS: usize = 4;
/// One bot answer in twenty to a first attempt is a 500.
const FAIL_ONE_IN: u64 = 20;

/// What the bot saw.
#[derive(Default)]
struct Ledger {
    /// Every arrival: (chat, update_id, answered 2xx).
    arrivals: Vec<(i64, i64, bool)>,
    first_seen: HashSet<i64>,
}

fn chat_id(chat: usize) -> i64 {
    5_000_000_000 + chat as i64
}

/// A fixed, well-spread choice of which first attempts fail.
fn fails_first_attempt(update_id: i64) -> bool {
    let mut x = update_id as u64 ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x.is_multiple_of(FAIL_ONE_IN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_order_kept_duplicates_only_in_the_documented_window() {
    let started = Instant::now();
    let mut relay = TestRelay::start();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let bot = {
        let ledger = ledger.clone();
        TestBot::start(move |request| {
            let ledger = ledger.clone();
            async move {
                let update: serde_json::Value =
                    serde_json::from_slice(&request.body).expect("json");
                let id = update["update_id"].as_i64().expect("update_id");
                let chat = update["message"]["chat"]["id"].as_i64().expect("chat");
                let mut ledger = ledger.lock().expect("ledger");
                let first = ledger.first_seen.insert(id);
                let ok = !(first && fails_first_attempt(id));
                ledger.arrivals.push((chat, id, ok));
                Answer::status(if ok { 200 } else { 500 })
            }
        })
        .await
    };
    let mut agent = TestAgent::connect(&relay, &[("echo", bot.url("/"))]).await;
    let agent_config = agent.config.clone();
    let telegram = FakeTelegram::new(&relay);

    let accepted = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..CHATS)
        .map(|chat| {
            let mut queue = telegram.queue("/hook/echo");
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut attempts = 0;
                for k in 0..PER_CHAT {
                    let id = 1_000_000 + (k * CHATS + chat) as u64;
                    let update = Bytes::from(update_json(id, chat_id(chat), "chaos"));
                    attempts += queue.deliver(update).await;
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                attempts
            })
        })
        .collect();

    // The chaos: kill and restart the agent at spread-out points, and kill the relay once.
    let wait_for = |target: usize| {
        let accepted = accepted.clone();
        async move {
            let deadline = Instant::now() + e2e::DEADLINE * 8;
            while accepted.load(Ordering::SeqCst) < target {
                assert!(
                    Instant::now() < deadline,
                    "stalled at {} accepted",
                    accepted.load(Ordering::SeqCst)
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let mut kills = 0;
    for step in 1..=AGENT_KILLS {
        wait_for(step * TOTAL / (AGENT_KILLS + 2)).await;
        agent.kill();
        kills += 1;
        // Let updates pile up in the store while the agent is away.
        tokio::time::sleep(Duration::from_millis(200)).await;
        agent = TestAgent::start(agent_config.clone());
        if step == AGENT_KILLS / 2 {
            wait_for((step * TOTAL / (AGENT_KILLS + 2)) + TOTAL / 20).await;
            relay.restart();
        }
    }

    let mut telegram_attempts = 0;
    for sender in senders {
        telegram_attempts += sender.await.expect("sender");
    }
    // Everything is accepted; wait until the bot has answered 2xx for every update.
    let deadline = Instant::now() + e2e::DEADLINE * 4;
    loop {
        let delivered: HashSet<i64> = ledger
            .lock()
            .expect("ledger")
            .arrivals
            .iter()
            .filter(|a| a.2)
            .map(|a| a.1)
            .collect();
        if delivered.len() == TOTAL {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {TOTAL} delivered",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give redeliveries in flight a moment to show up as duplicates if there are any.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ledger = ledger.lock().expect("ledger");
    let mut delivered_ok: HashMap<i64, usize> = HashMap::new();
    let mut first_arrivals: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut seen = HashSet::new();
    for &(chat, id, ok) in &ledger.arrivals {
        if seen.insert(id) {
            first_arrivals.entry(chat).or_default().push(id);
        }
        if ok {
            *delivered_ok.entry(id).or_default() += 1;
        }
    }
    let lost = TOTAL - delivered_ok.len();
    let duplicates: usize = delivered_ok.values().map(|n| n - 1).sum();
    let out_of_order: Vec<_> = first_arrivals
        .iter()
        .filter(|(_, ids)| !ids.windows(2).all(|w| w[0] < w[1]))
        .map(|(chat, _)| *chat)
        .collect();
    let failed_first = ledger.arrivals.iter().filter(|a| !a.2).count();
    println!(
        "chaos: {TOTAL} updates in {CHATS} chats, {kills} agent kills, 1 relay kill, {failed_first} first attempts failed by the bot, \
         {telegram_attempts} Telegram attempts, {} bot arrivals: lost {lost}, duplicates {duplicates}, chats out of order {}; {:?}",
        ledger.arrivals.len(),
        out_of_order.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "updates lost");
    assert!(
        out_of_order.is_empty(),
        "chats out of order: {out_of_order:?}"
    );
    // The one window: an agent killed after the bot answered and before it recorded the update.
    // At most one update per chat can be in that window per kill.
    assert!(
        duplicates <= kills * CHATS,
        "{duplicates} duplicates exceed the documented window"
    );
    drop(agent);
}
