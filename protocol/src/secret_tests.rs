use super::Secret;

#[test]
fn debug_hides_the_value_and_matches_compares_bytes() {
    let secret = Secret::new("hunter2-hunter2");
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert!(secret.matches(b"hunter2-hunter2"));
    assert!(!secret.matches(b"hunter2-hunter3"));
    assert!(!secret.matches(b"hunter2"));
    assert!(!secret.matches(b""));
}
