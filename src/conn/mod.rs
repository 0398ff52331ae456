//! One client connection, from the TCP accept to the last message.
//!
//! ```text
//!   TcpStream --negotiate_tls--> startup (pgwire StartupHandler: auth, session, BackendKeyData)
//!      |                              CancelRequest here: cancel the target session, close
//!      v
//!   registered by pid (cancel + notifications) --> Connection::run (message loop)
//!   (plain TCP: the socket is shared with the fan-out, which writes to it while idle)
//! ```

mod array;
mod codec;
mod connection;
mod copy;
mod decode;
mod encode;
mod error;
mod extended;
mod numeric;
mod oid;
mod registry;
mod rows;
mod simple;
mod startup;
mod stream;

use weft_sql::{float, interval, pgtime};

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::StartupHandler;
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::negotiate_tls;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::{Framed, FramedParts};
use weft_sql::Engine;

pub use registry::{Notification, Registration, Registry, NOTIFICATION_QUEUE};
pub use startup::TrustAuth;

use codec::FrontendCodec;
use connection::Connection;

/// A client that has not finished startup within this time is disconnected.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What every connection of a server shares.
pub struct ConnContext {
    pub engine: Arc<Engine>,
    pub registry: Arc<Registry>,
    /// The authentication method (trust; SCRAM-SHA-256 later).
    pub auth: Arc<dyn AuthMechanismFactory>,
    /// Backend pids and cancel secrets; one generator per server so pids are unique.
    pub pids: Arc<dyn PidSecretKeyGenerator>,
    /// Becomes true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// LISTEN subscriptions and the fan-out of commits to them.
    pub hub: Arc<crate::push::Hub>,
}

/// Serves one client connection to the end. Never panics on client input; errors are logged.
pub async fn serve(tcp: TcpStream, ctx: Arc<ConnContext>) {
    let peer = tcp.peer_addr().ok();
    if let Err(e) = serve_inner(tcp, &ctx).await {
        tracing::debug!(?peer, error = %e, "connection ended with an I/O error");
    }
}

async fn serve_inner(tcp: TcpStream, ctx: &ConnContext) -> io::Result<()> {
    // As PostgreSQL does: a message goes out when written, not when the client has
    // acknowledged the previous one (Nagle would hold a notification until the listener's ACK).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(deadline);
    let negotiated = tokio::select! {
        _ = &mut deadline => return Ok(()),
        s = negotiate_tls::<()>(tcp, None) => s?,
    };
    // None: a direct TLS handshake, and no TLS is configured.
    let Some(mut socket) = negotiated else {
        return Ok(());
    };

    let startup = startup::Startup::new(
        Arc::clone(&ctx.engine),
        Arc::clone(&ctx.auth),
        Arc::clone(&ctx.pids),
    );
    while !matches!(socket.state(), PgWireConnectionState::ReadyForQuery) {
        let message = tokio::select! {
            _ = &mut deadline => return Ok(()),
            m = socket.next() => m,
        };
        let message = match message {
            None => return Ok(()),
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let info = fatal_info(e.into());
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                return Ok(());
            }
        };
        match message {
            PgWireFrontendMessage::CancelRequest(cancel) => {
                // PostgreSQL answers a CancelRequest with nothing but closing the connection.
                if !ctx.registry.cancel(cancel.pid, &cancel.secret_key) {
                    tracing::debug!(pid = cancel.pid, "cancel request matched no session");
                }
                return Ok(());
            }
            PgWireFrontendMessage::Terminate(_) => return Ok(()),
            PgWireFrontendMessage::SslNegotiation(_) => {}
            message => {
                if let Err(e) = startup.on_startup(&mut socket, message).await {
                    let info = fatal_info(e.into());
                    tracing::debug!(code = %info.code, message = %info.message, "startup failed");
                    let _ = socket
                        .send(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await;
                    return Ok(());
                }
            }
        }
    }
    let Some(session) = startup.take_session() else {
        return Ok(());
    };
    let (pid, secret) = socket.pid_and_secret_key();
    let mut session = session;
    session.set_backend_pid(pid);
    let (registration, mailbox) = ctx.registry.register(pid, secret, session.cancel_handle());
    session.set_listen_target(Arc::new(crate::push::Subscriber {
        hub: Arc::clone(&ctx.hub),
        pid,
        mailbox: Arc::clone(&mailbox),
    }));
    tracing::debug!(pid, "connection ready");

    // From here on our own codec frames messages; it keeps pgwire's for the message bodies.
    let parts = socket.into_parts();
    let io = stream::ConnIo::new(parts.io);
    if let Some(tcp) = io.shared_tcp() {
        mailbox.attach(tcp);
    }
    let mut new_parts = FramedParts::new(io, FrontendCodec::new(parts.codec));
    new_parts.read_buf = parts.read_buf;
    new_parts.write_buf = parts.write_buf;
    let socket = Framed::from_parts(new_parts);
    Connection::new(
        socket,
        session,
        (pid, mailbox, Arc::clone(&ctx.hub)),
        ctx.shutdown.clone(),
    )
    .run()
    .await;
    drop(registration);
    Ok(())
}

/// Resolves once the server is shutting down (or gone). Holds no watch guard across awaits.
pub async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Every error during startup ends the connection.
fn fatal_info(mut info: ErrorInfo) -> ErrorInfo {
    info.severity = error::SEVERITY_FATAL.to_string();
    info.severity_nonlocalized = Some(error::SEVERITY_FATAL.to_string());
    info
}
