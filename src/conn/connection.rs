//! The message loop of an authenticated connection.
//!
//! ```text
//!          +--> client message --> simple::query | extended::{parse,bind,describe,execute,close}
//!  select! +--> notification (only while idle, outside a transaction) --> NotificationResponse
//!          +--> server shutdown --> FATAL 57P01, close
//! ```
//!
//! After an error in an extended-query message every message but Sync and Terminate is
//! discarded; Sync answers ReadyForQuery (PostgreSQL's "ignore till sync").

use std::collections::HashMap;
use std::io;

use futures::{SinkExt, StreamExt};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::codec::Framed;
use weft_sql::{Session, TxStatus};

use super::codec::{Frontend, FrontendCodec};
use super::error::{notice, Fail, SqlError};
use super::extended::{self, Portal, PreparedStatement};
use super::simple;
use super::stream::ConnIo;
use crate::push::{Delivery, Hub, Mailbox};

pub type Socket = Framed<ConnIo, FrontendCodec>;

pub struct Connection {
    pub socket: Socket,
    pub session: Session,
    /// Named (and the unnamed, `""`) prepared statements.
    pub statements: HashMap<String, PreparedStatement>,
    /// Named (and the unnamed, `""`) portals.
    pub portals: HashMap<String, Portal>,
    /// Discarding input until Sync after an extended-query error.
    skipping: bool,
    /// ReadyForQuery was the last message sent and nothing has arrived since.
    idle: bool,
    mailbox: Arc<Mailbox>,
    hub: Arc<Hub>,
    pid: i32,
    shutdown: watch::Receiver<bool>,
}

enum Event {
    Message(Option<io::Result<Frontend>>),
    Delivery(Delivery),
    Shutdown,
}

enum Flow {
    Continue,
    Stop,
}

impl Connection {
    pub fn new(
        socket: Socket,
        session: Session,
        (pid, mailbox, hub): (i32, Arc<Mailbox>, Arc<Hub>),
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            socket,
            session,
            statements: HashMap::new(),
            portals: HashMap::new(),
            skipping: false,
            idle: true,
            mailbox,
            hub,
            pid,
            shutdown,
        }
    }

    /// Serves the client until it leaves, the socket fails or the server shuts down.
    pub async fn run(mut self) {
        if let Err(e) = self.serve().await {
            tracing::debug!(error = %e, "connection closed on I/O error");
        }
        self.hub.disconnect(self.pid);
        self.mailbox.detach();
        let _ = self.socket.close().await;
    }

    async fn serve(&mut self) -> io::Result<()> {
        loop {
            let deliver = self.idle && matches!(self.session.tx_status(), TxStatus::Idle);
            if deliver && self.socket.write_buffer().is_empty() {
                // Idle with nothing unsent: the fan-out may write to the socket itself.
                self.mailbox.enable_direct();
            }
            let event = tokio::select! {
                biased;
                () = super::shutting_down(&mut self.shutdown) => Event::Shutdown,
                d = self.mailbox.pop(), if deliver => Event::Delivery(d),
                m = self.socket.next() => Event::Message(m),
            };
            if !matches!(event, Event::Delivery(_)) {
                self.take_socket_back();
            }
            match event {
                Event::Shutdown => {
                    let e = SqlError::fatal(
                        "57P01",
                        "terminating connection due to administrator command",
                    );
                    return self.send_error(&e).await;
                }
                Event::Delivery(d) => {
                    // Send everything queued with one flush: under fan-out load this batches.
                    self.deliver(d).await?;
                    while let Some(d) = self.mailbox.try_pop() {
                        self.deliver(d).await?;
                    }
                    self.socket.flush().await?;
                }
                Event::Message(None) => return Ok(()),
                Event::Message(Some(Err(e))) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        let _ = self
                            .send_error(&SqlError::fatal("08P01", e.to_string()))
                            .await;
                    }
                    return Ok(());
                }
                Event::Message(Some(Ok(frame))) => {
                    self.idle = false;
                    if let Flow::Stop = self.handle_guarded(frame).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Stops the fan-out's direct writes before this task writes; the tail of a message that
    /// the fan-out wrote in part goes first. (A delivery from the mailbox has already stopped
    /// them: the mailbox turns direct writes off when it hands anything out.)
    fn take_socket_back(&mut self) {
        if let Some(tail) = self.mailbox.disable_direct() {
            self.socket.write_buffer_mut().extend_from_slice(&tail);
        }
    }

    /// [`Self::handle`], with a panic while handling the message answered as an internal error
    /// (XX000) that fails the transaction block, as PostgreSQL's elog(ERROR) does: the
    /// connection stays usable instead of closing.
    async fn handle_guarded(&mut self, frame: Frontend) -> io::Result<Flow> {
        use futures::FutureExt;
        let simple = matches!(&frame, Frontend::Message(PgWireFrontendMessage::Query(_)));
        let handled = std::panic::AssertUnwindSafe(self.handle(frame))
            .catch_unwind()
            .await;
        let panic = match handled {
            Ok(flow) => return flow,
            Err(panic) => panic,
        };
        let text = weft_sql::panic_text(panic.as_ref());
        tracing::error!(panic = %text, pid = self.pid, "handling a client message panicked");
        self.take_socket_back();
        self.session.fail_block();
        let e = SqlError::new("XX000", format!("internal error: {text}"));
        self.report(e, !simple).await?;
        if simple {
            self.ready_for_query().await?;
        }
        Ok(Flow::Continue)
    }

    async fn handle(&mut self, frame: Frontend) -> io::Result<Flow> {
        let message = match frame {
            Frontend::Malformed { kind, reason } => {
                if !self.skipping {
                    let e = SqlError::protocol(format!("invalid message format: {reason}"));
                    self.report(e, Frontend::is_extended(kind)).await?;
                    if !Frontend::is_extended(kind) {
                        self.ready_for_query().await?;
                    }
                }
                return Ok(Flow::Continue);
            }
            Frontend::Message(m) => m,
        };
        match message {
            PgWireFrontendMessage::Terminate(_) => return Ok(Flow::Stop),
            PgWireFrontendMessage::Sync(_) => {
                self.skipping = false;
                self.ready_for_query().await?;
            }
            _ if self.skipping => {}
            PgWireFrontendMessage::Query(q) => simple::query(self, &q.query).await?,
            PgWireFrontendMessage::Parse(m) => {
                let r = extended::parse(self, m).await;
                self.after_extended(r).await?;
            }
            PgWireFrontendMessage::Bind(m) => {
                let r = extended::bind(self, m).await;
                self.after_extended(r).await?;
            }
            PgWireFrontendMessage::Describe(m) => {
                let r = extended::describe(self, m).await;
                self.after_extended(r).await?;
            }
            PgWireFrontendMessage::Execute(m) => {
                let r = extended::execute(self, m).await;
                self.after_extended(r).await?;
            }
            PgWireFrontendMessage::Close(m) => {
                let r = extended::close(self, m).await;
                self.after_extended(r).await?;
            }
            PgWireFrontendMessage::Flush(_) => self.socket.flush().await?,
            // PostgreSQL ignores COPY data messages outside COPY.
            PgWireFrontendMessage::CopyData(_)
            | PgWireFrontendMessage::CopyDone(_)
            | PgWireFrontendMessage::CopyFail(_) => {}
            other => {
                let e =
                    SqlError::fatal("08P01", format!("unexpected message {}", kind_name(&other)));
                self.send_error(&e).await?;
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    async fn after_extended(&mut self, result: Result<(), Fail>) -> io::Result<()> {
        match result {
            Ok(()) => self.send_session_messages().await,
            Err(Fail::Sql(e)) => self.report(e, true).await,
            Err(Fail::Io(e)) => Err(e),
        }
    }

    /// Sends an error (and pending notices); in the extended protocol, skips to the next Sync.
    async fn report(&mut self, e: SqlError, extended: bool) -> io::Result<()> {
        self.send_error(&e).await?;
        self.send_session_messages().await?;
        if extended {
            self.skipping = true;
        }
        Ok(())
    }

    /// Queues one delivery for the next flush. Encoded notifications are copied into the write
    /// buffer as they are (encoded once by the hub for all listeners); the buffer is flushed
    /// when it grows past the codec's usual bound.
    async fn deliver(&mut self, d: Delivery) -> io::Result<()> {
        match d {
            Delivery::Encoded(wire) => {
                self.socket.write_buffer_mut().extend_from_slice(&wire);
                if self.socket.write_buffer().len() >= WRITE_FLUSH_BYTES {
                    self.socket.flush().await?;
                }
                Ok(())
            }
            Delivery::Notification(n) => {
                let m = pgwire::messages::response::NotificationResponse::new(
                    n.pid,
                    n.channel.clone(),
                    n.payload.clone(),
                );
                self.send(PgWireBackendMessage::NotificationResponse(m))
                    .await
            }
            Delivery::Notice(message) => {
                let n = notice(&weft_sql::Notice {
                    severity: "WARNING".into(),
                    sqlstate: "01000".into(),
                    message,
                });
                self.send(PgWireBackendMessage::NoticeResponse(n)).await
            }
        }
    }

    pub async fn send(&mut self, message: PgWireBackendMessage) -> io::Result<()> {
        self.socket.feed(message).await
    }

    pub async fn send_error(&mut self, e: &SqlError) -> io::Result<()> {
        self.send(PgWireBackendMessage::ErrorResponse(e.to_response()))
            .await?;
        if e.is_fatal() {
            self.socket.flush().await?;
        }
        Ok(())
    }

    /// Notices and changed parameters the session produced since the last call.
    pub async fn send_session_messages(&mut self) -> io::Result<()> {
        for n in self.session.take_notices() {
            self.send(PgWireBackendMessage::NoticeResponse(notice(&n)))
                .await?;
        }
        for (name, value) in self.session.take_parameter_changes() {
            let status = ParameterStatus::new(name, value);
            self.send(PgWireBackendMessage::ParameterStatus(status))
                .await?;
        }
        Ok(())
    }

    /// Ends a cycle: notices, notifications queued while busy (outside a transaction only),
    /// ReadyForQuery, flush. Portals do not outlive their transaction.
    pub async fn ready_for_query(&mut self) -> io::Result<()> {
        self.send_session_messages().await?;
        let status = self.session.tx_status();
        if matches!(status, TxStatus::Idle) {
            self.portals.clear();
            while let Some(d) = self.mailbox.try_pop() {
                self.deliver(d).await?;
            }
        }
        let status = match status {
            TxStatus::Idle => TransactionStatus::Idle,
            TxStatus::InBlock => TransactionStatus::Transaction,
            TxStatus::Failed => TransactionStatus::Error,
        };
        self.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            status,
        )))
        .await?;
        self.socket.flush().await?;
        self.idle = true;
        Ok(())
    }
}

/// Encoded notifications written straight into the write buffer flush beyond this.
const WRITE_FLUSH_BYTES: usize = 64 * 1024;

pub(super) fn kind_name(m: &PgWireFrontendMessage) -> &'static str {
    match m {
        PgWireFrontendMessage::Startup(_) => "StartupMessage",
        PgWireFrontendMessage::CancelRequest(_) => "CancelRequest",
        PgWireFrontendMessage::SslNegotiation(_) => "SSLRequest",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "PasswordMessage",
        PgWireFrontendMessage::PortalSuspended(_) => "PortalSuspended",
        _ => "type",
    }
}
