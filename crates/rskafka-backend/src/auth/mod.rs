//! SASL for the crate's own group and offset connections: the typed error, `PLAIN`
//! and SCRAM (RFC 5802 / RFC 7677). The exchange itself runs in `group::sasl`.

pub(crate) mod scram;

use crate::SaslMechanism;

/// Why SASL authentication of a group or offset connection failed. Always fatal:
/// retrying with the same credentials cannot succeed. It is the source of the fatal
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
    /// A local failure (no randomness for the nonce, a crypto primitive failed).
    #[error("SASL: {0}")]
    Internal(String),
}

/// The mechanism's name on the wire.
pub(crate) fn mechanism_name(m: SaslMechanism) -> &'static str {
    match m {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
    }
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
    fn names_on_the_wire() {
        assert_eq!(mechanism_name(SaslMechanism::Plain), "PLAIN");
        assert_eq!(mechanism_name(SaslMechanism::ScramSha256), "SCRAM-SHA-256");
        assert_eq!(mechanism_name(SaslMechanism::ScramSha512), "SCRAM-SHA-512");
    }
}
