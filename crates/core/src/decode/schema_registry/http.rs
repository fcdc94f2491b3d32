//! A Confluent-compatible schema registry over HTTP (feature `schema-registry`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::{CachedLookup, LookupError, RegisteredSchema, SchemaLookup, SchemaType};

/// How long one lookup may take, connection included, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry's error code for "schema not found" (with HTTP 404).
const SCHEMA_NOT_FOUND: i64 = 40403;

/// Schemas from a Confluent-compatible schema registry's REST API
/// (`GET {base_url}/schemas/ids/{id}`), over plain HTTP, cached by id.
///
/// Lookups block the calling thread. That is on purpose: decoders run synchronously on
/// the consumer thread (or a pool worker), the request is made only on a cache miss (once
/// per schema id for the life of the registry value), and the [timeout](Self::timeout)
/// bounds it.
///
/// A 404 with error code 40403 is an unknown id (permanent); a refused connection, a
/// timeout, a 5xx, any other status or a body that is not a schema is
/// [`Unavailable`](LookupError::Unavailable) (transient, retried): those say nothing
/// about the message, and a misconfigured URL or credentials should not dead-letter a
/// topic.
///
/// ```
/// use std::time::Duration;
/// use ktm_core::decode::schema_registry::HttpSchemaRegistry;
/// let registry = HttpSchemaRegistry::new("http://registry:8081")
///     .timeout(Duration::from_secs(2))
///     .basic_auth("reader", "secret");
/// ```
#[derive(Clone)]
pub struct HttpSchemaRegistry {
    client: Arc<CachedLookup<Client>>,
}

impl HttpSchemaRegistry {
    /// A registry at `base_url` (such as `http://registry:8081`; a trailing `/` is
    /// ignored) with the [`DEFAULT_TIMEOUT`] and no credentials. Nothing is requested
    /// until the first lookup.
    pub fn new(base_url: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Self::from_client(Client {
            base_url,
            timeout: DEFAULT_TIMEOUT,
            authorization: None,
            agent: agent(DEFAULT_TIMEOUT),
        })
    }

    /// Bounds each lookup (connecting, sending and reading the answer) by `timeout`.
    /// Schemas already cached are kept.
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        let mut client = self.rebuilt();
        client.timeout = timeout;
        client.agent = agent(timeout);
        Self::from_client(client)
    }

    /// Sends HTTP basic authentication with each lookup. Over plain HTTP the credentials
    /// travel in clear: use this on a trusted network only.
    #[must_use]
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        let mut client = self.rebuilt();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        client.authorization = Some(format!("Basic {token}"));
        Self::from_client(client)
    }

    /// The base URL lookups go to.
    pub fn base_url(&self) -> &str {
        &self.client.inner().base_url
    }

    /// How many schemas are cached.
    pub fn cached(&self) -> usize {
        self.client.len()
    }

    fn from_client(client: Client) -> Self {
        Self {
            client: Arc::new(CachedLookup::new(client)),
        }
    }

    /// The settings, to change one; set up before use, so the cache is empty.
    fn rebuilt(self) -> Client {
        let c = self.client.inner();
        Client {
            base_url: c.base_url.clone(),
            timeout: c.timeout,
            authorization: c.authorization.clone(),
            agent: c.agent.clone(),
        }
    }
}

impl SchemaLookup for HttpSchemaRegistry {
    fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError> {
        self.client.schema(id)
    }
}

impl fmt::Debug for HttpSchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.client.inner();
        f.debug_struct("HttpSchemaRegistry")
            .field("base_url", &c.base_url)
            .field("timeout", &c.timeout)
            .field("basic_auth", &c.authorization.is_some())
            .field("cached", &self.client.len())
            .finish()
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        // A 404's body says whether the id is unknown: read it rather than fail on it.
        .http_status_as_error(false)
        .build()
        .into()
}

/// The uncached HTTP lookup.
#[derive(Debug)]
struct Client {
    base_url: String,
    timeout: Duration,
    authorization: Option<String>,
    agent: ureq::Agent,
}

/// `GET /schemas/ids/{id}`'s answer.
#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

/// The registry's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
}

impl Client {
    /// GETs `url`: the status and the body, or why there is none.
    fn get(&self, url: &str) -> Result<(u16, String), String> {
        let mut request = self.agent.get(url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {url}: reading the answer: {e}"))?;
        Ok((status, body))
    }
}

/// Preflight: the registry answers `GET /subjects` with its list of subjects.
impl crate::PreflightCheck for HttpSchemaRegistry {
    fn check(&self) -> Result<String, crate::BoxError> {
        let client = self.client.inner();
        let url = format!("{}/subjects", client.base_url);
        let (status, body) = client.get(&url)?;
        if status != 200 {
            let answer = body.chars().take(200).collect::<String>();
            return Err(format!("GET {url}: HTTP {status}: {answer}").into());
        }
        let subjects: Vec<String> = serde_json::from_str(&body)
            .map_err(|e| format!("GET {url}: not a list of subjects: {e}"))?;
        Ok(format!(
            "{} answers ({} subjects)",
            client.base_url,
            subjects.len()
        ))
    }
}

impl SchemaLookup for Client {
    fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, LookupError> {
        let unavailable = |source: String| LookupError::Unavailable {
            id,
            source: source.into(),
        };
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let (status, body) = self.get(&url).map_err(unavailable)?;
        if status == 404
            && serde_json::from_str::<ErrorBody>(&body)
                .is_ok_and(|e| e.error_code == Some(SCHEMA_NOT_FOUND))
        {
            tracing::debug!(id, "schema id not registered");
            return Err(LookupError::Unknown { id });
        }
        if status != 200 {
            return Err(unavailable(format!(
                "GET {url}: HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let parsed: SchemaBody = serde_json::from_str(&body)
            .map_err(|e| unavailable(format!("GET {url}: not a schema: {e}")))?;
        let schema_type = match parsed.schema_type.as_deref() {
            None => SchemaType::Avro,
            Some(name) => SchemaType::from_registry_name(name)
                .ok_or_else(|| unavailable(format!("GET {url}: unknown schemaType {name:?}")))?,
        };
        tracing::debug!(id, %schema_type, "schema fetched from the registry");
        Ok(Arc::new(RegisteredSchema::new(
            id,
            schema_type,
            parsed.schema,
        )))
    }
}
