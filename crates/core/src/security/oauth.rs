//! `OAUTHBEARER` tokens: what a provider returns, and the provider itself.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::Secret;
use crate::BoxError;

/// An OAuth 2 bearer token for SASL `OAUTHBEARER`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthToken {
    /// The token (an RFC 6750 bearer token, usually a JWT).
    pub value: Secret,
    /// The principal the token was issued to (librdkafka needs it).
    pub principal: String,
    /// When the token expires: it is asked for again before then.
    pub expires_at: SystemTime,
    /// SASL extensions sent with the token (KIP-342), in order.
    pub extensions: Vec<(String, String)>,
}

impl OAuthToken {
    /// A token for `principal` that expires at `expires_at`, with no extensions.
    pub fn new(
        value: impl Into<Secret>,
        principal: impl Into<String>,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            value: value.into(),
            principal: principal.into(),
            expires_at,
            extensions: Vec::new(),
        }
    }

    /// Adds a SASL extension (`key=value`) sent with the token.
    #[must_use]
    pub fn extension(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.push((key.into(), value.into()));
        self
    }
}

/// The function that fetches `OAUTHBEARER` tokens, as Java's login callback handler
/// or librdkafka's token refresh callback. It is called from the backend's own
/// threads, blocking is allowed; an error is reported as a transient source error and
/// the token is asked for again.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use ktm_core::{OAuthToken, OAuthTokenProvider, Sasl};
/// let provider = OAuthTokenProvider::new(|| {
///     Ok(OAuthToken::new("eyJhbGciOi...", "billing", SystemTime::now() + Duration::from_secs(3600)))
/// });
/// let sasl = Sasl::oauth_bearer(provider);
/// assert_eq!(sasl.mechanism(), "OAUTHBEARER");
/// ```
#[derive(Clone)]
pub struct OAuthTokenProvider(Arc<dyn Fn() -> Result<OAuthToken, BoxError> + Send + Sync>);

impl OAuthTokenProvider {
    /// A provider calling `fetch` for every token.
    pub fn new(fetch: impl Fn() -> Result<OAuthToken, BoxError> + Send + Sync + 'static) -> Self {
        Self(Arc::new(fetch))
    }

    /// A fresh token.
    ///
    /// # Errors
    /// Whatever the provider failed with.
    pub fn token(&self) -> Result<OAuthToken, BoxError> {
        (self.0)()
    }
}

impl PartialEq for OAuthTokenProvider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OAuthTokenProvider {}

impl fmt::Debug for OAuthTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OAuthTokenProvider(..)")
    }
}
