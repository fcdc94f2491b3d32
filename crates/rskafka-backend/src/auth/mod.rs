//! Authenticating the crate's connections: the typed SASL and TLS errors, the `PLAIN`
//! and `OAUTHBEARER` messages, and SCRAM (RFC 5802 / RFC 7677). The exchange itself
//! runs in `wire::sasl`, the handshake in `wire::transport`.

pub(crate) mod scram;

/// Why SASL authentication of a connection failed. Fatal (retrying with the same
/// credentials cannot succeed), except [`AuthError::TokenUnavailable`]. It is the source of the fatal
/// [`ktm_core::SourceError`] that `poll` reports (walk the error's `source()` chain to
/// find it). It never contains the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The broker does not offer the configured mechanism.
    #[error("the broker does not support SASL mechanism {mechanism}; it offers {offered:?}")]
    MechanismNotSupported {
        /// The configured mechanism.
        mechanism: &'static str,
        /// The mechanisms the broker offers.
        offered: Vec<String>,
    },
    /// The broker refused the credentials (wrong user name or password, or the user
    /// may not use this mechanism).
    #[error("SASL {mechanism} authentication failed: {message}")]
    Rejected {
        /// The mechanism used.
        mechanism: &'static str,
        /// What the broker said.
        message: String,
    },
    /// The broker could not prove that it knows the password (SCRAM): it is not the
    /// broker it claims to be.
    #[error("SASL {mechanism}: the broker's server signature does not match")]
    ServerSignatureMismatch {
        /// The mechanism used.
        mechanism: &'static str,
    },
    /// The broker's SCRAM message is malformed or unacceptable.
    #[error("SASL: invalid message from the broker: {0}")]
    InvalidServerMessage(String),
    /// The `OAUTHBEARER` token provider failed: transient, it is asked again at the
    /// next connection attempt.
    #[error("SASL OAUTHBEARER: no token from the provider: {message}")]
    TokenUnavailable {
        /// The provider's error.
        message: String,
    },
    /// A local failure (no randomness for the nonce, a crypto primitive failed).
    #[error("SASL: {0}")]
    Internal(String),
}

impl AuthError {
    /// Whether retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::TokenUnavailable { .. })
    }
}

/// Why a TLS handshake with a broker failed. Fatal, except [`TlsError::Io`]: the
/// same certificate and settings fail the same way on every retry (Java's
/// `SslAuthenticationException`). It is the source of the [`ktm_core::SourceError`]
/// that `poll` reports (walk the error's `source()` chain to find it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The broker's certificate is not signed by a trusted CA.
    #[error("the broker's certificate is not signed by a trusted CA (unknown issuer)")]
    UnknownIssuer,
    /// The broker's certificate does not name the host connected to.
    #[error("the broker's certificate is not valid for the host name {host:?}")]
    NotValidForName {
        /// The host connected to.
        host: String,
    },
    /// The broker's certificate was refused for another reason (expired, not yet
    /// valid, revoked, malformed).
    #[error("the broker's certificate was refused: {reason}")]
    BadCertificate {
        /// rustls's reason.
        reason: String,
    },
    /// The broker ended the handshake with an alert (for example it requires a
    /// client certificate, or refused ours).
    #[error("the broker refused the TLS handshake: alert {alert}")]
    Refused {
        /// The alert received.
        alert: String,
    },
    /// The handshake failed otherwise (no common protocol version or cipher suite).
    #[error("TLS handshake failed: {message}")]
    Handshake {
        /// rustls's message.
        message: String,
    },
    /// The connection failed during the handshake: transient.
    #[error("TLS handshake interrupted: {0}")]
    Io(#[source] std::io::Error),
}

impl TlsError {
    /// Whether retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

/// The `OAUTHBEARER` initial client response (RFC 7628 section 3.1, as KIP-255 and
/// KIP-342 use it): `n,,\x01auth=Bearer <token>\x01` then `key=value\x01` per
/// extension, then `\x01`.
pub(crate) fn oauth_bearer_message(token: &str, extensions: &[(String, String)]) -> Vec<u8> {
    let mut m = format!("n,,\x01auth=Bearer {token}\x01");
    for (key, value) in extensions {
        m.push_str(key);
        m.push('=');
        m.push_str(value);
        m.push('\x01');
    }
    m.push('\x01');
    m.into_bytes()
}

/// The `PLAIN` message (RFC 4616) with an empty authorization id:
/// `\0user\0password`.
pub(crate) fn plain_message(user: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(user.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_nul_user_nul_password() {
        assert_eq!(plain_message("alice", "pw"), b"\0alice\0pw");
        assert_eq!(plain_message("", ""), b"\0\0");
    }

    #[test]
    fn oauth_bearer_is_the_gs2_header_the_token_and_the_extensions() {
        assert_eq!(
            oauth_bearer_message("abc.def", &[]),
            b"n,,\x01auth=Bearer abc.def\x01\x01"
        );
        let ext = [("traceId".to_owned(), "42".to_owned())];
        assert_eq!(
            oauth_bearer_message("t", &ext),
            b"n,,\x01auth=Bearer t\x01traceId=42\x01\x01"
        );
    }
}
