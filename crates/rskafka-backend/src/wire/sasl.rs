//! SASL on a freshly opened group or offset connection: SaslHandshake v1, then
//! SaslAuthenticate exchanges (the highest version the broker serves, up to v2) for
//! `PLAIN` or SCRAM.

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::conn::{Conn, ConnError};
use crate::auth::scram::{ScramClient, ScramHash};
use crate::auth::{mechanism_name, plain_message, AuthError};
use crate::{SaslCredentials, SaslMechanism};

/// Authenticates `conn` with `credentials`.
pub(super) async fn authenticate(
    conn: &mut Conn,
    credentials: &SaslCredentials,
) -> Result<(), ConnError> {
    let mechanism = mechanism_name(credentials.mechanism());
    let addr = conn.addr().to_owned();
    let auth = |source: AuthError| ConnError::Auth {
        addr: addr.clone(),
        source,
    };
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let response = conn.send(&request).await?;
    if response.error_code != 0 {
        let offered = response
            .mechanisms
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect();
        return Err(auth(
            match ResponseError::try_from_code(response.error_code) {
                Some(ResponseError::UnsupportedSaslMechanism) | None => {
                    AuthError::MechanismNotSupported { mechanism, offered }
                }
                Some(e) => AuthError::Rejected {
                    mechanism,
                    message: format!("SaslHandshake: {e:?}"),
                },
            },
        ));
    }
    let user = credentials.username();
    let password = credentials.password();
    match credentials.mechanism() {
        SaslMechanism::Plain => {
            step(conn, mechanism, plain_message(user, password)).await?;
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let hash = if credentials.mechanism() == SaslMechanism::ScramSha256 {
                ScramHash::Sha256
            } else {
                ScramHash::Sha512
            };
            let client = ScramClient::new(hash, user, password).map_err(auth)?;
            let first = client.client_first().into_bytes();
            let server_first = step(conn, mechanism, first).await?;
            let (client_final, fin) = client.client_final(&server_first).map_err(auth)?;
            let server_final = step(conn, mechanism, client_final.into_bytes()).await?;
            fin.verify(&server_final).map_err(auth)?;
        }
    }
    debug!(broker = %conn.addr(), %mechanism, user, "SASL authenticated");
    Ok(())
}

/// One SaslAuthenticate round trip: sends `bytes`, returns the broker's bytes.
async fn step(
    conn: &mut Conn,
    mechanism: &'static str,
    bytes: Vec<u8>,
) -> Result<Bytes, ConnError> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let response = conn.send(&request).await?;
    if response.error_code != 0 {
        let code = ResponseError::try_from_code(response.error_code).map_or_else(
            || format!("error {}", response.error_code),
            |e| format!("{e:?}"),
        );
        let message = match &response.error_message {
            Some(m) if !m.is_empty() => format!("{code}: {}", m.as_str()),
            _ => code,
        };
        return Err(ConnError::Auth {
            addr: conn.addr().to_owned(),
            source: AuthError::Rejected { mechanism, message },
        });
    }
    Ok(response.auth_bytes)
}
