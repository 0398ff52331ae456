//! A minimal listening client on the raw wire protocol: startup (trust auth), `LISTEN`, then read
//! NotificationResponses. The same code listens to Weft and to PostgreSQL, so the client's cost
//! per delivery is equal for both; it is far cheaper than a full driver, which matters because
//! 10,000 listeners run on the same two cores as the servers.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Where a listener counts: deliveries received inside `[from_us, to_us)` of the wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from_us: u64,
    pub to_us: u64,
}

/// What one listener saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Notifications received inside the window.
    pub in_window: u64,
    /// Notifications received in all (warm-up and drain included).
    pub total: u64,
    /// Commit-to-client latency of the in-window ones, microseconds.
    pub latencies_us: Vec<u32>,
    /// The writer's clock of each of those (same order), for FANOUT_TRACE.
    pub sent_us: Vec<u64>,
    /// Notifications whose payload had no `sent_at`.
    pub unparsed: u64,
    /// NoticeResponses (e.g. an overflow report).
    pub notices: u64,
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub struct Listener {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn protocol(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Listener {
    /// Connects, authenticates (trust) and runs `LISTEN channel`; ready to receive when it returns.
    pub async fn connect(addr: &str, user: &str, db: &str, channel: &str) -> io::Result<Listener> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut l = Listener {
            stream,
            buf: Vec::with_capacity(4096),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes());
        for s in ["user", user, "database", db, ""] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        l.stream.write_all(&startup).await?;
        l.until_ready().await?;
        let sql = format!("LISTEN {channel}");
        let mut q = vec![b'Q'];
        q.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        q.extend_from_slice(sql.as_bytes());
        q.push(0);
        l.stream.write_all(&q).await?;
        l.until_ready().await?;
        Ok(l)
    }

    /// Reads messages up to ReadyForQuery; fails on ErrorResponse or a non-trust authentication.
    async fn until_ready(&mut self) -> io::Result<()> {
        loop {
            while let Some((kind, body)) = self.next_message() {
                match kind {
                    b'Z' => return Ok(()),
                    b'E' => return Err(protocol(format!("server error: {}", error_text(&body)))),
                    b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                        return Err(protocol("server asks for a password (trust expected)"))
                    }
                    _ => {}
                }
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8192);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(n)
    }

    /// Pops one whole message off the buffer.
    fn next_message(&mut self) -> Option<(u8, Vec<u8>)> {
        let (kind, len) = header(&self.buf)?;
        let body = self.buf[5..1 + len].to_vec();
        self.buf.drain(..1 + len);
        Some((kind, body))
    }

    /// Receives until `stop` turns true; deliveries read together share one arrival time.
    /// `received` counts every notification over all listeners (the drain waits on it).
    pub async fn receive(
        mut self,
        window: Window,
        mut stop: watch::Receiver<bool>,
        received: Arc<AtomicU64>,
    ) -> io::Result<Seen> {
        let mut seen = Seen::default();
        loop {
            tokio::select! {
                biased;
                r = self.fill() => { r?; }
                _ = stop.wait_for(|s| *s) => return Ok(seen),
            }
            let at = now_us();
            let counted = at >= window.from_us && at < window.to_us;
            let mut off = 0;
            let before = seen.total;
            while let Some((kind, len)) = header(&self.buf[off..]) {
                let body = &self.buf[off + 5..off + 1 + len];
                match kind {
                    b'A' => {
                        seen.total += 1;
                        // pid, channel\0, payload\0
                        let rest = body.get(4..).unwrap_or(&[]);
                        let payload = rest
                            .iter()
                            .position(|&b| b == 0)
                            .map_or(&[][..], |i| &rest[i + 1..]);
                        match sent_at(payload) {
                            Some(sent) if counted => {
                                seen.in_window += 1;
                                let lat = at.saturating_sub(sent).min(u64::from(u32::MAX));
                                seen.latencies_us.push(lat as u32);
                                seen.sent_us.push(sent);
                            }
                            Some(_) => {}
                            None => seen.unparsed += 1,
                        }
                    }
                    b'N' => seen.notices += 1,
                    b'E' => return Err(protocol(format!("server error: {}", error_text(body)))),
                    _ => {}
                }
                off += 1 + len;
            }
            self.buf.drain(..off);
            if seen.total > before {
                received.fetch_add(seen.total - before, Ordering::Relaxed);
            }
        }
    }
}

/// Kind and length (excluding the kind byte) of the whole message at the start of `buf`.
fn header(buf: &[u8]) -> Option<(u8, usize)> {
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize;
    (len >= 4 && buf.len() > len).then_some((buf[0], len))
}

/// The number after `"sent_at":` in a JSON payload.
pub fn sent_at(payload: &[u8]) -> Option<u64> {
    weft_bench::payload::int_field(payload, "sent_at")
}

fn error_text(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .filter(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .next()
        .unwrap_or_else(|| "(no message)".into())
}
