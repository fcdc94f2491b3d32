//! TLS and SASL against a real broker, for both Kafka backends, with the security
//! settings given once on the shared config.
//!
//! - SASL: Tansu 0.6 with `--authentication`; its SCRAM users are created with its
//!   own CLI (`tansu user create`, an AlterUserScramCredentials request, see
//!   `support::tansu`) before authentication is turned on.
//! - TLS: Tansu cannot serve TLS itself, so a TLS-terminating proxy (`support::tls`,
//!   tokio-rustls, certificates made by rcgen for `localhost`) sits in front of it and
//!   Tansu advertises the proxy's address.
//!
//! Records are produced over plaintext before the broker is restarted with its
//! security on (same database). The consumers read fixed partitions (no group
//! membership, so Tansu's slow joins do not matter) and commit under a group id.
//!
//! What the in-process fake broker of `ktm-rskafka` still covers, because no broker
//! here can: OAUTHBEARER (Tansu 0.6 knows only PLAIN and SCRAM; librdkafka's mock
//! cluster has no SASL at all), and a broker whose SCRAM server signature is wrong.
//!
//! Needs `tansu` on PATH; without it the tests print `SKIP` and pass.
#![cfg(all(feature = "rskafka-tls", feature = "rdkafka-ssl"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::Captured;
use kafka_thread_manager::rdkafka::RdkafkaSource;
use kafka_thread_manager::rskafka::{AuthError, RskafkaSource, TlsError};
use kafka_thread_manager::{
    CommitPolicy, ConsumerConfig, ConsumerConfigBuilder, Message, MessageSource, OffsetReset,
    PollBatch, Sasl, SecurityProtocol, SourceError, State, StopReason, ThreadManager, TlsConfig,
    TopicPartition,
};
use support::tansu::{unique, Tansu, TansuOptions};
use support::tls::{TestPki, TlsProxy};
use support::{record, KafkaBroker};

const RECORDS: i64 = 20;
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a misconfigured consumer may take to fail: at once, not after retries.
const FAIL_WITHIN: Duration = Duration::from_secs(30);
const PASSWORD: &str = "alice-Pa55word";
const WRONG_PASSWORD: &str = "not-the-Pa55word";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Rskafka,
    Rdkafka,
}

const BACKENDS: [Backend; 2] = [Backend::Rskafka, Backend::Rdkafka];

fn source(backend: Backend, config: ConsumerConfig) -> Box<dyn MessageSource> {
    match backend {
        Backend::Rskafka => Box::new(RskafkaSource::builder().config(config).build().unwrap()),
        Backend::Rdkafka => Box::new(RdkafkaSource::builder().config(config).build().unwrap()),
    }
}

/// Everything the tests log, for the check that no secret ever appears in it.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_env_filter("debug")
            .init();
        captured
    })
}

fn assert_no_secret_in(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG_PASSWORD, "PRIVATE KEY"] {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({secret}):\n{text}"
        );
    }
}

/// A broker holding `RECORDS` records in partition 0 of a new topic; the topic.
fn fill(tansu: &Tansu, test: &str) -> String {
    let topic = unique(&format!("sec-{test}"));
    let broker = KafkaBroker::at(tansu.bootstrap());
    broker.create_topic(&topic, 1);
    let records = (0..RECORDS)
        .map(|i| record(None, Some(format!("v{i}").into_bytes()), BTreeMap::new()))
        .collect();
    broker.produce(
        &topic,
        0,
        records,
        rskafka::client::partition::Compression::NoCompression,
    );
    topic
}

fn config(bootstrap: &str, topic: &str) -> ConsumerConfigBuilder {
    ConsumerConfig::builder()
        .bootstrap_servers([bootstrap])
        .assign([TopicPartition::new(topic, 0)])
        .group_id(unique("sec-group"))
        .offset_reset(OffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(100))
}

/// Reads every record and commits them all: the report's committed position is the
/// end of the partition.
fn reads_and_commits(backend: Backend, config: ConsumerConfig, what: &str) {
    let tp = match &config.subscription {
        kafka_thread_manager::Subscription::Partitions(p) => p[0].clone(),
        other => panic!("{other:?}"),
    };
    let handled = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&handled);
    let manager = ThreadManager::builder(source(backend, config))
        .callback(move |_: &Message| -> Result<(), std::io::Error> {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .commit_policy(CommitPolicy::EveryMessage)
        .thread_lifetime(None)
        .build()
        .unwrap();
    manager.start().unwrap();
    common::eventually(
        PATIENCE,
        &format!("{backend:?} {what}: every record handled"),
        || handled.load(Ordering::SeqCst) >= RECORDS as u64 || manager.state() == State::Failed,
    );
    let report = manager.stop().unwrap();
    assert_eq!(
        report.committed.get(&tp),
        Some(RECORDS),
        "{backend:?} {what}: {report:?}"
    );
    assert_eq!(
        report.counts.messages_handled, RECORDS as u64,
        "{backend:?} {what}"
    );
    eprintln!("{backend:?} {what}: read and committed {RECORDS} records");
}

/// Runs a manager that must fail at once; the reason it gives.
fn fails_at_once(backend: Backend, config: ConsumerConfig, what: &str) -> String {
    let manager = ThreadManager::builder(source(backend, config))
        .callback(|_: &Message| -> Result<(), std::io::Error> { Ok(()) })
        .thread_lifetime(None)
        .build()
        .unwrap();
    manager.start().unwrap();
    let report = match manager.wait(Some(FAIL_WITHIN)) {
        Ok(report) => report,
        Err(e) => panic!(
            "{backend:?} {what}: still running after {FAIL_WITHIN:?} ({e}): {:?}",
            manager.stats()
        ),
    };
    assert_eq!(
        report.final_state,
        State::Failed,
        "{backend:?} {what}: {report:?}"
    );
    let StopReason::SourceFailed(error) = &report.reason else {
        panic!("{backend:?} {what}: {report:?}");
    };
    assert!(
        error
            .find::<SourceError>()
            .is_some_and(|e| !e.is_transient()),
        "{error:?}"
    );
    let reason = error.to_string();
    assert_no_secret_in(&format!("{backend:?} {what}: the stop reason"), &reason);
    eprintln!("{backend:?} {what}: failed at once: {reason}");
    reason
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Polls a source until it fails (it must, within [`FAIL_WITHIN`]); the error.
fn poll_error(backend: Backend, config: ConsumerConfig) -> SourceError {
    let mut source = source(backend, config);
    block_on(async {
        let deadline = tokio::time::Instant::now() + FAIL_WITHIN;
        let mut batch = PollBatch::new();
        while tokio::time::Instant::now() < deadline {
            match source.poll(Duration::from_millis(200), &mut batch).await {
                Err(e) if !e.is_transient() => return e,
                Err(e) => eprintln!("{backend:?}: transient: {e}"),
                Ok(()) => {
                    assert!(
                        batch.messages().is_empty(),
                        "{backend:?}: read records it must not"
                    );
                    batch.clear();
                }
            }
        }
        panic!("{backend:?}: no fatal error within {FAIL_WITHIN:?}");
    })
}

/// Polls a source for a few seconds: it must read nothing and fail only transiently.
fn reads_nothing(backend: Backend, config: ConsumerConfig) {
    let mut source = source(backend, config);
    block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut batch = PollBatch::new();
        let mut errors = 0;
        while tokio::time::Instant::now() < deadline {
            match source.poll(Duration::from_millis(200), &mut batch).await {
                Err(e) => {
                    assert!(e.is_transient(), "{backend:?}: {e}");
                    errors += 1;
                }
                Ok(()) => {
                    assert!(
                        batch.messages().is_empty(),
                        "{backend:?}: read records it must not"
                    );
                    batch.clear();
                }
            }
        }
        assert!(
            errors > 0,
            "{backend:?}: no error at all from a broker that refuses it"
        );
    });
}

/// The typed cause in a source error's chain.
fn cause<E: std::error::Error + 'static>(e: &SourceError) -> Option<&E> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

fn rdkafka_code(
    e: &SourceError,
) -> Option<kafka_thread_manager::rdkafka::rdkafka::types::RDKafkaErrorCode> {
    cause::<kafka_thread_manager::rdkafka::rdkafka::error::KafkaError>(e)
        .and_then(|k| k.rdkafka_error_code())
}

// ---- SASL/SCRAM -----------------------------------------------------------------

/// Tansu with SCRAM users (alice: SCRAM-SHA-256 and -512) and authentication on,
/// advertising `advertised` (a TLS proxy) or itself; the topic.
fn authenticating_tansu(test: &str, advertised: Option<String>) -> Option<(Tansu, String)> {
    let mut tansu = Tansu::start(test)?;
    let topic = fill(&tansu, test);
    tansu.create_user("alice", PASSWORD, "scram256");
    tansu.create_user("alice", PASSWORD, "scram512");
    tansu.restart_with(TansuOptions {
        authentication: true,
        advertised,
    });
    Some((tansu, topic))
}

#[test]
fn scram_over_plaintext_authenticates_and_a_wrong_password_is_fatal() {
    let logs = logs();
    let test = "sasl-plaintext";
    let Some((tansu, topic)) = authenticating_tansu(test, None) else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    let with = |sasl: Sasl| {
        config(&bootstrap, &topic)
            .security_protocol(SecurityProtocol::SaslPlaintext)
            .sasl(sasl)
            .build()
            .unwrap()
    };
    // Authentication is really on: a client without SASL reads nothing. Tansu closes
    // its connections, as Kafka does: a transient error for the client, as for Java's.
    let anonymous = config(&bootstrap, &topic).build().unwrap();
    reads_nothing(Backend::Rskafka, anonymous);
    for backend in BACKENDS {
        reads_and_commits(
            backend,
            with(Sasl::scram_sha256("alice", PASSWORD)),
            "SCRAM-SHA-256",
        );
        reads_and_commits(
            backend,
            with(Sasl::scram_sha512("alice", PASSWORD)),
            "SCRAM-SHA-512",
        );
        let wrong = with(Sasl::scram_sha256("alice", WRONG_PASSWORD));
        let reason = fails_at_once(backend, wrong.clone(), "wrong password");
        assert!(
            reason.to_lowercase().contains("auth"),
            "{backend:?}: {reason}"
        );
        let e = poll_error(backend, wrong);
        match backend {
            Backend::Rskafka => assert!(
                matches!(
                    cause::<AuthError>(&e),
                    Some(AuthError::Rejected {
                        mechanism: "SCRAM-SHA-256",
                        ..
                    })
                ),
                "{e:?}"
            ),
            Backend::Rdkafka => assert_eq!(
                rdkafka_code(&e),
                Some(
                    kafka_thread_manager::rdkafka::rdkafka::types::RDKafkaErrorCode::Authentication
                ),
                "{e:?}"
            ),
        }
        let unknown = with(Sasl::scram_sha512("mallory", PASSWORD));
        fails_at_once(backend, unknown, "unknown user");
    }
    assert_no_secret_in("the logs", &logs.text());
}

// ---- TLS ------------------------------------------------------------------------

/// Tansu behind a TLS proxy (requiring client certificates when `mutual`); the
/// proxy's address is `localhost:port`, the name in its certificate.
struct TlsBroker {
    pki: TestPki,
    proxy: TlsProxy,
    tansu: Tansu,
    topic: String,
}

fn tls_broker(test: &str, mutual: bool, authentication: bool) -> Option<TlsBroker> {
    let pki = TestPki::new();
    let reserved = TlsProxy::reserve();
    let port = reserved.local_addr().unwrap().port();
    let advertised = format!("localhost:{port}");
    let (tansu, topic) = if authentication {
        authenticating_tansu(test, Some(advertised))?
    } else {
        let mut tansu = Tansu::start(test)?;
        let topic = fill(&tansu, test);
        tansu.restart_with(TansuOptions {
            authentication: false,
            advertised: Some(advertised),
        });
        (tansu, topic)
    };
    let proxy = TlsProxy::start(reserved, tansu.bootstrap(), pki.server_config(mutual));
    Some(TlsBroker {
        pki,
        proxy,
        tansu,
        topic,
    })
}

#[test]
fn scram_over_tls_authenticates() {
    let logs = logs();
    let Some(b) = tls_broker("sasl-ssl", false, true) else {
        return;
    };
    for backend in BACKENDS {
        let config = config(&b.proxy.address(), &b.topic)
            .security_protocol(SecurityProtocol::SaslSsl)
            .sasl(Sasl::scram_sha512("alice", PASSWORD))
            .tls(TlsConfig::new().ca_pem(b.pki.ca_pem.clone()))
            .build()
            .unwrap();
        reads_and_commits(backend, config, "SASL_SSL SCRAM-SHA-512");
    }
    assert_no_secret_in("the logs", &logs.text());
    drop(b.tansu);
}

#[test]
fn mutual_tls_reads_and_every_certificate_problem_is_fatal() {
    let logs = logs();
    let Some(b) = tls_broker("mtls", true, false) else {
        return;
    };
    let ssl = |bootstrap: &str, tls: TlsConfig| {
        config(bootstrap, &b.topic)
            .security_protocol(SecurityProtocol::Ssl)
            .tls(tls)
            .build()
            .unwrap()
    };
    let trusted = || TlsConfig::new().ca_pem(b.pki.ca_pem.clone());
    let with_certificate = |tls: TlsConfig| {
        tls.client_certificate_pem(b.pki.client_cert_pem.clone(), b.pki.client_key_pem.clone())
    };
    let by_ip = format!("127.0.0.1:{}", b.proxy.port);
    for backend in BACKENDS {
        reads_and_commits(
            backend,
            ssl(&b.proxy.address(), with_certificate(trusted())),
            "mutual TLS",
        );
        // The certificate names localhost, not 127.0.0.1: refused, unless the host name
        // check is off (the chain is still checked).
        let reason = fails_at_once(
            backend,
            ssl(&by_ip, with_certificate(trusted())),
            "wrong host name",
        );
        eprintln!("{backend:?} wrong host: {reason}");
        let e = poll_error(backend, ssl(&by_ip, with_certificate(trusted())));
        match backend {
            Backend::Rskafka => assert!(
                matches!(cause::<TlsError>(&e), Some(TlsError::NotValidForName { host }) if host == "127.0.0.1"),
                "{e:?}"
            ),
            Backend::Rdkafka => assert_eq!(
                rdkafka_code(&e),
                Some(kafka_thread_manager::rdkafka::rdkafka::types::RDKafkaErrorCode::SSL),
                "{e:?}"
            ),
        }
        reads_and_commits(
            backend,
            ssl(&by_ip, with_certificate(trusted()).verify_hostname(false)),
            "host name check off",
        );
        // The system's CAs do not include the test CA.
        fails_at_once(
            backend,
            ssl(&b.proxy.address(), with_certificate(TlsConfig::new())),
            "unknown CA",
        );
        let e = poll_error(
            backend,
            ssl(&b.proxy.address(), with_certificate(TlsConfig::new())),
        );
        if let Backend::Rskafka = backend {
            assert!(
                matches!(cause::<TlsError>(&e), Some(TlsError::UnknownIssuer)),
                "{e:?}"
            );
        }
        // No client certificate: the proxy refuses the handshake.
        fails_at_once(
            backend,
            ssl(&b.proxy.address(), trusted()),
            "no client certificate",
        );
    }
    assert_no_secret_in("the logs", &logs.text());
}

#[test]
fn secrets_stay_out_of_debug_output_on_both_backends() {
    let pki = TestPki::new();
    let config = config("localhost:9093", "t")
        .security_protocol(SecurityProtocol::SaslSsl)
        .sasl(Sasl::scram_sha512("alice", PASSWORD))
        .tls(
            TlsConfig::new()
                .ca_pem(pki.ca_pem.clone())
                .client_certificate_pem(pki.client_cert_pem.clone(), pki.client_key_pem.clone()),
        )
        .build()
        .unwrap();
    let rs = || RskafkaSource::builder().config(config.clone());
    let rd = RdkafkaSource::builder().config(config.clone());
    let shown = format!(
        "{config:?} {:?} {rd:?} {:?} {:?}",
        rs(),
        rs().build_config().unwrap(),
        RdkafkaSource::builder()
            .config(config.clone())
            .build()
            .unwrap()
    );
    assert_no_secret_in("Debug output", &shown);
    assert!(shown.contains("alice"), "{shown}");
    let rd_raw = RdkafkaSource::builder()
        .config(config)
        .set("ssl.key.password", PASSWORD);
    assert_no_secret_in("Debug output", &format!("{rd_raw:?}"));
}
