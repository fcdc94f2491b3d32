//! How a consumer secures its broker connections: Kafka's `security.protocol`, SASL
//! and TLS, given once on the shared [`ConsumerConfig`](crate::ConsumerConfig) and
//! mapped by each backend onto its own client (librdkafka properties, or the pure-Rust
//! backend's rustls and SASL).
//!
//! Secrets (passwords, tokens, inline private keys) are held in [`Secret`]: they never
//! appear in `Debug` output, in errors or in logs.

mod oauth;
mod tls;

use std::fmt;
use std::path::Path;

pub use oauth::{OAuthToken, OAuthTokenProvider};
pub use tls::{PemSource, TlsConfig};

use crate::ConfigError;

/// Kafka's `security.protocol`: whether connections use TLS, SASL, both or neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecurityProtocol {
    /// `PLAINTEXT`: plain TCP, no authentication (the default).
    #[default]
    Plaintext,
    /// `SSL`: TLS; with a client certificate, mutual TLS.
    Ssl,
    /// `SASL_PLAINTEXT`: SASL authentication over plain TCP (send `PLAIN` only over
    /// TLS: it shows the password to the network).
    SaslPlaintext,
    /// `SASL_SSL`: SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The value of librdkafka's and Java's `security.protocol` (lower case, as
    /// librdkafka writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether connections are wrapped in TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret string (a password, a token, a private key). `Debug` shows
/// `"<redacted>"`; there is no `Display`, so it cannot end up in a message by
/// accident. Backends read it with [`expose`](Self::expose).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// SASL authentication: the mechanism and what it needs.
///
/// ```
/// use ktm_core::Sasl;
/// let sasl = Sasl::scram_sha512("billing", "s3cret");
/// assert_eq!(sasl.mechanism(), "SCRAM-SHA-512");
/// assert!(!format!("{sasl:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sasl {
    /// `PLAIN` (RFC 4616): the password is sent as is; use it over TLS only.
    Plain {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256 {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `SCRAM-SHA-512`.
    ScramSha512 {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `OAUTHBEARER` (RFC 7628, KIP-255): tokens come from a provider, asked again
    /// before each token expires.
    OAuthBearer(OAuthTokenProvider),
    /// `GSSAPI` (Kerberos). Only the rdkafka backend built with the `rdkafka-gssapi`
    /// feature supports it.
    Gssapi {
        /// `sasl.kerberos.service.name` (the broker's Kerberos principal name, usually
        /// `kafka`).
        service_name: String,
        /// `sasl.kerberos.principal`: this client's principal.
        principal: String,
        /// `sasl.kerberos.keytab`: the keytab file, if the ticket does not come from
        /// the credential cache.
        keytab: Option<std::path::PathBuf>,
    },
}

impl Sasl {
    /// `PLAIN` with `username` and `password`.
    pub fn plain(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::Plain {
            username: username.into(),
            password: password.into(),
        }
    }

    /// `SCRAM-SHA-256` with `username` and `password`.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::ScramSha256 {
            username: username.into(),
            password: password.into(),
        }
    }

    /// `SCRAM-SHA-512` with `username` and `password`.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self::ScramSha512 {
            username: username.into(),
            password: password.into(),
        }
    }

    /// `OAUTHBEARER` with tokens from `provider`.
    pub fn oauth_bearer(provider: OAuthTokenProvider) -> Self {
        Self::OAuthBearer(provider)
    }

    /// `GSSAPI` for this client `principal`, to brokers whose service name is
    /// `service_name`, with the ticket from the credential cache (see
    /// [`Sasl::Gssapi`] for a keytab).
    pub fn gssapi(service_name: impl Into<String>, principal: impl Into<String>) -> Self {
        Self::Gssapi {
            service_name: service_name.into(),
            principal: principal.into(),
            keytab: None,
        }
    }

    /// The mechanism's name on the wire (`sasl.mechanism`): `PLAIN`,
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or `GSSAPI`.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Self::Plain { .. } => "PLAIN",
            Self::ScramSha256 { .. } => "SCRAM-SHA-256",
            Self::ScramSha512 { .. } => "SCRAM-SHA-512",
            Self::OAuthBearer(_) => "OAUTHBEARER",
            Self::Gssapi { .. } => "GSSAPI",
        }
    }

    /// The user name and password of `PLAIN` and SCRAM; `None` for the others.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        match self {
            Self::Plain { username, password }
            | Self::ScramSha256 { username, password }
            | Self::ScramSha512 { username, password } => Some((username, password)),
            Self::OAuthBearer(_) | Self::Gssapi { .. } => None,
        }
    }
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Sasl");
        d.field("mechanism", &self.mechanism());
        match self {
            Self::Plain { username, .. }
            | Self::ScramSha256 { username, .. }
            | Self::ScramSha512 { username, .. } => {
                d.field("username", username)
                    .field("password", &"<redacted>");
            }
            Self::OAuthBearer(provider) => {
                d.field("provider", provider);
            }
            Self::Gssapi {
                service_name,
                principal,
                keytab,
            } => {
                d.field("service_name", service_name)
                    .field("principal", principal)
                    .field("keytab", keytab);
            }
        }
        d.finish()
    }
}

/// Everything about securing broker connections, as Kafka clients configure it:
/// `security.protocol`, the SASL mechanism and its credentials, and TLS.
///
/// ```
/// use ktm_core::{ConsumerConfig, Sasl, SecurityProtocol, TlsConfig};
/// let config = ConsumerConfig::builder()
///     .bootstrap_servers(["broker.example:9093"])
///     .topics(["orders"])
///     .group_id("billing")
///     .security_protocol(SecurityProtocol::SaslSsl)
///     .sasl(Sasl::scram_sha512("billing", "s3cret"))
///     .tls(TlsConfig::new().ca_pem("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"))
///     .build()?;
/// assert_eq!(config.security.protocol, SecurityProtocol::SaslSsl);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), ktm_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Security {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// SASL, required by (and only allowed with) the `SASL_*` protocols.
    pub sasl: Option<Sasl>,
    /// TLS settings, used by the `SSL` and `SASL_SSL` protocols.
    pub tls: TlsConfig,
}

impl Security {
    /// Checks that the parts fit together: SASL exactly with the `SASL_*` protocols,
    /// TLS settings only with a TLS protocol, user names given, certificate files
    /// present, a client certificate only with its key.
    ///
    /// # Errors
    /// [`ConfigError::Security`] naming what does not fit.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| Err(ConfigError::Security { reason });
        match (&self.sasl, self.protocol.uses_sasl()) {
            (None, true) => {
                return bad(format!(
                    "security.protocol {} needs SASL settings",
                    self.protocol
                ))
            }
            (Some(sasl), false) => {
                return bad(format!(
                    "SASL {} is set but security.protocol {} does not use SASL (use sasl_plaintext or sasl_ssl)",
                    sasl.mechanism(),
                    self.protocol
                ))
            }
            _ => {}
        }
        match &self.sasl {
            Some(sasl) if sasl.credentials().is_some_and(|(user, _)| user.is_empty()) => {
                return bad(format!("SASL {}: the user name is empty", sasl.mechanism()));
            }
            Some(Sasl::Gssapi { service_name, .. }) if service_name.is_empty() => {
                return bad("SASL GSSAPI: the Kerberos service name is empty".into());
            }
            _ => {}
        }
        if !self.protocol.uses_tls() && self.tls != TlsConfig::default() {
            return bad(format!(
                "TLS settings are given but security.protocol {} does not use TLS (use ssl or sasl_ssl)",
                self.protocol
            ));
        }
        self.tls.check()?;
        if let Some(Sasl::Gssapi {
            keytab: Some(keytab),
            ..
        }) = &self.sasl
        {
            check_file("Kerberos keytab", keytab)?;
        }
        Ok(())
    }
}

/// A file a setting names must exist when the config is built, not when the first
/// connection is made.
fn check_file(what: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::Security {
            reason: format!("{what} {} is not a readable file", path.display()),
        })
    }
}

#[cfg(test)]
mod tests;
