//! SASL against a fake in-process broker that speaks SaslHandshake, SaslAuthenticate
//! and FindCoordinator (no real SASL broker is available to the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FindCoordinatorRequest, FindCoordinatorResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::coordinator::{connect_coordinator, GroupError, GroupSettings};
use super::Assignor;
use crate::auth::scram::{h, hmac, Keys, ScramHash};
use crate::auth::AuthError;
use crate::wire::fake::{api_versions, read_request, respond};
use crate::wire::transport::Security;
use ktm_core::Sasl;

const SALT: &[u8] = b"ktm-test-salt";
const ITERATIONS: u32 = 4096;

/// What the fake broker accepts, and what it saw.
#[derive(Clone)]
pub(super) struct Fake {
    mechanisms: Vec<&'static str>,
    user: &'static str,
    password: &'static str,
    /// Answer SCRAM with a server signature computed from a wrong password.
    forge_signature: bool,
    /// Serve TLS with this acceptor.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    pub(super) fn new(mechanisms: &[&'static str]) -> Self {
        Self {
            mechanisms: mechanisms.to_vec(),
            user: "alice",
            password: "right-pw",
            forge_signature: false,
            #[cfg(feature = "tls")]
            tls: None,
            log: Arc::default(),
        }
    }

    fn log(&self, entry: impl Into<String>) {
        self.log.lock().unwrap().push(entry.into());
    }

    pub(super) fn seen(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Listens on a free port and serves every connection; returns its address.
    pub(super) async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let me = addr.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                #[cfg(feature = "tls")]
                if let Some(acceptor) = &self.tls {
                    let (acceptor, fake, me) = (acceptor.clone(), self.clone(), me.clone());
                    tokio::spawn(async move {
                        match acceptor.accept(stream).await {
                            Ok(tls) => fake.serve(tls, me).await,
                            Err(e) => fake.log(format!("tls refused: {e}")),
                        }
                    });
                    continue;
                }
                tokio::spawn(self.clone().serve(stream, me.clone()));
            }
        });
        addr
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(self, mut stream: S, me: String) {
        self.log("connect");
        let mut mechanism = String::new();
        let mut authenticated = false;
        // SCRAM state: client-first-bare and server-first.
        let mut scram: Option<(String, String)> = None;
        loop {
            let Some((header, mut buf)) = read_request(&mut stream).await else {
                return;
            };
            let v = header.request_api_version;
            let mut out = BytesMut::new();
            match ApiKey::try_from(header.request_api_key).unwrap() {
                ApiKey::ApiVersions => {
                    let _ = ApiVersionsRequest::decode(&mut buf, v).unwrap();
                    self.log("api-versions");
                    let served = [
                        (ApiKey::SaslHandshake, 0, 1),
                        (ApiKey::SaslAuthenticate, 0, 2),
                        (ApiKey::FindCoordinator, 0, 3),
                    ];
                    respond(&mut out, header.correlation_id, &api_versions(&served), v);
                }
                ApiKey::SaslHandshake => {
                    let req = SaslHandshakeRequest::decode(&mut buf, v).unwrap();
                    mechanism = req.mechanism.as_str().to_owned();
                    self.log(format!("handshake v{v} {mechanism}"));
                    let ok = self.mechanisms.contains(&mechanism.as_str());
                    let code = if ok {
                        0
                    } else {
                        ResponseError::UnsupportedSaslMechanism.code()
                    };
                    let resp = SaslHandshakeResponse::default()
                        .with_error_code(code)
                        .with_mechanisms(
                            self.mechanisms
                                .iter()
                                .map(|m| StrBytes::from_static_str(m))
                                .collect(),
                        );
                    respond(&mut out, header.correlation_id, &resp, v);
                }
                ApiKey::SaslAuthenticate => {
                    let req = SaslAuthenticateRequest::decode(&mut buf, v).unwrap();
                    self.log(format!("authenticate v{v}"));
                    let (reply, ok) = self.authenticate(&mechanism, &req.auth_bytes, &mut scram);
                    let resp = match (ok, reply) {
                        (false, _) => SaslAuthenticateResponse::default()
                            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_static_str(
                                "Invalid username or password",
                            ))),
                        (true, reply) => {
                            SaslAuthenticateResponse::default().with_auth_bytes(reply.into())
                        }
                    };
                    if ok && scram.is_none() {
                        authenticated = true;
                        self.log("authenticated");
                    }
                    respond(&mut out, header.correlation_id, &resp, v);
                }
                ApiKey::FindCoordinator if authenticated => {
                    let _ = FindCoordinatorRequest::decode(&mut buf, v).unwrap();
                    self.log("find-coordinator");
                    let (host, port) = me.rsplit_once(':').unwrap();
                    let resp = FindCoordinatorResponse::default()
                        .with_host(StrBytes::from_string(host.to_owned()))
                        .with_port(port.parse().unwrap());
                    respond(&mut out, header.correlation_id, &resp, v);
                }
                other => {
                    self.log(format!("refused {other:?}"));
                    return;
                }
            }
            stream.write_all(&out).await.unwrap();
            stream.flush().await.unwrap();
        }
    }

    /// One SaslAuthenticate step: (reply bytes, accepted).
    fn authenticate(
        &self,
        mechanism: &str,
        bytes: &[u8],
        scram: &mut Option<(String, String)>,
    ) -> (Vec<u8>, bool) {
        if mechanism == "PLAIN" {
            let expected = format!("\0{}\0{}", self.user, self.password);
            return (Vec::new(), bytes == expected.as_bytes());
        }
        if mechanism == "OAUTHBEARER" {
            // The password is the one valid token. A refused token gets Kafka's error
            // challenge first; the client's lone 0x01 then gets the failure.
            if scram.take().is_some() {
                return (Vec::new(), false);
            }
            let expected = format!("n,,\x01auth=Bearer {}\x01\x01", self.password);
            if bytes == expected.as_bytes() {
                return (Vec::new(), true);
            }
            *scram = Some(("oauth".into(), "refused".into()));
            return (br#"{"status":"invalid_token"}"#.to_vec(), true);
        }
        let hash = if mechanism == "SCRAM-SHA-256" {
            ScramHash::Sha256
        } else {
            ScramHash::Sha512
        };
        let msg = std::str::from_utf8(bytes).unwrap();
        match scram.take() {
            None => {
                let bare = msg.strip_prefix("n,,").unwrap().to_owned();
                let nonce = bare.split(",r=").nth(1).unwrap();
                assert_eq!(bare, format!("n={},r={nonce}", self.user));
                let first = format!("r={nonce}server,s={},i={ITERATIONS}", B64.encode(SALT));
                *scram = Some((bare, first.clone()));
                (first.into_bytes(), true)
            }
            Some((bare, first)) => {
                let (without_proof, proof) = msg.rsplit_once(",p=").unwrap();
                let auth_message = format!("{bare},{first},{without_proof}");
                let keys = Keys::derive(hash, self.password.as_bytes(), SALT, ITERATIONS).unwrap();
                let signature = hmac(hash, &keys.stored_key, auth_message.as_bytes()).unwrap();
                let client_key: Vec<u8> = B64
                    .decode(proof)
                    .unwrap()
                    .iter()
                    .zip(&signature)
                    .map(|(p, s)| p ^ s)
                    .collect();
                if h(hash, &client_key) != keys.stored_key {
                    return (Vec::new(), false);
                }
                let server_key = if self.forge_signature {
                    Keys::derive(hash, b"not-the-password", SALT, ITERATIONS)
                        .unwrap()
                        .server_key
                } else {
                    keys.server_key
                };
                let v = hmac(hash, &server_key, auth_message.as_bytes()).unwrap();
                (format!("v={}", B64.encode(v)).into_bytes(), true)
            }
        }
    }
}

pub(super) fn settings(bootstrap: Vec<String>, sasl: Sasl) -> GroupSettings {
    GroupSettings {
        bootstrap,
        group_id: "g".into(),
        client_id: "ktm-test".into(),
        topics: vec!["t".into()],
        assignor: Assignor::Range,
        session_timeout: Duration::from_secs(6),
        heartbeat_interval: Duration::from_secs(1),
        rebalance_timeout: Duration::from_secs(6),
        group_instance_id: None,
        connect_timeout: Duration::from_secs(5),
        metadata_max_age: Duration::from_secs(300),
        security: Security {
            sasl: Some(sasl),
            #[cfg(feature = "tls")]
            tls: None,
        },
    }
}

/// The [`AuthError`] in `e`'s source chain.
fn auth_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a AuthError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(a) = err.downcast_ref::<AuthError>() {
            return Some(a);
        }
        cur = err.source();
    }
    None
}

/// A failed connect must be fatal, carry an [`AuthError`] that passes `check`, and
/// never show the password.
fn assert_fatal(e: GroupError, password: &str, check: impl FnOnce(&AuthError) -> bool) {
    assert!(e.is_fatal(), "{e}");
    let source_error = e.into_source_error("joining the group");
    assert!(!source_error.is_transient(), "{source_error}");
    let shown = format!("{source_error} {source_error:?}");
    assert!(!shown.contains(password), "{shown}");
    let auth = auth_error(&source_error).expect("an AuthError in the source chain");
    assert!(check(auth), "{auth:?}");
}

#[tokio::test]
async fn plain_authenticates_before_any_group_request() {
    let fake = Fake::new(&["PLAIN", "SCRAM-SHA-512"]);
    let addr = fake.clone().start().await;
    let creds = Sasl::plain("alice", "right-pw");
    let conn = connect_coordinator(&settings(vec![addr], creds))
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        fake.seen(),
        [
            "connect",
            "api-versions",
            "handshake v1 PLAIN",
            "authenticate v2",
            "authenticated",
            "find-coordinator"
        ]
    );
}

#[tokio::test]
async fn a_wrong_plain_password_is_fatal_and_not_retried() {
    let fake = Fake::new(&["PLAIN"]);
    let addr = fake.clone().start().await;
    let creds = Sasl::plain("alice", "wrong-pw-123");
    // Two bootstrap entries: a fatal failure on the first ends the search.
    let e = connect_coordinator(&settings(vec![addr.clone(), addr], creds))
        .await
        .unwrap_err();
    assert_fatal(e, "wrong-pw-123", |a| {
        matches!(a, AuthError::Rejected { mechanism: "PLAIN", message }
            if message.contains("Invalid username or password"))
    });
    assert_eq!(
        fake.seen(),
        [
            "connect",
            "api-versions",
            "handshake v1 PLAIN",
            "authenticate v2"
        ]
    );
}

#[tokio::test]
async fn scram_sha_512_and_256_authenticate() {
    for (creds, name) in [
        (Sasl::scram_sha512("alice", "right-pw"), "SCRAM-SHA-512"),
        (Sasl::scram_sha256("alice", "right-pw"), "SCRAM-SHA-256"),
    ] {
        let fake = Fake::new(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
        let addr = fake.clone().start().await;
        connect_coordinator(&settings(vec![addr], creds))
            .await
            .unwrap();
        assert_eq!(
            fake.seen(),
            [
                "connect".to_owned(),
                "api-versions".into(),
                format!("handshake v1 {name}"),
                "authenticate v2".into(),
                "authenticate v2".into(),
                "authenticated".into(),
                "find-coordinator".into()
            ]
        );
    }
}

#[tokio::test]
async fn a_wrong_scram_password_is_fatal() {
    let fake = Fake::new(&["SCRAM-SHA-256"]);
    let addr = fake.start().await;
    let creds = Sasl::scram_sha256("alice", "wrong-pw-456");
    let e = connect_coordinator(&settings(vec![addr], creds))
        .await
        .unwrap_err();
    assert_fatal(e, "wrong-pw-456", |a| {
        matches!(
            a,
            AuthError::Rejected {
                mechanism: "SCRAM-SHA-256",
                ..
            }
        )
    });
}

#[tokio::test]
async fn a_broker_that_cannot_prove_the_password_is_refused() {
    let mut fake = Fake::new(&["SCRAM-SHA-512"]);
    fake.forge_signature = true;
    let addr = fake.clone().start().await;
    let creds = Sasl::scram_sha512("alice", "right-pw");
    let e = connect_coordinator(&settings(vec![addr], creds))
        .await
        .unwrap_err();
    assert_fatal(e, "right-pw", |a| {
        matches!(a, AuthError::ServerSignatureMismatch { .. })
    });
    assert!(!fake.seen().contains(&"find-coordinator".to_owned()));
}

#[tokio::test]
async fn an_unsupported_mechanism_is_fatal() {
    let fake = Fake::new(&["PLAIN"]);
    let addr = fake.start().await;
    let creds = Sasl::scram_sha512("alice", "right-pw");
    let e = connect_coordinator(&settings(vec![addr], creds))
        .await
        .unwrap_err();
    assert_fatal(
        e,
        "right-pw",
        |a| matches!(a, AuthError::MechanismNotSupported { offered, .. } if offered == &["PLAIN"]),
    );
}

fn token_provider(token: &'static str) -> ktm_core::OAuthTokenProvider {
    ktm_core::OAuthTokenProvider::new(move || {
        let expires = std::time::SystemTime::now() + Duration::from_secs(600);
        Ok(ktm_core::OAuthToken::new(token, "alice", expires))
    })
}

#[tokio::test]
async fn oauth_bearer_sends_the_providers_token() {
    let fake = Fake::new(&["PLAIN", "OAUTHBEARER"]);
    let addr = fake.clone().start().await;
    let sasl = Sasl::oauth_bearer(token_provider("right-pw"));
    connect_coordinator(&settings(vec![addr], sasl))
        .await
        .unwrap();
    let seen = fake.seen();
    assert!(
        seen.contains(&"handshake v1 OAUTHBEARER".to_owned()),
        "{seen:?}"
    );
    assert!(seen.contains(&"authenticated".to_owned()), "{seen:?}");
    assert!(seen.contains(&"find-coordinator".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn a_refused_oauth_token_is_fatal() {
    let fake = Fake::new(&["OAUTHBEARER"]);
    let addr = fake.clone().start().await;
    let sasl = Sasl::oauth_bearer(token_provider("stolen-token-42"));
    let e = connect_coordinator(&settings(vec![addr], sasl))
        .await
        .unwrap_err();
    assert_fatal(e, "stolen-token-42", |a| {
        matches!(a, AuthError::Rejected { mechanism: "OAUTHBEARER", message }
            if message.contains("invalid_token"))
    });
    // The error challenge, then the client's acknowledgement and the failure.
    let authenticates = fake
        .seen()
        .iter()
        .filter(|s| s.starts_with("authenticate"))
        .count();
    assert_eq!(authenticates, 2, "{:?}", fake.seen());
}

#[tokio::test]
async fn a_failing_token_provider_is_transient() {
    let fake = Fake::new(&["OAUTHBEARER"]);
    let addr = fake.clone().start().await;
    let provider = ktm_core::OAuthTokenProvider::new(|| Err("identity provider down".into()));
    let e = connect_coordinator(&settings(vec![addr], Sasl::oauth_bearer(provider)))
        .await
        .unwrap_err();
    assert!(!e.is_fatal(), "{e}");
    assert!(e.to_string().contains("identity provider down"), "{e}");
    assert!(e.into_source_error("joining").is_transient());
}
