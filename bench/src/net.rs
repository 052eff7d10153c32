//! Ports on 127.0.0.1: picking free ones, and waiting for a child to listen on one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::child::Child;

/// How long a freshly spawned server may take to listen. Generous: the relay makes a certificate
/// and opens its store on first start.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between connection attempts while waiting for a listener.
const LISTEN_POLL: Duration = Duration::from_millis(10);
/// One connection attempt to a local port; loopback answers at once or refuses.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A port on 127.0.0.1 that was free a moment ago: bound, read back and released. Another
/// process could take it in between; on a quiet test machine that does not happen.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a port")?;
    Ok(listener.local_addr()?.port())
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Waits until `child` accepts TCP connections on `address`, failing early if it exits.
pub async fn wait_listening(child: &mut Child, address: SocketAddr) -> Result<()> {
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    loop {
        child.check_alive()?;
        let attempt =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)).await;
        if let Ok(Ok(_stream)) = attempt {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(child.failure(format!(
                "does not listen on {address} after {LISTEN_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(LISTEN_POLL).await;
    }
}
