use super::*;
use crate::tunnel::handle::tests::handle;

#[test]
fn newest_session_wins_and_dropping_unregisters() {
    let registry = Arc::new(Registry::default());
    let (old, _q1) = handle(1, &["echo", "shop"], 1);
    let (new, _q2) = handle(2, &["echo"], 1);
    let old_registration = registry.register(old);
    let new_registration = registry.register(new);
    assert_eq!(registry.route("echo").expect("routed").session, 2);
    assert_eq!(registry.route("shop").expect("routed").session, 1);
    assert_eq!(registry.session_count(), 2);
    drop(new_registration);
    assert_eq!(registry.route("echo").expect("routed").session, 1);
    drop(old_registration);
    assert!(registry.route("echo").is_none() && registry.route("shop").is_none());
}
