use super::*;
use crate::config::AgentGrant;

fn access() -> Access {
    let grants = [AgentGrant {
        name: "home".into(),
        token: Secret::new("home-token-0123456789"),
        bots: vec!["shop".into()],
    }];
    Access::new(&grants, Some(Secret::new("any-token-0123456789")))
}

#[test]
fn tokens_unlock_their_grants_only() {
    let access = access();
    let any = access.authenticate(b"any-token-0123456789").expect("any");
    assert!(any.allows("whatever"));
    let home = access.authenticate(b"home-token-0123456789").expect("home");
    assert!(home.allows("shop") && !home.allows("echo"));
    assert!(access.authenticate(b"home-token-012345678").is_none());
    assert!(access.authenticate(b"").is_none());
}
