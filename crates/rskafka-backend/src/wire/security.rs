//! Which of the shared security settings this backend can honour, checked when the
//! source (or a dead-letter producer) is built.

use ktm_core::{ConfigError, Sasl, Security};

use crate::BACKEND;

/// Refuses what this backend cannot do: GSSAPI (Kerberos needs a C library), and TLS
/// without the `tls` feature.
pub(crate) fn check_supported(security: &Security) -> Result<(), ConfigError> {
    let unsupported = |message: &str| {
        Err(ConfigError::Backend {
            backend: BACKEND,
            message: message.to_owned(),
        })
    };
    match &security.sasl {
        None
        | Some(Sasl::Plain { .. })
        | Some(Sasl::ScramSha256 { .. })
        | Some(Sasl::ScramSha512 { .. })
        | Some(Sasl::OAuthBearer(_)) => {}
        Some(Sasl::Gssapi { .. }) => {
            return unsupported(
                "SASL GSSAPI (Kerberos) is not supported by the rskafka backend; use the rdkafka backend with the `rdkafka-gssapi` feature",
            )
        }
        Some(other) => {
            return unsupported(&format!(
                "SASL {} is not supported by the rskafka backend",
                other.mechanism()
            ))
        }
    }
    if security.protocol.uses_tls() && !cfg!(feature = "tls") {
        return unsupported(
            "security.protocol ssl and sasl_ssl need TLS: enable the `rskafka-tls` feature of kafka-thread-manager (ktm-rskafka's `tls`)",
        );
    }
    Ok(())
}
