//! The byte stream under a group or offset connection: TCP, or TLS over TCP (feature
//! `tls`), and the security settings it is opened with.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::conn::ConnError;
use ktm_core::Sasl;

/// A duplex byte stream to a broker.
pub(crate) trait BrokerStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> BrokerStream for T {}

/// A boxed [`BrokerStream`].
pub(crate) type BoxStream = Box<dyn BrokerStream>;

/// How group and offset connections secure themselves: the same SASL and TLS
/// settings as rskafka's connections.
#[derive(Clone, Default)]
pub(crate) struct Security {
    /// Authenticate with SASL after connecting.
    pub(crate) sasl: Option<Sasl>,
    /// Wrap the TCP stream in TLS with this configuration.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Security {
    /// The settings of `config`'s connections.
    pub(crate) fn of(config: &crate::RskafkaConfig) -> Self {
        Self {
            sasl: config.consumer.security.sasl.clone(),
            #[cfg(feature = "tls")]
            tls: config.tls.clone(),
        }
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Security");
        d.field("sasl", &self.sasl);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

/// Opens TCP to `addr` (`host:port`) within `timeout`, then TLS if configured (the
/// handshake within `timeout` too).
pub(crate) async fn open(
    addr: &str,
    security: &Security,
    timeout: Duration,
) -> Result<BoxStream, ConnError> {
    let timed_out = || ConnError::Timeout {
        addr: addr.to_owned(),
        after: timeout,
    };
    let io = |source| ConnError::Io {
        addr: addr.to_owned(),
        source,
    };
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())?
        .map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    #[cfg(feature = "tls")]
    if let Some(config) = &security.tls {
        let tls = tokio::time::timeout(timeout, tls::connect(addr, config, tcp))
            .await
            .map_err(|_| timed_out())??;
        return Ok(tls);
    }
    #[cfg(not(feature = "tls"))]
    let _ = security;
    Ok(Box::new(tcp))
}

/// The host part of `host:port` (without the brackets of an IPv6 literal).
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(feature = "tls")]
pub(crate) use tls::rustls_failure;

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::CertificateError;
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;

    use super::{host_of, BoxStream, ConnError};
    use crate::TlsError;

    /// The TLS handshake over `tcp`, checking the certificate against the host of
    /// `addr`.
    pub(super) async fn connect(
        addr: &str,
        config: &Arc<rustls::ClientConfig>,
        tcp: TcpStream,
    ) -> Result<BoxStream, ConnError> {
        let host = host_of(addr);
        let tls_error = |source| ConnError::Tls {
            addr: addr.to_owned(),
            source,
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            tls_error(TlsError::Handshake {
                message: format!("{host:?} is not a valid server name: {e}"),
            })
        })?;
        let stream = TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(rustls_failure(host, e).unwrap_or_else(TlsError::Io)))?;
        Ok(Box::new(stream))
    }

    /// What a TLS failure says, when `e` carries rustls's reason (the broker's
    /// certificate refused, or an alert from the broker); `e` itself otherwise.
    pub(crate) fn rustls_failure(
        host: &str,
        e: std::io::Error,
    ) -> Result<TlsError, std::io::Error> {
        let Some(reason) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return Err(e);
        };
        Ok(match reason {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                TlsError::UnknownIssuer
            }
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => TlsError::NotValidForName {
                host: host.to_owned(),
            },
            rustls::Error::InvalidCertificate(other) => TlsError::BadCertificate {
                reason: other.to_string(),
            },
            rustls::Error::AlertReceived(alert) => TlsError::Refused {
                alert: format!("{alert:?}"),
            },
            other => TlsError::Handshake {
                message: other.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_addresses() {
        assert_eq!(host_of("broker.example:9093"), "broker.example");
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("nohost"), "nohost");
    }
}
