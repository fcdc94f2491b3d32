//! SASL on a freshly opened connection: SaslHandshake v1, then SaslAuthenticate
//! exchanges (the highest version the broker serves, up to v2) for `PLAIN`, SCRAM or
//! `OAUTHBEARER`.

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::debug;

use super::conn::{Conn, ConnError};
use crate::auth::scram::{ScramClient, ScramHash};
use crate::auth::{oauth_bearer_message, plain_message, AuthError};
use ktm_core::{OAuthTokenProvider, Sasl};

/// Authenticates `conn` with `sasl`.
pub(super) async fn authenticate(conn: &mut Conn, sasl: &Sasl) -> Result<(), ConnError> {
    let mechanism = sasl.mechanism();
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
    let principal = match sasl {
        Sasl::Plain { username, password } => {
            step(conn, mechanism, plain_message(username, password.expose())).await?;
            username.clone()
        }
        Sasl::ScramSha256 { username, password } | Sasl::ScramSha512 { username, password } => {
            let hash = if matches!(sasl, Sasl::ScramSha256 { .. }) {
                ScramHash::Sha256
            } else {
                ScramHash::Sha512
            };
            let client = ScramClient::new(hash, username, password.expose()).map_err(auth)?;
            let first = client.client_first().into_bytes();
            let server_first = step(conn, mechanism, first).await?;
            let (client_final, fin) = client.client_final(&server_first).map_err(auth)?;
            let server_final = step(conn, mechanism, client_final.into_bytes()).await?;
            fin.verify(&server_final).map_err(auth)?;
            username.clone()
        }
        Sasl::OAuthBearer(provider) => {
            let token = fetch_token(provider).await.map_err(auth)?;
            let message = oauth_bearer_message(token.value.expose(), &token.extensions);
            let challenge = step(conn, mechanism, message).await?;
            if !challenge.is_empty() {
                // RFC 7628 3.2.2: a refused token gets an error challenge (JSON), which
                // the client acknowledges with a lone 0x01 before the failure comes.
                let details = String::from_utf8_lossy(&challenge).into_owned();
                let refusal = match step(conn, mechanism, vec![0x01]).await {
                    Err(ConnError::Auth {
                        source: AuthError::Rejected { message, .. },
                        ..
                    }) => message,
                    Err(e) => return Err(e),
                    Ok(_) => "token refused".to_owned(),
                };
                return Err(auth(AuthError::Rejected {
                    mechanism,
                    message: format!("{refusal}: {details}"),
                }));
            }
            token.principal
        }
        other => {
            return Err(auth(AuthError::Internal(format!(
                "SASL {} is not supported by this backend",
                other.mechanism()
            ))))
        }
    };
    debug!(broker = %conn.addr(), %mechanism, %principal, "SASL authenticated");
    Ok(())
}

/// A token from the user's provider, which may block (an HTTP call to the identity
/// provider): it runs on the blocking pool.
async fn fetch_token(provider: &OAuthTokenProvider) -> Result<ktm_core::OAuthToken, AuthError> {
    let provider = provider.clone();
    let unavailable = |message: String| AuthError::TokenUnavailable { message };
    tokio::task::spawn_blocking(move || provider.token())
        .await
        .map_err(|e| unavailable(format!("the token provider panicked: {e}")))?
        .map_err(|e| unavailable(e.to_string()))
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
