use super::*;

fn queue(body: &str) -> String {
    UpdateInfo::read(body.as_bytes()).queue
}

#[test]
fn messages_and_posts_queue_by_chat() {
    let message = r#"{"update_id":10,"message":{"message_id":1,"from":{"id":7},"chat":{"id":-1001234567890,"type":"supergroup"},"date":1,"text":"hi"}}"#;
    let info = UpdateInfo::read(message.as_bytes());
    assert_eq!(info.update_id, Some(10));
    assert_eq!(info.queue, "chat:-1001234567890");
    assert_eq!(
        queue(r#"{"update_id":11,"channel_post":{"chat":{"id":-100}}}"#),
        "chat:-100"
    );
    assert_eq!(
        queue(r#"{"update_id":12,"my_chat_member":{"chat":{"id":5},"from":{"id":6}}}"#),
        "chat:5"
    );
}

#[test]
fn queries_queue_by_user() {
    let callback = r#"{"update_id":20,"callback_query":{"id":"x","from":{"id":5000000001},"message":{"chat":{"id":99}},"data":"d"}}"#;
    assert_eq!(queue(callback), "user:5000000001");
    assert_eq!(
        queue(r#"{"update_id":21,"inline_query":{"id":"q","from":{"id":8},"query":""}}"#),
        "user:8"
    );
    assert_eq!(
        queue(r#"{"update_id":22,"poll_answer":{"poll_id":"p","user":{"id":9}}}"#),
        "user:9"
    );
}

#[test]
fn everything_else_shares_the_bot_queue() {
    assert_eq!(
        queue(r#"{"update_id":30,"poll":{"id":"p","question":"?"}}"#),
        BOT_QUEUE
    );
    assert_eq!(UpdateInfo::read(b"not json").update_id, None);
    assert_eq!(queue("[1,2]"), BOT_QUEUE);
    assert_eq!(queue(r#"{"message":{"chat":{"id":1}}}"#), BOT_QUEUE);
    assert_eq!(queue(r#"{"update_id":"1"}"#), BOT_QUEUE);
    assert_eq!(
        queue(r#"{"update_id":1,"message":{"chat":{"id":"x"}}}"#),
        BOT_QUEUE
    );
}

#[test]
fn the_scan_stops_once_both_are_known_and_gives_up_on_a_flood_of_keys() {
    // Known after two keys: whatever follows is not read, so it costs nothing.
    let mut body = String::from(r#"{"update_id":40,"message":{"chat":{"id":7}}"#);
    for n in 0..100_000 {
        body.push_str(&format!(r#","k{n}":{n}"#));
    }
    body.push('}');
    let info = UpdateInfo::read(body.as_bytes());
    assert_eq!((info.update_id, info.queue.as_str()), (Some(40), "chat:7"));

    // A flood before the update_id: the relay stops after a few dozen keys and treats the body
    // as no update at all, rather than build a table of a hundred thousand keys.
    let mut flood = String::from("{");
    for n in 0..100_000 {
        flood.push_str(&format!(r#""k{n}":{n},"#));
    }
    flood.push_str(r#""update_id":41,"message":{"chat":{"id":7}}}"#);
    assert_eq!(UpdateInfo::read(flood.as_bytes()).update_id, None);

    // Deep nesting is skipped in one pass without recursion: no stack to overflow.
    let deep = format!(
        r#"{{"update_id":42,"message":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let info = UpdateInfo::read(deep.as_bytes());
    assert_eq!((info.update_id, info.queue.as_str()), (Some(42), BOT_QUEUE));
}

#[test]
fn a_body_that_breaks_off_before_the_fields_are_known_is_no_update() {
    assert_eq!(UpdateInfo::read(br#"{"update_id":1"#).update_id, None);
    assert_eq!(
        UpdateInfo::read(br#"{"update_id":1} trailing"#).update_id,
        None
    );
    assert_eq!(
        UpdateInfo::read(br#"{"message":{"chat":{"id":1}},"update_id":2}"#).queue,
        "chat:1"
    );
}
