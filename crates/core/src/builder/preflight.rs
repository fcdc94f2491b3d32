//! The preflight settings of [`ThreadManagerBuilder`].

use std::sync::Arc;
use std::time::Duration;

use super::ThreadManagerBuilder;
use crate::PreflightCheck;

impl ThreadManagerBuilder {
    /// Adds an extra preflight item named `name`, run by
    /// [`ThreadManager::preflight`](crate::ThreadManager::preflight) after the broker
    /// checks: the hook for a schema registry (or anything else the consumer depends
    /// on) to say it answers. A closure `|| -> Result<String, BoxError>` will do; `Ok`
    /// carries a detail for the report. Checks run in the order added, on the thread
    /// calling `preflight()`, outside any async runtime; each must bound its own time.
    ///
    /// ```
    /// # use ktm_core::{BoxError, ThreadManager};
    /// # fn builder() -> ktm_core::ThreadManagerBuilder { unimplemented!() }
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = builder()
    ///     .preflight_check("schema registry", || -> Result<String, BoxError> {
    ///         // e.g. GET {url}/subjects with a client of your choice, with a timeout
    ///         Ok("http://registry:8081 answers".to_owned())
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn preflight_check(mut self, name: impl Into<String>, check: impl PreflightCheck) -> Self {
        self.preflight.checks.push((name.into(), Arc::new(check)));
        self
    }

    /// Bounds the broker questions of a preflight, retries of transient errors
    /// included (default [`DEFAULT_PREFLIGHT_TIMEOUT`](crate::DEFAULT_PREFLIGHT_TIMEOUT),
    /// 10 s). Extra checks are not bounded by it.
    pub fn preflight_timeout(mut self, timeout: Duration) -> Self {
        self.preflight.timeout = timeout;
        self
    }

    /// Makes `start()` run [`preflight`](crate::ThreadManager::preflight) first, and fail
    /// with [`Error::Preflight`](crate::Error::Preflight) before any poll when an item
    /// fails (default off).
    pub fn preflight_on_start(mut self, on: bool) -> Self {
        self.preflight.on_start = on;
        self
    }
}
