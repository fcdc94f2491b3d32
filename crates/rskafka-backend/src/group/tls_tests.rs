//! TLS on the group connections, against the fake broker of `sasl_tests` serving TLS
//! with a test CA's certificate for 127.0.0.1 (`tests/data`, test-only keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::coordinator::connect_coordinator;
use super::sasl_tests::{settings, Fake};
use ktm_core::Sasl;

const CA: &[u8] = include_bytes!("../../tests/data/ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("../../tests/data/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("../../tests/data/server.key");

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn acceptor() -> tokio_rustls::TlsAcceptor {
    let certs = vec![CertificateDer::from_pem_slice(SERVER_CERT).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn client_config(trust_ca: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if trust_ca {
        roots
            .add(CertificateDer::from_pem_slice(CA).unwrap())
            .unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn tls_fake() -> (Fake, String) {
    let mut fake = Fake::new(&["SCRAM-SHA-512"]);
    fake.tls = Some(acceptor());
    let addr = fake.clone().start().await;
    (fake, addr)
}

#[tokio::test]
async fn scram_runs_over_tls() {
    let (fake, addr) = tls_fake().await;
    let creds = Sasl::scram_sha512("alice", "right-pw");
    let mut s = settings(vec![addr], creds);
    s.security.tls = Some(client_config(true));
    connect_coordinator(&s).await.unwrap();
    let seen = fake.seen();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("connect"),
        "{seen:?}"
    );
    assert!(seen.contains(&"find-coordinator".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_fatal() {
    let (fake, addr) = tls_fake().await;
    let creds = Sasl::scram_sha512("alice", "right-pw");
    let mut s = settings(vec![addr], creds);
    s.security.tls = Some(client_config(false));
    let e = connect_coordinator(&s).await.unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(!e.into_source_error("joining").is_transient());
    assert!(!fake.seen().contains(&"connect".to_owned()));
}

#[tokio::test]
async fn a_certificate_for_another_name_is_fatal() {
    let (_fake, addr) = tls_fake().await;
    let port = addr.rsplit_once(':').unwrap().1;
    let creds = Sasl::scram_sha512("alice", "right-pw");
    // The certificate names 127.0.0.1 only.
    let mut s = settings(vec![format!("localhost:{port}")], creds);
    s.security.tls = Some(client_config(true));
    let e = connect_coordinator(&s).await.unwrap_err();
    assert!(e.is_fatal(), "{e}");
}
