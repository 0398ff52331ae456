//! Frame-bounded decoding of frontend messages after startup.
//!
//! pgwire's decoders read message bodies from the whole receive buffer without checking the
//! declared length, so a malformed body can consume the next message or panic. This codec cuts
//! exactly one frame (`type:u8 length:i32 body`) off the buffer first and decodes only that.
//! A body that does not decode becomes [`Frontend::Malformed`] (an ERROR, the connection goes
//! on, as in PostgreSQL); a bad frame header is an `InvalidData` error (FATAL, connection ends).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::BytesMut;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::PgWireMessageServerCodec;
use tokio_util::codec::{Decoder, Encoder};

/// Largest frontend message accepted (PostgreSQL's `PQ_LARGE_MESSAGE_LIMIT` is 1 GB - 1).
const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;

/// Message types a client may send after startup.
const KNOWN_TYPES: &[u8] = b"QPBEDCHSXdcfp";

/// One decoded frontend frame.
#[derive(Debug)]
pub enum Frontend {
    Message(PgWireFrontendMessage),
    /// A frame of a known type whose body is malformed.
    Malformed {
        kind: u8,
        reason: String,
    },
}

impl Frontend {
    /// True for the extended-query messages after whose errors input is skipped until Sync.
    pub fn is_extended(kind: u8) -> bool {
        matches!(kind, b'P' | b'B' | b'E' | b'D' | b'C' | b'H')
    }
}

pub struct FrontendCodec {
    inner: PgWireMessageServerCodec<()>,
}

impl FrontendCodec {
    /// Wraps pgwire's codec as it was left by startup (protocol version, connection state).
    pub fn new(inner: PgWireMessageServerCodec<()>) -> Self {
        FrontendCodec { inner }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Decoder for FrontendCodec {
    type Item = Frontend;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frontend>> {
        if src.len() < 5 {
            return Ok(None);
        }
        let kind = src[0];
        if !KNOWN_TYPES.contains(&kind) {
            return Err(invalid(format!("invalid frontend message type {kind}")));
        }
        let len = i32::from_be_bytes([src[1], src[2], src[3], src[4]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| (4..=MAX_MESSAGE_LEN).contains(l))
            .ok_or_else(|| invalid(format!("invalid message length {len}")))?;
        if src.len() < 1 + len {
            src.reserve(1 + len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(1 + len);
        let inner = &mut self.inner;
        let decoded = catch_unwind(AssertUnwindSafe(|| inner.decode(&mut frame)));
        Ok(Some(match decoded {
            Ok(Ok(Some(message))) => Frontend::Message(message),
            Ok(Ok(None)) => Frontend::Malformed {
                kind,
                reason: "incomplete message".into(),
            },
            Ok(Err(e)) => Frontend::Malformed {
                kind,
                reason: e.to_string(),
            },
            Err(_) => Frontend::Malformed {
                kind,
                reason: "insufficient data left in message".into(),
            },
        }))
    }
}

impl Encoder<PgWireBackendMessage> for FrontendCodec {
    type Error = io::Error;

    fn encode(&mut self, item: PgWireBackendMessage, dst: &mut BytesMut) -> io::Result<()> {
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use pgwire::api::{ClientInfo, DefaultClient, PgWireConnectionState};

    fn codec() -> FrontendCodec {
        let mut client = DefaultClient::<()>::new("127.0.0.1:1".parse().expect("addr"), false);
        client.set_state(PgWireConnectionState::ReadyForQuery);
        FrontendCodec::new(PgWireMessageServerCodec::new(client))
    }

    fn frame(kind: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(kind);
        b.put_i32(body.len() as i32 + 4);
        b.put_slice(body);
        b
    }

    #[test]
    fn decodes_whole_frames_only() {
        let mut c = codec();
        let mut buf = frame(b'Q', b"select 1\0");
        let tail = buf.split_off(6);
        assert!(c.decode(&mut buf).expect("ok").is_none());
        buf.unsplit(tail);
        match c.decode(&mut buf).expect("ok") {
            Some(Frontend::Message(PgWireFrontendMessage::Query(q))) => {
                assert_eq!(q.query, "select 1")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_body_does_not_eat_the_next_message() {
        let mut c = codec();
        // A Bind claiming two parameter format codes but carrying none.
        let mut buf = frame(b'B', b"\0\0\0\x02");
        buf.unsplit(frame(b'S', b""));
        match c.decode(&mut buf).expect("ok") {
            Some(Frontend::Malformed { kind: b'B', .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            c.decode(&mut buf).expect("ok"),
            Some(Frontend::Message(PgWireFrontendMessage::Sync(_)))
        ));
    }

    #[test]
    fn bad_headers_are_fatal() {
        let mut c = codec();
        let mut buf = frame(b'!', b"");
        assert!(c.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"Q\0\0\0\x02xx"[..]);
        assert!(c.decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(c.decode(&mut buf).is_err());
    }
}
