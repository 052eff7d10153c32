use std::sync::Arc;

use super::*;
use crate::config::KeyKind;
use crate::tls::self_signed;

/// A new certificate and key for `name`, written to `cert` and `key`.
fn write_pair(cert: &Path, key: &Path, name: &str) -> Vec<u8> {
    let (cert_pem, key_pem) =
        self_signed::generate(&[name.to_owned()], KeyKind::Ecdsa).expect("generated");
    std::fs::write(key, key_pem).expect("write key");
    std::fs::write(cert, &cert_pem).expect("write cert");
    pem::certified_key(
        cert_pem.as_bytes(),
        std::fs::read(key).expect("key").as_slice(),
    )
    .expect("fits")
    .cert[0]
        .to_vec()
}

fn served(certificates: &Certificates) -> Vec<u8> {
    certificates.current().cert[0].to_vec()
}

struct Fixture {
    _dir: test_support::TempDir,
    cert: PathBuf,
    key: PathBuf,
    certificates: Arc<Certificates>,
    first: Vec<u8>,
}

fn fixture(label: &str) -> Fixture {
    let dir = test_support::TempDir::new(label);
    let cert = dir.path().join("fullchain.pem");
    let key = dir.path().join("privkey.pem");
    let first = write_pair(&cert, &key, "relay.example.com");
    let certificates = Arc::new(Certificates::new(
        pem::read_pair(&cert, &key).expect("first pair"),
    ));
    Fixture {
        _dir: dir,
        cert,
        key,
        certificates,
        first,
    }
}

#[test]
fn changed_files_are_served_and_a_broken_pair_keeps_the_old_one() {
    let f = fixture("watch-change");
    let mut files = WatchedFiles::new(f.cert.clone(), f.key.clone());
    assert!(!files.changed());
    let second = write_pair(&f.cert, &f.key, "relay.example.com");
    assert!(files.changed());
    assert!(files.reload(&f.certificates, false));
    assert_eq!(served(&f.certificates), second);
    assert!(!files.changed(), "seen as read");
    // A key written without its certificate (half a renewal) does not fit: the old pair stays.
    let (_, stray_key) =
        self_signed::generate(&["relay.example.com".into()], KeyKind::Ecdsa).expect("key");
    std::fs::write(&f.key, stray_key).expect("write");
    assert!(files.changed());
    assert!(!files.reload(&f.certificates, false));
    assert_eq!(served(&f.certificates), second, "kept");
    std::fs::write(&f.cert, "garbage").expect("write");
    assert!(!files.reload(&f.certificates, false));
    std::fs::remove_file(&f.cert).expect("remove");
    assert!(!files.reload(&f.certificates, false));
    assert_eq!(served(&f.certificates), second, "still kept");
    assert_ne!(served(&f.certificates), f.first);
}

#[cfg(unix)]
#[test]
fn a_symlink_pointed_at_a_new_file_is_a_change() {
    let f = fixture("watch-symlink");
    let dir = f.cert.parent().expect("dir").to_owned();
    let live_cert = dir.join("live-cert.pem");
    let live_key = dir.join("live-key.pem");
    std::os::unix::fs::symlink(&f.cert, &live_cert).expect("link");
    std::os::unix::fs::symlink(&f.key, &live_key).expect("link");
    let mut files = WatchedFiles::new(live_cert.clone(), live_key.clone());
    // certbot: new archive files, then the live names point at them.
    let (cert2, key2) = (dir.join("cert2.pem"), dir.join("key2.pem"));
    let second = write_pair(&cert2, &key2, "relay.example.com");
    for (link, target) in [(&live_cert, &cert2), (&live_key, &key2)] {
        let tmp = dir.join("tmp-link");
        std::os::unix::fs::symlink(target, &tmp).expect("link");
        std::fs::rename(&tmp, link).expect("swap");
    }
    assert!(files.changed());
    assert!(files.reload(&f.certificates, false));
    assert_eq!(served(&f.certificates), second);
}

#[tokio::test(start_paused = true)]
async fn the_watcher_polls_and_a_reload_request_reads_at_once() {
    let f = fixture("watch-run");
    let reload = crate::reload::Reload::default();
    let shutdown = CancellationToken::new();
    let files = WatchedFiles::new(f.cert.clone(), f.key.clone());
    let task =
        tokio::spawn(files.run(f.certificates.clone(), reload.subscribe(), shutdown.clone()));
    tokio::task::yield_now().await;
    let second = write_pair(&f.cert, &f.key, "relay.example.com");
    // Within one poll and the settle time, and not before the poll.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(served(&f.certificates), f.first, "not yet polled");
    tokio::time::sleep(POLL_INTERVAL + SETTLE + Duration::from_millis(100)).await;
    assert_eq!(served(&f.certificates), second, "polled");
    // A reload request does not wait for the next poll.
    let third = write_pair(&f.cert, &f.key, "relay.example.com");
    reload.request();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(served(&f.certificates), third, "read on request");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
}
