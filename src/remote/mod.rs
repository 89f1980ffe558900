//! Reaching the DataArts API: request shapes ([`api`]), the HTTP client with its
//! classification of answers ([`client`]), credentials ([`auth`]), SDK-HMAC-SHA256
//! ([`signer`]) and client-side pacing and backoff ([`pacer`]).
//!
//! Knows nothing of manifests, plans or the state: it sends bytes and reads answers.

pub mod api;
pub mod auth;
pub mod client;
pub mod pacer;
pub mod signer;

/// Why the API could not be used, for a person: what was asked, and the service's
/// words (HTTP status, `error_code`, `error_msg`) where it answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The client cannot be set up: the endpoint, its scheme, the CA bundle.
    #[error("{0}")]
    Setup(String),
    /// No usable credentials in the environment.
    #[error("{0}")]
    Credentials(String),
    /// A read the service refused (no retry helps).
    #[error("{what} failed: {failure}")]
    Refused {
        what: &'static str,
        failure: client::Failure,
    },
    /// A read retried until its attempts ran out.
    #[error("{what} failed after {attempts} attempts: {last}")]
    GaveUp {
        what: &'static str,
        attempts: u32,
        last: String,
    },
    /// No attempt got an answer (connection refused, timeouts), or an earlier read got
    /// none (`attempts` 0: this one was not sent).
    #[error(
        "{what} failed: no answer from {endpoint} ({why}){}; check the endpoint (--endpoint / TASKFORM_ENDPOINT / `endpoint:` or `region:` in taskform.yaml) and the network",
        match attempts { 0 => " to an earlier request; not sent".to_string(), 1 => String::new(), n => format!(" to {n} attempts") }
    )]
    NoAnswer {
        what: &'static str,
        endpoint: String,
        attempts: u32,
        /// Why, as in `connection refused`.
        why: String,
    },
    /// An answer that is neither a result nor a known error.
    #[error("{what} answered {failure}")]
    Unexpected {
        what: String,
        failure: client::Failure,
    },
    /// A success whose body is not what the operation returns.
    #[error("{what} answered something that is not {expected}: {detail}")]
    Garbage {
        what: &'static str,
        expected: &'static str,
        detail: String,
    },
    /// A request task ended without a result (a bug).
    #[error("a request task failed: {0}")]
    TaskFailed(String),
}

impl Error {
    /// The service's answer, where it answered with an error.
    pub fn failure(&self) -> Option<&client::Failure> {
        match self {
            Error::Refused { failure, .. } | Error::Unexpected { failure, .. } => Some(failure),
            _ => None,
        }
    }

    /// The HTTP status the service answered, where it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Refused { failure, .. } | Error::Unexpected { failure, .. } => failure.status,
            _ => None,
        }
    }
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}
