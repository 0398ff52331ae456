//! The connection's byte stream after startup.
//!
//! A plain TCP socket is held behind an `Arc` so that the fan-out thread can write
//! notifications to an idle client straight from its round (`Mailbox::deliver_round`), without
//! waking the connection's task; the connection reads and writes it through `poll_*_ready` and
//! `try_*`, which take `&TcpStream`. TLS and Unix-socket connections keep pgwire's stream and get
//! every delivery through their task.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pgwire::tokio::server::MaybeTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum ConnIo {
    Tcp(Arc<TcpStream>),
    Other(MaybeTls),
}

impl ConnIo {
    pub fn new(io: MaybeTls) -> ConnIo {
        match io {
            MaybeTls::Plain(tcp) => ConnIo::Tcp(Arc::new(tcp)),
            other => ConnIo::Other(other),
        }
    }

    /// The socket the fan-out may write to directly, if this is plain TCP.
    pub fn shared_tcp(&self) -> Option<Arc<TcpStream>> {
        match self {
            ConnIo::Tcp(s) => Some(Arc::clone(s)),
            ConnIo::Other(_) => None,
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnIo::Tcp(s) => loop {
                ready!(s.poll_read_ready(cx))?;
                match s.try_read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    // Readiness was stale; try_read cleared it, so the next poll registers.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            ConnIo::Other(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnIo::Tcp(s) => loop {
                ready!(s.poll_write_ready(cx))?;
                match s.try_write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
            ConnIo::Other(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnIo::Tcp(s) => loop {
                ready!(s.poll_write_ready(cx))?;
                match s.try_write_vectored(bufs) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
            ConnIo::Other(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ConnIo::Tcp(_) => true,
            ConnIo::Other(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnIo::Tcp(_) => Poll::Ready(Ok(())),
            ConnIo::Other(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnIo::Tcp(s) => {
                let r = socket2::SockRef::from(s.as_ref()).shutdown(std::net::Shutdown::Write);
                Poll::Ready(match r {
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    r => r,
                })
            }
            ConnIo::Other(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
