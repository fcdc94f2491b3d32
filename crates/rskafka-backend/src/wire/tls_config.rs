//! The rustls configuration of the broker connections, made once from the shared
//! [`TlsConfig`] when the source is built: the CAs to trust (the given PEM, else the
//! system's), the client certificate of mutual TLS, and the host name check.

use std::sync::Arc;

use ktm_core::{ConfigError, PemSource, Security, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// The rustls configuration for `security`: `None` when it does not use TLS;
/// `custom` (from [`rustls_config`](crate::RskafkaSourceBuilder::rustls_config)) when
/// given.
pub(crate) fn for_security(
    security: &Security,
    custom: Option<Arc<ClientConfig>>,
) -> Result<Option<Arc<ClientConfig>>, ConfigError> {
    if !security.protocol.uses_tls() {
        return match custom {
            Some(_) => Err(bad(format!(
                "a rustls configuration is given but security.protocol {} does not use TLS",
                security.protocol
            ))),
            None => Ok(None),
        };
    }
    match custom {
        Some(config) => Ok(Some(config)),
        None => client_config(&security.tls).map(|c| Some(Arc::new(c))),
    }
}

fn client_config(tls: &TlsConfig) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(root_store(tls)?);
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?;
    let builder = if tls.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| bad(format!("TLS CA certificates: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(verifier)))
    };
    match (&tls.client_certificate, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates("TLS client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read("TLS client key", key)?)
                .map_err(|e| bad(format!("TLS client key: not a PEM private key ({e})")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("TLS client certificate and key: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The configured CA certificates, or the system's when none are configured.
fn root_store(tls: &TlsConfig) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            for cert in certificates("TLS CA", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("TLS CA certificate: {e}")))?;
            }
        }
        None => {
            // As librdkafka (OpenSSL's default paths) and Java (the JDK's cacerts):
            // the platform's trust store. Unreadable entries are skipped, as there.
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(bad(
                    "TLS: no CA certificate given and none found in the system's trust store"
                        .into(),
                ));
            }
        }
    }
    Ok(roots)
}

fn certificates(
    what: &str,
    source: &PemSource,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(what, source)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{what}: not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad(format!("{what}: no certificate in the PEM")));
    }
    Ok(certs)
}

/// The PEM bytes of `source` (never shown in errors: they may be a private key).
fn read(what: &str, source: &PemSource) -> Result<Vec<u8>, ConfigError> {
    match source {
        PemSource::File(path) => {
            std::fs::read(path).map_err(|e| bad(format!("{what} file {}: {e}", path.display())))
        }
        PemSource::Inline(pem) => Ok(pem.expose().as_bytes().to_vec()),
        _ => Err(bad(format!(
            "{what}: this kind of PEM source is not supported"
        ))),
    }
}

fn bad(reason: String) -> ConfigError {
    ConfigError::Security { reason }
}

/// `ssl.endpoint.identification.algorithm=none`: the certificate chain is still
/// checked against the trusted CAs, only the name in it is not compared with the
/// host connected to.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
