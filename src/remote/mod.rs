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
