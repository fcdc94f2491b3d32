//! TLS in front of a plaintext broker: test certificates made at run time (rcgen), and
//! a TLS-terminating proxy (tokio-rustls) that forwards each connection to the broker.
//! Tansu 0.6 cannot serve TLS itself (its CLI refuses `--cert` with `--key`), so the
//! broker is started advertising the proxy's address: every client connection, the
//! bootstrap one and those to the advertised broker, goes through the proxy.

use std::net::TcpListener;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;

/// A CA, a server certificate for `localhost` signed by it, and a client certificate
/// signed by it, all PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestPki {
    /// Fresh material. The server certificate names `localhost` only, so a client that
    /// connects to `127.0.0.1` meets a certificate for another name.
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ktm test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) = leaf(
            vec!["ktm-client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Self {
            ca_pem: ca_cert.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        }
    }

    /// The proxy's TLS settings: this server certificate, and client certificates
    /// signed by the CA required when `require_client_certificate`.
    pub fn server_config(&self, require_client_certificate: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_certificate {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).expect("CA PEM"))
                .expect("CA root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = vec![
            CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).expect("cert PEM"),
        ];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("key PEM");
        Arc::new(builder.with_single_cert(chain, key).expect("server config"))
    }
}

/// The proxy: accepts TLS on its port and copies bytes both ways to the broker.
/// Handshakes it refuses (an unknown client certificate, say) end the connection.
/// It stops when dropped.
pub struct TlsProxy {
    pub port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsProxy {
    /// A port for a proxy to be started on: bound now, so the broker can advertise it
    /// before the proxy runs.
    pub fn reserve() -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        listener.set_nonblocking(true).expect("nonblocking");
        listener
    }

    /// Serves TLS on `listener`, forwarding to `broker` (`host:port`).
    pub fn start(listener: TcpListener, broker: String, config: Arc<ServerConfig>) -> Self {
        let port = listener.local_addr().expect("proxy address").port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let broker = broker.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut upstream) = TcpStream::connect(&broker).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        Self {
            port,
            _runtime: runtime,
        }
    }

    /// The address clients use: `localhost`, the name in the server certificate.
    pub fn address(&self) -> String {
        format!("localhost:{}", self.port)
    }
}
