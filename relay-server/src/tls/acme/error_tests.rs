use super::*;

fn problem(kind: &str) -> Problem {
    serde_json::from_value(serde_json::json!({
        "type": format!("{PROBLEM_PREFIX}{kind}"),
        "detail": "details",
        "status": 400,
    }))
    .expect("a problem document")
}

#[test]
fn each_problem_type_names_what_to_check() {
    let invalid = |kind| AcmeError::Invalid {
        domain: "relay.example".into(),
        problem: problem(kind),
    };
    let tls = Validation::TlsAlpn01;
    assert!(invalid("dns").check(tls).starts_with("DNS"));
    assert!(invalid("connection").check(tls).contains("443"));
    assert!(
        invalid("connection")
            .check(Validation::Http01)
            .contains("80")
    );
    assert!(invalid("unauthorized").check(tls).starts_with("port"));
    assert!(
        AcmeError::Refused(problem("rateLimited"))
            .check(tls)
            .starts_with("rate limit")
    );
    assert!(
        AcmeError::Refused(problem("unauthorized"))
            .check(tls)
            .starts_with("account")
    );
    assert!(
        AcmeError::Unreachable("refused".into())
            .check(tls)
            .contains("directory")
    );
}

#[test]
fn a_compound_problem_is_read_from_its_subproblems() {
    let compound: Problem = serde_json::from_value(serde_json::json!({
        "type": format!("{PROBLEM_PREFIX}compound"),
        "subproblems": [{"type": format!("{PROBLEM_PREFIX}dns"), "detail": "no A record"}],
    }))
    .expect("a problem document");
    let error = AcmeError::Invalid {
        domain: "relay.example".into(),
        problem: compound,
    };
    assert!(error.check(Validation::TlsAlpn01).starts_with("DNS"));
}

#[test]
fn a_problem_whose_detail_blames_dns_points_at_dns() {
    let mut malformed = problem("malformed");
    malformed.detail = Some(r#"Could not resolve URL "relay.example""#.into());
    let error = AcmeError::Refused(malformed);
    assert!(error.check(Validation::TlsAlpn01).starts_with("DNS"));
    assert!(
        AcmeError::Refused(problem("malformed"))
            .check(Validation::TlsAlpn01)
            .starts_with("domain")
    );
}
