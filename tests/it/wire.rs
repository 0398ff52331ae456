//! A raw PostgreSQL wire client: builds frontend messages byte by byte and reads backend
//! messages as (type, body), so tests can check exact message sequences and send malformed
//! input no driver would.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::DEADLINE;

/// One backend message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// A field of an ErrorResponse / NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }

    pub fn code(&self) -> String {
        self.field(b'C').unwrap_or_default()
    }

    /// CommandComplete's tag or ParameterStatus' name.
    pub fn text(&self) -> String {
        let end = self
            .body
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.body.len());
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }

    /// A DataRow's fields as text (`None` for NULL).
    pub fn values(&self) -> Vec<Option<String>> {
        let mut b = &self.body[..];
        let n = b.get_i16();
        (0..n)
            .map(|_| {
                let len = b.get_i32();
                if len < 0 {
                    None
                } else {
                    let v = String::from_utf8_lossy(&b[..len as usize]).into_owned();
                    b.advance(len as usize);
                    Some(v)
                }
            })
            .collect()
    }
}

/// Message types of `msgs` as a string, e.g. `"12DDsZ"`.
pub fn kinds(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.kind as char).collect()
}

pub struct Wire {
    stream: TcpStream,
    out: BytesMut,
    input: BytesMut,
    /// Backend pid and secret from BackendKeyData.
    pub key: (i32, i32),
    /// ParameterStatus messages received during startup.
    pub parameters: Vec<(String, String)>,
}

fn cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

impl Wire {
    /// Connects and completes startup as user `postgres`.
    pub async fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).await.expect("connects");
        let mut w = Wire {
            stream,
            out: BytesMut::new(),
            input: BytesMut::new(),
            key: (0, 0),
            parameters: Vec::new(),
        };
        let mut body = BytesMut::new();
        body.put_i32(196_608);
        cstr(&mut body, "user");
        cstr(&mut body, "postgres");
        cstr(&mut body, "database");
        cstr(&mut body, "postgres");
        body.put_u8(0);
        w.out.put_i32(body.len() as i32 + 4);
        w.out.put_slice(&body);
        w.flush().await;
        for m in w.until_ready().await {
            match m.kind {
                b'K' => {
                    let mut b = &m.body[..];
                    w.key = (b.get_i32(), b.get_i32());
                }
                b'S' => {
                    let mut parts = m.body.split(|b| *b == 0);
                    let name =
                        String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    let value =
                        String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    w.parameters.push((name, value));
                }
                b'E' => panic!("startup failed: {:?}", m.field(b'M')),
                _ => {}
            }
        }
        w
    }

    fn message(&mut self, kind: u8, body: &[u8]) -> &mut Self {
        self.out.put_u8(kind);
        self.out.put_i32(body.len() as i32 + 4);
        self.out.put_slice(body);
        self
    }

    /// Appends raw bytes to the output.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.put_slice(bytes);
        self
    }

    pub fn query(&mut self, sql: &str) -> &mut Self {
        let mut b = BytesMut::new();
        cstr(&mut b, sql);
        self.message(b'Q', &b)
    }

    pub fn parse(&mut self, name: &str, sql: &str, types: &[u32]) -> &mut Self {
        let mut b = BytesMut::new();
        cstr(&mut b, name);
        cstr(&mut b, sql);
        b.put_i16(types.len() as i16);
        for t in types {
            b.put_u32(*t);
        }
        self.message(b'P', &b)
    }

    pub fn bind(
        &mut self,
        portal: &str,
        statement: &str,
        param_formats: &[i16],
        params: &[Option<&[u8]>],
        result_formats: &[i16],
    ) -> &mut Self {
        let mut b = BytesMut::new();
        cstr(&mut b, portal);
        cstr(&mut b, statement);
        b.put_i16(param_formats.len() as i16);
        for f in param_formats {
            b.put_i16(*f);
        }
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
        b.put_i16(result_formats.len() as i16);
        for f in result_formats {
            b.put_i16(*f);
        }
        self.message(b'B', &b)
    }

    pub fn describe(&mut self, kind: u8, name: &str) -> &mut Self {
        let mut b = BytesMut::new();
        b.put_u8(kind);
        cstr(&mut b, name);
        self.message(b'D', &b)
    }

    pub fn execute(&mut self, portal: &str, max_rows: i32) -> &mut Self {
        let mut b = BytesMut::new();
        cstr(&mut b, portal);
        b.put_i32(max_rows);
        self.message(b'E', &b)
    }

    pub fn close(&mut self, kind: u8, name: &str) -> &mut Self {
        let mut b = BytesMut::new();
        b.put_u8(kind);
        cstr(&mut b, name);
        self.message(b'C', &b)
    }

    pub fn sync(&mut self) -> &mut Self {
        self.message(b'S', &[])
    }

    pub fn flush_message(&mut self) -> &mut Self {
        self.message(b'H', &[])
    }

    pub fn terminate(&mut self) -> &mut Self {
        self.message(b'X', &[])
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) {
        let out = self.out.split();
        self.stream.write_all(&out).await.expect("writes");
    }

    /// The next backend message; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Msg> {
        loop {
            if self.input.len() >= 5 {
                let len = (&self.input[1..5]).get_i32() as usize;
                if self.input.len() > len {
                    let kind = self.input[0];
                    self.input.advance(5);
                    let body = self.input.split_to(len - 4).to_vec();
                    return Some(Msg { kind, body });
                }
            }
            let read = tokio::time::timeout(DEADLINE, self.stream.read_buf(&mut self.input))
                .await
                .expect("server answers before the deadline")
                .ok()?;
            if read == 0 {
                return None;
            }
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut msgs = Vec::new();
        loop {
            let m = self
                .recv()
                .await
                .expect("connection open until ReadyForQuery");
            let done = m.kind == b'Z';
            msgs.push(m);
            if done {
                return msgs;
            }
        }
    }

    /// Sends what is queued and returns the messages up to ReadyForQuery.
    pub async fn roundtrip(&mut self) -> Vec<Msg> {
        self.flush().await;
        self.until_ready().await
    }
}

/// ReadyForQuery's transaction status of the last message.
pub fn status(msgs: &[Msg]) -> char {
    match msgs.last() {
        Some(m) if m.kind == b'Z' => m.body[0] as char,
        other => panic!("no ReadyForQuery at the end: {other:?}"),
    }
}
