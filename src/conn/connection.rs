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
use pgwire::tokio::server::MaybeTls;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;
use weft_sql::{Session, TxStatus};

use super::codec::{Frontend, FrontendCodec};
use super::error::{notice, Fail, SqlError};
use super::extended::{self, Portal, PreparedStatement};
use super::registry::Notification;
use super::simple;

pub type Socket = Framed<MaybeTls, FrontendCodec>;

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
    notifications: Option<mpsc::Receiver<Notification>>,
    shutdown: watch::Receiver<bool>,
}

enum Event {
    Message(Option<io::Result<Frontend>>),
    Notification(Option<Notification>),
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
        notifications: mpsc::Receiver<Notification>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            socket,
            session,
            statements: HashMap::new(),
            portals: HashMap::new(),
            skipping: false,
            idle: true,
            notifications: Some(notifications),
            shutdown,
        }
    }

    /// Serves the client until it leaves, the socket fails or the server shuts down.
    pub async fn run(mut self) {
        if let Err(e) = self.serve().await {
            tracing::debug!(error = %e, "connection closed on I/O error");
        }
        let _ = self.socket.close().await;
    }

    async fn serve(&mut self) -> io::Result<()> {
        loop {
            let deliver = self.idle && matches!(self.session.tx_status(), TxStatus::Idle);
            let event = tokio::select! {
                biased;
                () = super::shutting_down(&mut self.shutdown) => Event::Shutdown,
                n = recv(&mut self.notifications), if deliver => Event::Notification(n),
                m = self.socket.next() => Event::Message(m),
            };
            match event {
                Event::Shutdown => {
                    let e = SqlError::fatal(
                        "57P01",
                        "terminating connection due to administrator command",
                    );
                    return self.send_error(&e).await;
                }
                Event::Notification(Some(n)) => {
                    self.send(notification(n)).await?;
                    self.socket.flush().await?;
                }
                Event::Notification(None) => self.notifications = None,
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
                    if let Flow::Stop = self.handle(frame).await? {
                        return Ok(());
                    }
                }
            }
        }
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
            while let Some(n) = self
                .notifications
                .as_mut()
                .and_then(|rx| rx.try_recv().ok())
            {
                self.send(notification(n)).await?;
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

async fn recv(rx: &mut Option<mpsc::Receiver<Notification>>) -> Option<Notification> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn notification(n: Notification) -> PgWireBackendMessage {
    PgWireBackendMessage::NotificationResponse(
        pgwire::messages::response::NotificationResponse::new(n.pid, n.channel, n.payload),
    )
}

fn kind_name(m: &PgWireFrontendMessage) -> &'static str {
    match m {
        PgWireFrontendMessage::Startup(_) => "StartupMessage",
        PgWireFrontendMessage::CancelRequest(_) => "CancelRequest",
        PgWireFrontendMessage::SslNegotiation(_) => "SSLRequest",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "PasswordMessage",
        PgWireFrontendMessage::PortalSuspended(_) => "PortalSuspended",
        _ => "type",
    }
}
