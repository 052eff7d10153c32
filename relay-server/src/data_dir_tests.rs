use super::*;
use test_support::temp_dir;

#[test]
fn token_is_generated_once_and_kept_private() {
    let dir = temp_dir("token");
    let path = dir.join("agent-token");
    let (first, made) = load_or_create_token(&path).expect("token");
    assert!(made);
    assert_eq!(first.expose().len(), 64);
    let (again, made) = load_or_create_token(&path).expect("token");
    assert!(!made);
    assert_eq!(first, again);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(dir);
}
