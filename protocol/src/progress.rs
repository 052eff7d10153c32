//! When bytes last moved on a connection, so that the link's deadlines can tell a peer that is
//! gone from one that is busy sending (or taking) a large message over a slow line.
//!
//! The link's heartbeat counts whole messages: a 4 MiB answer on a 1 Mbit/s uplink takes over
//! 30 s to arrive, and a 9 s heartbeat would declare its sender dead half-way. With [`Tracked`]
//! under the WebSocket, a deadline that passes while bytes are still arriving (or leaving) is
//! extended instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The last read and write of one connection; cheap to clone, all clones share it.
#[derive(Debug, Clone)]
pub struct Progress(Arc<Moments>);

#[derive(Debug)]
struct Moments {
    start: Instant,
    /// Milliseconds after `start`.
    read: AtomicU64,
    written: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    /// A connection on which nothing has moved yet (as if it just had).
    pub fn new() -> Progress {
        Progress(Arc::new(Moments {
            start: Instant::now(),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }))
    }

    /// Whether bytes arrived within the last `window`.
    pub fn read_within(&self, window: Duration) -> bool {
        self.within(&self.0.read, window)
    }

    /// Whether bytes left within the last `window`.
    pub fn written_within(&self, window: Duration) -> bool {
        self.within(&self.0.written, window)
    }

    fn within(&self, moment: &AtomicU64, window: Duration) -> bool {
        let since = self.now().saturating_sub(moment.load(Ordering::Relaxed));
        u128::from(since) < window.as_millis()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn note(&self, moment: &AtomicU64) {
        moment.store(self.now(), Ordering::Relaxed);
    }
}

/// A byte stream that notes its progress in a [`Progress`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    progress: Progress,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; see [`Tracked::progress`] for the handle.
    pub fn new(inner: S) -> Tracked<S> {
        Tracked {
            inner,
            progress: Progress::new(),
        }
    }

    /// The handle the link's deadlines read.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.note(&self.progress.0.read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, bytes);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.progress.note(&self.progress.0.written);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.progress.note(&self.progress.0.written);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
