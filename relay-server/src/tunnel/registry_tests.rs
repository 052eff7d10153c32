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

/// Everything logged while `work` runs, as text.
fn logged(work: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, work);
    let bytes = buffer.0.lock().expect("lock").clone();
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn another_agent_taking_a_bot_over_is_a_warning_and_a_reconnect_is_not() {
    let registry = Arc::new(Registry::default());
    let (first, _q1) = handle(1, &["echo"], 1);
    let (again, _q2) = handle(2, &["echo"], 1);
    let (outbox, _q3) = tokio::sync::mpsc::channel(1);
    let in_flight = service::share::FairLimit::new(1, 0, ["echo"]);
    let other = Arc::new(AgentHandle::new(
        3,
        "office".into(),
        vec!["echo".into()],
        outbox,
        in_flight,
    ));
    let log = logged(|| {
        let _first = registry.register(first);
        let _again = registry.register(again);
        let _other = registry.register(other);
    });
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("INFO") && lines[0].contains("newer session of the same agent"),
        "{log}"
    );
    assert!(
        lines[1].contains("WARN")
            && lines[1].contains("another agent took the bots over")
            && lines[1].contains("to_agent=office"),
        "{log}"
    );
}

#[test]
fn an_agent_with_many_bots_reconnecting_is_one_line() {
    let registry = Arc::new(Registry::default());
    let bots: Vec<String> = (0..100).map(|n| format!("bot{n}")).collect();
    let names: Vec<&str> = bots.iter().map(String::as_str).collect();
    let (first, _q1) = handle(1, &names, 1);
    let (again, _q2) = handle(2, &names, 1);
    let log = logged(|| {
        let _first = registry.register(first);
        let _again = registry.register(again);
    });
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("count=100"), "{log}");
}
