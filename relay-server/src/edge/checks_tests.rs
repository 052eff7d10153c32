use super::*;

#[test]
fn dot_segments_and_hidden_separators_after_the_bot_name_are_refused() {
    for fine in [
        "",
        "/",
        "/sub/path",
        "/a.b",
        "/..a",
        "/a..",
        "/.well-known",
        "/%41",
        "/x%2ey",
    ] {
        assert_eq!(path_suffix(fine), Ok(()), "{fine:?}");
    }
    for bad in [
        "/..",
        "/../admin",
        "/.",
        "/./x",
        "/a/../../b",
        "/%2e%2e/admin",
        "/%2E%2e",
        "/.%2e/x",
        "/%2e",
        "/a%2fb",
        "/a%2F..",
        "/a%5cb",
        "/a\\b",
    ] {
        assert_eq!(path_suffix(bad), Err(Refusal::BadPath), "{bad:?}");
    }
    assert_eq!(Refusal::BadPath.status(), StatusCode::BAD_REQUEST);
}
