use super::*;

#[test]
fn the_update_is_valid_json_of_realistic_size() {
    let body = render(123_456_789_012);
    let value: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(value["update_id"], 123_456_789_012_i64);
    assert_eq!(value["message"]["chat"]["id"], FIRST_CHAT + 12);
    let text = value["message"]["text"].as_str().expect("text");
    assert_eq!(&text[116..156], "https://shop.example.com/track/A-1042-77");
    assert!((700..=800).contains(&body.len()), "{} bytes", body.len());
}

#[test]
fn the_lua_expression_covers_every_placeholder() {
    let lua = lua_expression();
    assert!(!lua.contains('$'));
    assert_eq!(lua.matches("string.format").count(), 4);
    assert!(!TEMPLATE.contains("]]"));
}
