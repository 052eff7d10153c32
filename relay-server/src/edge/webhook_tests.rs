use super::*;

#[test]
fn hook_paths_split_into_bot_and_rest() {
    assert_eq!(split_path("/hook/echo"), Some(("echo", "")));
    assert_eq!(split_path("/hook/echo/"), Some(("echo", "/")));
    assert_eq!(split_path("/hook/echo/a/b"), Some(("echo", "/a/b")));
    assert_eq!(split_path("/hook/"), None);
    assert_eq!(split_path("/hook"), None);
    assert_eq!(split_path("/hooks/echo"), None);
    assert_eq!(split_path("/hook/bad%20name"), None);
}
