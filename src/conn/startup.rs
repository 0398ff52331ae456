//! Startup: protocol negotiation, authentication, the session's parameters and BackendKeyData.
//!
//! Runs through pgwire's `StartupHandler` and `AuthDriver`, so an authentication method is an
//! `AuthMechanismFactory`: trust now; SCRAM-SHA-256 is pgwire's `SaslMechanisms` + `ScramAuth`
//! in its place. TLS is negotiated before this (`negotiate_tls`) and only needs an acceptor.
//!
//! ```text
//!   Startup --> negotiate version --> mechanism.begin --(password messages)--> Authenticated
//!     --> engine.new_session(startup parameters)
//!     --> AuthenticationOk, ParameterStatus* (session.parameter_status()), BackendKeyData,
//!         ReadyForQuery
//! ```

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use parking_lot::Mutex;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, AuthDriver, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, PidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use weft_sql::{Engine, Session};

/// Accepts every client without a password (`trust`).
pub struct TrustAuth;

struct TrustMechanism;

#[async_trait]
impl AuthMechanism for TrustMechanism {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        Ok(AuthState::Ok {
            final_message: None,
            identity: None,
        })
    }

    async fn next(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
        _message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        Err(PgWireError::NoAuthenticationInProgress)
    }
}

impl AuthMechanismFactory for TrustAuth {
    fn create(&self) -> Box<dyn AuthMechanism> {
        Box::new(TrustMechanism)
    }
}

/// ParameterStatus values: those of the session created for this connection.
#[derive(Default, Clone)]
struct SessionParameters(Arc<Mutex<Vec<(String, String)>>>);

impl ServerParameterProvider for SessionParameters {
    fn server_parameters<C: ClientInfo>(&self, _client: &C) -> Option<HashMap<String, String>> {
        Some(self.0.lock().iter().cloned().collect())
    }
}

/// The startup of one connection. Holds the session once authentication succeeds.
pub struct Startup {
    engine: Arc<Engine>,
    driver: AuthDriver<SessionParameters>,
    parameters: SessionParameters,
    auth: Arc<dyn AuthMechanismFactory>,
    session: Mutex<Option<Session>>,
}

impl Startup {
    pub fn new(
        engine: Arc<Engine>,
        auth: Arc<dyn AuthMechanismFactory>,
        pids: Arc<dyn PidSecretKeyGenerator>,
    ) -> Self {
        let parameters = SessionParameters::default();
        Startup {
            engine,
            driver: AuthDriver::new(parameters.clone()).with_pid_secret_key_generator(pids),
            parameters,
            auth,
            session: Mutex::new(None),
        }
    }

    /// The session, once startup has completed.
    pub fn take_session(&self) -> Option<Session> {
        self.session.lock().take()
    }

    async fn complete<C>(&self, client: &mut C, outcome: AuthOutcome) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let AuthOutcome::Authenticated { final_message, .. } = outcome else {
            return Ok(());
        };
        let session = self.engine.new_session(client.metadata());
        *self.parameters.0.lock() = session.parameter_status();
        *self.session.lock() = Some(session);
        self.driver
            .complete_authentication(client, final_message)
            .await
    }
}

fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.to_string(),
    )))
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if client.metadata().get("user").is_none_or(|u| u.is_empty()) {
                    return Err(fatal(
                        "28000",
                        "no PostgreSQL user name specified in startup packet",
                    ));
                }
                let outcome = self
                    .driver
                    .begin_authentication(client, self.auth.create())
                    .await?;
                self.complete(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let outcome = self.driver.advance_authentication(client, message).await?;
                self.complete(client, outcome).await
            }
            _ => Err(fatal("08P01", "expected a startup or password message")),
        }
    }
}
