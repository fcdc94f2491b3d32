//! The shared security settings as librdkafka properties, what this build of
//! librdkafka can do, `OAUTHBEARER` tokens from the user's provider, and secrets kept
//! out of `Debug` output.

use std::fmt;
use std::time::UNIX_EPOCH;

use ktm_core::{ConfigError, OAuthTokenProvider, PemSource, Sasl, Security};
use rdkafka::client::OAuthToken;
use rdkafka::ClientConfig;

use crate::BACKEND;

/// Sets `security`'s librdkafka properties on `client`: `security.protocol`,
/// `sasl.*` and `ssl.*`.
///
/// # Errors
/// [`ConfigError::Backend`] for what this build of librdkafka cannot do: TLS and SCRAM
/// need the `ssl` feature (OpenSSL), GSSAPI the `gssapi` feature (Cyrus SASL).
pub(crate) fn apply(security: &Security, client: &mut ClientConfig) -> Result<(), ConfigError> {
    let unsupported = |message: String| {
        Err(ConfigError::Backend {
            backend: BACKEND,
            message,
        })
    };
    if security.protocol.uses_tls() && !cfg!(feature = "ssl") {
        return unsupported(format!(
            "security.protocol {} needs librdkafka built with OpenSSL: enable the `rdkafka-ssl` (or `rdkafka-ssl-vendored`) feature of kafka-thread-manager",
            security.protocol
        ));
    }
    client.set("security.protocol", security.protocol.as_str());
    if let Some(sasl) = &security.sasl {
        client.set("sasl.mechanism", sasl.mechanism());
        match sasl {
            Sasl::Plain { username, password } => {
                client
                    .set("sasl.username", username)
                    .set("sasl.password", password.expose());
            }
            Sasl::ScramSha256 { username, password } | Sasl::ScramSha512 { username, password } => {
                if !cfg!(feature = "ssl") {
                    return unsupported(format!(
                        "SASL {} needs librdkafka built with OpenSSL: enable the `rdkafka-ssl` (or `rdkafka-ssl-vendored`) feature of kafka-thread-manager",
                        sasl.mechanism()
                    ));
                }
                client
                    .set("sasl.username", username)
                    .set("sasl.password", password.expose());
            }
            // Tokens come from the context's refresh callback (`oauth_token`).
            Sasl::OAuthBearer(_) => {}
            Sasl::Gssapi {
                service_name,
                principal,
                keytab,
            } => {
                if !cfg!(feature = "gssapi") {
                    return unsupported(
                        "SASL GSSAPI needs librdkafka built with Cyrus SASL: enable the `rdkafka-gssapi` feature of kafka-thread-manager".into(),
                    );
                }
                client
                    .set("sasl.kerberos.service.name", service_name)
                    .set("sasl.kerberos.principal", principal);
                if let Some(keytab) = keytab {
                    client.set("sasl.kerberos.keytab", keytab.to_string_lossy());
                }
            }
            other => {
                return unsupported(format!(
                    "SASL {} is not supported by the rdkafka backend",
                    other.mechanism()
                ))
            }
        }
    }
    if security.protocol.uses_tls() {
        let tls = &security.tls;
        match &tls.ca {
            Some(ca) => pem(client, "ssl.ca", ca),
            // librdkafka looks for the system's CA bundle in the usual places (a
            // vendored OpenSSL does not know the distribution's path); Java uses the
            // JDK's trust store likewise.
            None => {
                client.set("ssl.ca.location", "probe");
            }
        }
        if let Some(cert) = &tls.client_certificate {
            pem(client, "ssl.certificate", cert);
        }
        if let Some(key) = &tls.client_key {
            pem(client, "ssl.key", key);
        }
        let check = if tls.verify_hostname { "https" } else { "none" };
        client.set("ssl.endpoint.identification.algorithm", check);
    }
    Ok(())
}

/// `<prefix>.location` for a file, `<prefix>.pem` for PEM text.
fn pem(client: &mut ClientConfig, prefix: &str, source: &PemSource) {
    match source {
        PemSource::File(path) => client.set(format!("{prefix}.location"), path.to_string_lossy()),
        PemSource::Inline(text) => client.set(format!("{prefix}.pem"), text.expose()),
        // A kind added to the shared enum later: the builder's check refuses it first.
        _ => client,
    };
}

/// The provider of `security`'s `OAUTHBEARER` tokens, if that is its mechanism.
pub(crate) fn oauth_provider(security: &Security) -> Option<OAuthTokenProvider> {
    match &security.sasl {
        Some(Sasl::OAuthBearer(provider)) => Some(provider.clone()),
        _ => None,
    }
}

/// A token for librdkafka's refresh callback (librdkafka asks again at 80% of its
/// lifetime). librdkafka has no way to take SASL extensions from the callback: a
/// token with extensions is refused rather than sent without them.
pub(crate) fn oauth_token(
    provider: Option<&OAuthTokenProvider>,
) -> Result<OAuthToken, Box<dyn std::error::Error>> {
    let provider = provider.ok_or("no OAUTHBEARER token provider is configured")?;
    let token = provider.token().map_err(|e| e.to_string())?;
    if !token.extensions.is_empty() {
        return Err("the rdkafka backend cannot send OAUTHBEARER extensions".into());
    }
    let lifetime_ms = token
        .expires_at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the token expired before 1970")?
        .as_millis();
    Ok(OAuthToken {
        token: token.value.expose().to_owned(),
        principal_name: token.principal,
        lifetime_ms: i64::try_from(lifetime_ms).map_err(|_| "token lifetime out of range")?,
    })
}

/// Whether a librdkafka property holds a secret (librdkafka's own list of sensitive
/// properties: passwords, private keys, OAuth secrets).
pub(crate) fn is_secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || matches!(key, "ssl.key.pem" | "ssl_key" | "sasl.oauthbearer.config")
}

/// librdkafka properties for `Debug` output, secrets shown as `<redacted>`.
pub(crate) struct Redacted<'a, I>(pub(crate) &'a I);

impl<'a, I, K, V> fmt::Debug for Redacted<'a, I>
where
    &'a I: IntoIterator<Item = &'a (K, V)>,
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in self.0 {
            let key = key.as_ref();
            let shown = if is_secret(key) {
                "<redacted>"
            } else {
                value.as_ref()
            };
            map.entry(&key, &shown);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use ktm_core::{OAuthToken as Token, SecurityProtocol, TlsConfig};

    use super::*;

    fn applied(security: &Security) -> Result<ClientConfig, ConfigError> {
        let mut client = ClientConfig::new();
        apply(security, &mut client).map(|()| client)
    }

    fn security(protocol: SecurityProtocol, sasl: Option<Sasl>, tls: TlsConfig) -> Security {
        let mut s = Security::default();
        s.protocol = protocol;
        s.sasl = sasl;
        s.tls = tls;
        s
    }

    #[test]
    fn plaintext_sets_only_the_protocol() {
        let c = applied(&Security::default()).unwrap();
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.mechanism"), None);
        assert_eq!(c.get("ssl.ca.location"), None);
    }

    #[test]
    fn plain_sasl_becomes_librdkafka_properties() {
        let s = security(
            SecurityProtocol::SaslPlaintext,
            Some(Sasl::plain("alice", "pw")),
            TlsConfig::default(),
        );
        let c = applied(&s).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("alice"));
        assert_eq!(c.get("sasl.password"), Some("pw"));
    }

    #[cfg(feature = "ssl")]
    #[test]
    fn tls_settings_become_ssl_properties() {
        let tls = TlsConfig::new()
            .ca_pem("CA")
            .client_certificate_files("/c.pem", "/k.pem")
            .verify_hostname(false);
        let c = applied(&security(
            SecurityProtocol::SaslSsl,
            Some(Sasl::scram_sha512("u", "p")),
            tls,
        ))
        .unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("ssl.ca.pem"), Some("CA"));
        assert_eq!(c.get("ssl.certificate.location"), Some("/c.pem"));
        assert_eq!(c.get("ssl.key.location"), Some("/k.pem"));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("none"));
        let c = applied(&security(SecurityProtocol::Ssl, None, TlsConfig::new())).unwrap();
        assert_eq!(c.get("ssl.ca.location"), Some("probe"));
        assert_eq!(
            c.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
    }

    #[cfg(not(feature = "ssl"))]
    #[test]
    fn tls_and_scram_without_openssl_are_refused() {
        let e = applied(&security(SecurityProtocol::Ssl, None, TlsConfig::new())).unwrap_err();
        assert!(e.to_string().contains("rdkafka-ssl"), "{e}");
        let scram = Some(Sasl::scram_sha256("u", "p"));
        let e = applied(&security(
            SecurityProtocol::SaslPlaintext,
            scram,
            TlsConfig::new(),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rdkafka-ssl"), "{e}");
    }

    #[cfg(not(feature = "gssapi"))]
    #[test]
    fn gssapi_without_cyrus_sasl_is_refused() {
        let kerberos = Some(Sasl::gssapi("kafka", "me"));
        let e = applied(&security(
            SecurityProtocol::SaslPlaintext,
            kerberos,
            TlsConfig::new(),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rdkafka-gssapi"), "{e}");
    }

    #[test]
    fn oauth_tokens_come_from_the_provider() {
        let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_000_000);
        let provider = OAuthTokenProvider::new(move || Ok(Token::new("tok", "me", expires)));
        let s = security(
            SecurityProtocol::SaslPlaintext,
            Some(Sasl::oauth_bearer(provider)),
            TlsConfig::new(),
        );
        let c = applied(&s).unwrap();
        assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
        let token = oauth_token(oauth_provider(&s).as_ref()).unwrap();
        assert_eq!(token.token, "tok");
        assert_eq!(token.principal_name, "me");
        assert_eq!(token.lifetime_ms, 1_900_000_000_000);
        assert!(oauth_token(None).is_err());
        let with_ext =
            OAuthTokenProvider::new(move || Ok(Token::new("t", "me", expires).extension("a", "b")));
        assert!(oauth_token(Some(&with_ext)).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let props = vec![
            ("sasl.username".to_owned(), "alice".to_owned()),
            ("sasl.password".to_owned(), "pw-secret".to_owned()),
            ("ssl.key.pem".to_owned(), "KEY-secret".to_owned()),
        ];
        let shown = format!("{:?}", Redacted(&props));
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("pw-secret") && !shown.contains("KEY-secret"),
            "{shown}"
        );
    }
}
