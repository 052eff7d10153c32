use super::*;

#[test]
fn names_are_url_and_file_safe() {
    for good in ["echo", "shop_bot", "a-b", "A1", &"x".repeat(MAX_LEN)] {
        assert!(is_valid(good), "{good:?}");
    }
    let too_long = "x".repeat(MAX_LEN + 1);
    for bad in [
        "",
        "bad/name",
        "bad name",
        "..",
        "bad%20",
        "é",
        too_long.as_str(),
    ] {
        assert!(!is_valid(bad), "{bad:?}");
    }
}
