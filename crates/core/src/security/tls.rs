//! TLS settings: the CA to trust, the client certificate of mutual TLS, and whether
//! the broker's host name is checked.

use std::fmt;
use std::path::PathBuf;

use super::{check_file, Secret};
use crate::ConfigError;

/// Where a PEM document comes from: a file (read when the consumer is built), or the
/// text itself (for secrets mounted into environment variables).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemSource {
    /// A PEM file (librdkafka's `ssl.*.location`).
    File(PathBuf),
    /// PEM text (librdkafka's `ssl.*.pem`). Shown as `<inline PEM>` by `Debug`, since
    /// it may be a private key.
    Inline(Secret),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Inline(_) => f.write_str("Inline(<inline PEM>)"),
        }
    }
}

/// TLS settings of the `SSL` and `SASL_SSL` protocols.
///
/// The default trusts the system's CA certificates, checks the broker's host name
/// (`ssl.endpoint.identification.algorithm=https`, the default of Kafka 2.0+ and
/// librdkafka 1.x+) and presents no client certificate.
///
/// ```
/// use ktm_core::TlsConfig;
/// let tls = TlsConfig::new()
///     .ca_file("/etc/kafka/ca.pem")
///     .client_certificate_files("/etc/kafka/client.pem", "/etc/kafka/client.key");
/// assert!(tls.verify_hostname);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The CA certificates that sign the brokers' certificates; `None`: the
    /// system's.
    pub ca: Option<PemSource>,
    /// This client's certificate chain, for brokers that require mutual TLS.
    pub client_certificate: Option<PemSource>,
    /// The private key of [`client_certificate`](Self::client_certificate)
    /// (unencrypted PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PemSource>,
    /// Whether the broker's certificate must name the host connected to. Turn it off
    /// only for brokers whose certificates name no usable host.
    pub verify_hostname: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: None,
            client_certificate: None,
            client_key: None,
            verify_hostname: true,
        }
    }
}

impl TlsConfig {
    /// The defaults: the system's CAs, host names checked, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust the CA certificates in this PEM file (instead of the system's).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(PemSource::File(path.into()));
        self
    }

    /// Trust the CA certificates in this PEM text (instead of the system's).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca = Some(PemSource::Inline(Secret::new(pem)));
        self
    }

    /// Present this certificate chain and key (PEM files) for mutual TLS.
    pub fn client_certificate_files(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some(PemSource::File(certificate.into()));
        self.client_key = Some(PemSource::File(key.into()));
        self
    }

    /// Present this certificate chain and key (PEM text) for mutual TLS.
    pub fn client_certificate_pem(
        mut self,
        certificate: impl Into<String>,
        key: impl Into<Secret>,
    ) -> Self {
        self.client_certificate = Some(PemSource::Inline(Secret::new(certificate)));
        self.client_key = Some(PemSource::Inline(key.into()));
        self
    }

    /// Whether the broker's certificate must name the host connected to (default
    /// `true`).
    pub fn verify_hostname(mut self, verify: bool) -> Self {
        self.verify_hostname = verify;
        self
    }

    /// A client certificate comes with its key, and the files named exist.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.client_certificate.is_some() != self.client_key.is_some() {
            return Err(ConfigError::Security {
                reason: "a TLS client certificate needs its private key, and a key its certificate"
                    .into(),
            });
        }
        for (what, source) in [
            ("TLS CA file", &self.ca),
            ("TLS client certificate file", &self.client_certificate),
            ("TLS client key file", &self.client_key),
        ] {
            if let Some(PemSource::File(path)) = source {
                check_file(what, path)?;
            }
        }
        Ok(())
    }
}
