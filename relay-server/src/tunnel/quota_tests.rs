use hyper::StatusCode;

use super::{Quota, QuotaError};

#[test]
fn a_token_gets_its_cap_and_the_relay_its_total() {
    let quota = Quota::new(3, 2);
    let a1 = quota.admit(0).expect("first");
    let _a2 = quota.admit(0).expect("second");
    let refused = quota.admit(0).expect_err("third of one token");
    assert_eq!(refused, QuotaError::TokenFull);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let _b1 = quota.admit(1).expect("another token");
    let full = quota.admit(2).expect_err("the relay is full");
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(a1);
    assert!(quota.admit(0).is_ok(), "a closed session frees its place");
}
