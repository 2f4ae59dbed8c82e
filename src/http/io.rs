//! hyper's IO traits over a tokio stream, in place of hyper-util's
//! adapter. It also keeps the connection's [`Phase`] for the server:
//! whether the client is idle (it may be closed to make room), sending a
//! request head (which must arrive within `read_timeout`, or the client
//! gets a 408 and the connection closes: hyper's own header timeout closes
//! without an answer), or being served.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a connection is in its request cycle, shared by its [`Io`], the
/// request handler and the server's connection registry.
#[derive(Default)]
pub struct Phase(AtomicU8);

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const SERVING: u8 = 2;

impl Phase {
    /// Nothing owed either way: the connection may be closed for another.
    pub fn is_idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == IDLE
    }

    /// The handler has the request: its head arrived in time.
    pub fn serving(&self) {
        self.0.store(SERVING, Ordering::Relaxed);
    }
}

/// What a client that is too slow with a request head gets.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 31\r\nconnection: close\r\n\r\n{\"message\":\"Request Timeout\"}\n";

/// A connection's stream as hyper sees it.
pub struct Io<S> {
    stream: S,
    phase: Arc<Phase>,
    read_timeout: Duration,
    /// Armed when the first byte of a request head arrives.
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set once the head timed out: the 408 went (or was tried) and the
    /// connection ends.
    timed_out: bool,
}

impl<S> Io<S> {
    pub fn new(stream: S, phase: Arc<Phase>, read_timeout: Duration) -> Self {
        Self {
            stream,
            phase,
            read_timeout,
            head_deadline: None,
            timed_out: false,
        }
    }

    /// Response bytes left: the request cycle is over.
    fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.phase.0.store(IDLE, Ordering::Relaxed);
            self.head_deadline = None;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    /// True (after answering 408, best effort) if a request head has been
    /// arriving for longer than `read_timeout`.
    fn head_too_slow(&mut self, cx: &mut Context<'_>) -> bool {
        if self.phase.0.load(Ordering::Relaxed) != HEAD {
            self.head_deadline = None;
            return false;
        }
        let Some(deadline) = &mut self.head_deadline else {
            return false;
        };
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        if !self.timed_out {
            self.timed_out = true;
            // The socket's send buffer is empty between requests, so this
            // small write completes at once; if not, the client gets no 408
            // but the connection still closes.
            let _ = Pin::new(&mut self.stream).poll_write(cx, REQUEST_TIMEOUT);
            let _ = Pin::new(&mut self.stream).poll_flush(cx);
        }
        true
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> hyper::rt::Read for Io<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.head_too_slow(cx) {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
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
        if filled > 0
            && self
                .phase
                .0
                .compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut deadline = Box::pin(tokio::time::sleep(self.read_timeout));
            // Registers the timer with this task, so a client that sends
            // nothing more still gets its 408.
            let _ = deadline.as_mut().poll(cx);
            self.head_deadline = Some(deadline);
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
            self.wrote(n);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
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
            self.wrote(n);
        }
        written
    }
}
