//! Any bytes as a webhook body: reading `update_id` and the queue never panics or hangs, and the
//! queue is one of the three shapes the scheduler expects. A body the reader takes as an update
//! is one that serde_json reads as an object with that `update_id` (when the object has one
//! `update_id` key: with two, JSON leaves open which one counts; the reader takes the one it
//! met before it knew the queue, serde_json the last).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_server::fuzzing::read_update;

fuzz_target!(|data: &[u8]| {
    let (update_id, queue) = read_update(data);
    let id = |prefix: &str| {
        queue
            .strip_prefix(prefix)
            .is_some_and(|id| id.parse::<i64>().is_ok())
    };
    assert!(
        queue == "bot" || id("chat:") || id("user:"),
        "unexpected queue {queue:?}"
    );
    if let Some(update_id) = update_id {
        // The reader may stop early, so only the part it read is known to be JSON; the whole
        // body parsing is not required. When it does parse, it must agree.
        let once = update_id_keys(data) == Some(1);
        if let (true, Ok(serde_json::Value::Object(map))) = (once, serde_json::from_slice(data)) {
            assert_eq!(
                map.get("update_id").and_then(serde_json::Value::as_i64),
                Some(update_id),
                "the reader found another update_id than serde_json"
            );
        }
    } else {
        assert_eq!(queue, "bot", "a queue without an update_id");
    }
});

/// How many top-level keys of the JSON object `data` are `update_id` (escapes decoded).
fn update_id_keys(data: &[u8]) -> Option<usize> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while let Some(key) = map.next_key::<String>()? {
                count += usize::from(key == "update_id");
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            Ok(count)
        }
    }
    let mut reader = serde_json::Deserializer::from_slice(data);
    serde::Deserializer::deserialize_map(&mut reader, Count).ok()
}
