use std::time::{Duration, SystemTime};

use super::*;
use crate::ConsumerConfig;

fn base() -> crate::ConsumerConfigBuilder {
    ConsumerConfig::builder()
        .bootstrap_servers(["127.0.0.1:9092"])
        .topics(["t"])
        .group_id("g")
}

fn security_error(b: crate::ConsumerConfigBuilder) -> String {
    match b.build() {
        Err(ConfigError::Security { reason }) => reason,
        other => panic!("expected a security error, got {other:?}"),
    }
}

#[test]
fn the_default_is_plaintext_with_nothing_else() {
    let c = base().build().unwrap();
    assert_eq!(c.security, Security::default());
    assert_eq!(c.security.protocol, SecurityProtocol::Plaintext);
    assert!(c.security.tls.verify_hostname);
}

#[test]
fn sasl_goes_with_the_sasl_protocols_only() {
    let reason = security_error(base().security_protocol(SecurityProtocol::SaslSsl));
    assert!(reason.contains("needs SASL"), "{reason}");
    let reason = security_error(base().sasl(Sasl::plain("u", "p")));
    assert!(reason.contains("does not use SASL"), "{reason}");
    let reason = security_error(
        base()
            .security_protocol(SecurityProtocol::Ssl)
            .sasl(Sasl::plain("u", "p")),
    );
    assert!(reason.contains("does not use SASL"), "{reason}");
    for protocol in [SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl] {
        let c = base()
            .security_protocol(protocol)
            .sasl(Sasl::scram_sha256("u", "p"))
            .build()
            .unwrap();
        assert_eq!(c.security.sasl, Some(Sasl::scram_sha256("u", "p")));
    }
}

#[test]
fn tls_settings_need_a_tls_protocol_and_a_key_goes_with_its_certificate() {
    let reason = security_error(base().tls(TlsConfig::new().verify_hostname(false)));
    assert!(reason.contains("does not use TLS"), "{reason}");
    let mut half = TlsConfig::new();
    half.client_certificate = Some(PemSource::Inline(Secret::new("cert")));
    let reason = security_error(base().security_protocol(SecurityProtocol::Ssl).tls(half));
    assert!(reason.contains("private key"), "{reason}");
    let c = base()
        .security_protocol(SecurityProtocol::Ssl)
        .tls(TlsConfig::new().client_certificate_pem("cert", "key"))
        .build()
        .unwrap();
    assert!(c.security.tls.client_key.is_some());
}

#[test]
fn files_must_exist_when_the_config_is_built() {
    let reason = security_error(
        base()
            .security_protocol(SecurityProtocol::Ssl)
            .tls(TlsConfig::new().ca_file("/nonexistent/ca.pem")),
    );
    assert!(reason.contains("/nonexistent/ca.pem"), "{reason}");
    let reason = security_error(
        base()
            .security_protocol(SecurityProtocol::SaslPlaintext)
            .sasl(Sasl::Gssapi {
                service_name: "kafka".into(),
                principal: "me".into(),
                keytab: Some("/nonexistent/me.keytab".into()),
            }),
    );
    assert!(reason.contains("keytab"), "{reason}");
}

#[test]
fn empty_user_names_are_refused() {
    let reason = security_error(
        base()
            .security_protocol(SecurityProtocol::SaslPlaintext)
            .sasl(Sasl::scram_sha512("", "p")),
    );
    assert!(reason.contains("user name"), "{reason}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let token = OAuthToken::new("tok-123", "me", SystemTime::now() + Duration::from_secs(60));
    let shown_token = format!("{token:?}");
    assert!(!shown_token.contains("tok-123"), "{shown_token}");
    let c = base()
        .security_protocol(SecurityProtocol::SaslSsl)
        .sasl(Sasl::scram_sha512("alice", "pw-secret"))
        .tls(TlsConfig::new().client_certificate_pem("CERT", "KEY-secret"))
        .build()
        .unwrap();
    let shown = format!("{c:?} {c:#?} {:?}", c.security.sasl);
    assert!(
        !shown.contains("pw-secret") && !shown.contains("KEY-secret"),
        "{shown}"
    );
    assert!(
        shown.contains("alice") && shown.contains("SCRAM-SHA-512"),
        "{shown}"
    );
    let oauth = Sasl::oauth_bearer(OAuthTokenProvider::new(move || Ok(token.clone())));
    assert!(!format!("{oauth:?}").contains("tok-123"));
}

#[test]
fn names_on_the_wire() {
    assert_eq!(SecurityProtocol::SaslSsl.as_str(), "sasl_ssl");
    assert_eq!(Sasl::plain("u", "p").mechanism(), "PLAIN");
    assert_eq!(Sasl::scram_sha256("u", "p").mechanism(), "SCRAM-SHA-256");
    assert_eq!(Sasl::gssapi("kafka", "me").mechanism(), "GSSAPI");
    let provider = OAuthTokenProvider::new(|| Err("no token".into()));
    assert_eq!(
        Sasl::oauth_bearer(provider.clone()).mechanism(),
        "OAUTHBEARER"
    );
    assert!(provider.token().is_err());
}
