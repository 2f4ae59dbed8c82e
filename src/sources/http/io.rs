//! hyper's IO and timer traits over tokio, in place of hyper-util: a
//! stream adapter that also tells the connection registry whether the
//! client is in the middle of a request, and a timer for hyper's header
//! read timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's stream as hyper sees it.
pub struct Io<S> {
    stream: S,
    /// Set when request bytes arrive, cleared when response bytes leave:
    /// clear means the client owes nothing and the connection may be
    /// closed for another (see `connections`).
    pub(super) busy: Arc<AtomicBool>,
    /// True once a response went out: the connection was kept alive.
    pub(super) answered: bool,
}

impl<S> Io<S> {
    pub fn new(stream: S, busy: Arc<AtomicBool>) -> Self {
        Self {
            stream,
            busy,
            answered: false,
        }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for Io<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // SAFETY: `ReadBuf::uninit` never de-initialises bytes, and tokio
        // reports in `filled` only bytes the reader wrote; the cursor is
        // advanced by exactly that many.
        let filled = unsafe {
            let mut tokio_buf = ReadBuf::uninit(buf.as_mut());
            match Pin::new(&mut self.stream).poll_read(cx, &mut tokio_buf) {
                Poll::Ready(Ok(())) => tokio_buf.filled().len(),
                other => return other,
            }
        };
        if filled > 0 {
            self.busy.store(true, Ordering::Relaxed);
        }
        // SAFETY: see above; `filled` bytes were initialised.
        unsafe { buf.advance(filled) };
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for Io<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                self.busy.store(false, Ordering::Relaxed);
                self.answered = true;
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            if n > 0 {
                self.busy.store(false, Ordering::Relaxed);
                self.answered = true;
            }
        }
        written
    }
}

/// tokio's timer for hyper (its header read timeout).
#[derive(Clone, Copy, Debug)]
pub struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep(Box::pin(tokio::time::sleep_until(deadline.into()))))
    }
}

struct Sleep(Pin<Box<tokio::time::Sleep>>);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for Sleep {}
