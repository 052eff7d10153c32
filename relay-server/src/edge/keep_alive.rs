//! How long one HTTP connection lives: the idle time between requests, the time a header block
//! may take once it has started, and the connection's age and request count.
//!
//! hyper's own header timeout starts when it begins waiting for the next request, so on its own it
//! is both the idle timeout and the header timeout, restarted by every request: a client that
//! sends a cheap request now and then keeps its connection for ever. This clock tells the two
//! apart, because it sees the bytes arrive (through [`Watched`]) and the requests start and end;
//! the listener closes the connection when [`Clock::expired`] says so, and the answer to the last
//! request a connection may make carries `Connection: close`. An upgraded connection (an agent
//! session) has left the listener, and with it this clock.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The bounds of one connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// How long the connection may wait idle for its next request (or its first).
    pub(crate) idle: Duration,
    /// How long a header block may take once its first byte arrived.
    pub(crate) header: Duration,
    /// After this age the next answer closes the connection.
    pub(crate) max_age: Duration,
    /// The answer to this request closes the connection.
    pub(crate) max_requests: u32,
}

/// Why a connection is closed by its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No request within [`Lifetime::idle`].
    Idle,
    /// A header block that started did not end within [`Lifetime::header`].
    SlowHeader,
}

/// No header block has started since the last answer.
const NO_HEAD: u64 = u64::MAX;

/// One connection's clock, shared by the connection's bytes, its requests and the listener.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lifetime: Lifetime,
    born: Instant,
    /// Requests started.
    requests: AtomicU32,
    /// Requests whose answer is not ready yet.
    busy: AtomicU32,
    /// When the connection last became idle, in ms since `born`.
    idle_since: AtomicU64,
    /// When the first byte of the next header block arrived, in ms since `born`, or [`NO_HEAD`].
    head_started: AtomicU64,
    /// Told when a header block starts, so the listener looks at the shorter deadline.
    changed: Notify,
}

impl Clock {
    /// A clock for a connection opened now.
    pub(crate) fn new(lifetime: Lifetime) -> Self {
        Self {
            inner: Arc::new(Inner {
                lifetime,
                born: Instant::now(),
                requests: AtomicU32::new(0),
                busy: AtomicU32::new(0),
                idle_since: AtomicU64::new(0),
                head_started: AtomicU64::new(NO_HEAD),
                changed: Notify::new(),
            }),
        }
    }

    /// `io`, reporting the bytes it reads to this clock.
    pub(crate) fn watch<Io>(&self, io: Io) -> Watched<Io> {
        Watched {
            io,
            clock: self.clone(),
        }
    }

    /// A request has started (its header block is in); the guard ends it.
    pub(crate) fn request(&self) -> Request {
        let inner = &self.inner;
        let count = inner.requests.fetch_add(1, Ordering::Relaxed) + 1;
        inner.busy.fetch_add(1, Ordering::Relaxed);
        inner.head_started.store(NO_HEAD, Ordering::Relaxed);
        let last =
            count >= inner.lifetime.max_requests || inner.born.elapsed() >= inner.lifetime.max_age;
        Request {
            clock: self.clone(),
            last,
        }
    }

    /// When to look at this clock again.
    pub(crate) fn next_check(&self) -> Instant {
        let inner = &self.inner;
        let at = |ms: u64, after: Duration| inner.born + Duration::from_millis(ms) + after;
        if inner.busy.load(Ordering::Relaxed) > 0 {
            return Instant::now() + inner.lifetime.idle;
        }
        match inner.head_started.load(Ordering::Relaxed) {
            NO_HEAD => at(
                inner.idle_since.load(Ordering::Relaxed),
                inner.lifetime.idle,
            ),
            started => at(started, inner.lifetime.header),
        }
    }

    /// Completes when [`Clock::next_check`] may have moved earlier (a header block started).
    pub(crate) async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// Whether the connection should be closed now, and why.
    pub(crate) fn expired(&self) -> Option<Expiry> {
        let inner = &self.inner;
        if inner.busy.load(Ordering::Relaxed) > 0 || self.next_check() > Instant::now() {
            return None;
        }
        match inner.head_started.load(Ordering::Relaxed) {
            NO_HEAD => Some(Expiry::Idle),
            _ => Some(Expiry::SlowHeader),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn saw_bytes(&self) {
        let inner = &self.inner;
        if inner.busy.load(Ordering::Relaxed) == 0
            && inner
                .head_started
                .compare_exchange(NO_HEAD, self.now_ms(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            inner.changed.notify_one();
        }
    }
}

/// One request in progress on a connection; dropping it makes the connection idle again.
#[derive(Debug)]
pub(crate) struct Request {
    clock: Clock,
    last: bool,
}

impl Request {
    /// Whether this is the last request the connection may make (its answer says
    /// `Connection: close`).
    pub(crate) fn is_last(&self) -> bool {
        self.last
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        let inner = &self.clock.inner;
        inner
            .idle_since
            .store(self.clock.now_ms(), Ordering::Relaxed);
        inner.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's IO, telling its [`Clock`] when bytes arrive.
#[derive(Debug)]
pub(crate) struct Watched<Io> {
    io: Io,
    clock: Clock,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.saw_bytes();
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "keep_alive_tests.rs"]
mod tests;
