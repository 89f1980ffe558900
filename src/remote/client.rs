//! The DataArts HTTP client: one attempt at a time of a write (create, update,
//! delete, action), classified so that the applier knows whether a retry is safe, and
//! reads (search, show) that retry by themselves.
//!
//! The rule for creates: retry only where no task can have been created (the
//! connection was never made, or the service said 429/500/503 or a throttling code).
//! Anything that may have reached the service without an answer (read timeout, reset
//! after sending, 502/504, a 200 whose body was lost) is *in doubt* and never retried
//! blindly. Updates, deletes and actions are idempotent: the applier retries them even
//! then.
//!
//! "No such task" and "no such endpoint" are told apart by the error code, not the
//! status alone: an answer about a task ID (show, update, delete, action) with HTTP 400
//! or 404 and one of [`NOT_FOUND_CODES`] (`DLG.0818`, `DLG.2208`, `DLG.2253`, as the
//! Terraform provider reads them) means the task is gone; HTTP 404, 405 or 501 without a
//! `DLG.` code (the gateway's `APIG.0101`, or no error body) means the endpoint itself
//! is missing (a gateway exposing create only). The API definitions document 404 with
//! `{error_code, error_msg}` on every operation, so a 404 from the service itself is a
//! possibility, not a sign of a missing endpoint. See `docs/API-EVIDENCE.md`.
//!
//! When no answer came at all (connection refused, timeout), messages say so ("no
//! answer (connection refused)"), never "HTTP 0"; a [`Failure`] with status 0 is one.
//! Reads that got no answer to any of their attempts make the client fail the reads
//! that follow at once, until the endpoint answers again: a dead endpoint costs one
//! read's retries, not every read's.

use crate::remote::api::{self, ApiError};
use crate::remote::auth::{Authenticator, Credentials, Secret};
use crate::remote::{Error, error_chain, signer};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// An error answer, for the user: HTTP status, `error_code`, `error_msg`. No status:
/// no answer came (or the request was never sent); `error_msg` then says why, whole
/// (`no answer (connection refused)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status the service answered (`None`: no answer).
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub error_msg: String,
}

/// How a reason begins when the endpoint did not respond at all (in a [`Failure`]
/// without a status, and in [`Outcome::InDoubt`]): `no answer (connection refused)`, `no answer
/// (timeout after 30 s)`.
pub const NO_ANSWER: &str = "no answer";

impl Failure {
    /// No answer came, for this reason (`connection refused`).
    pub fn no_answer(why: &str) -> Failure {
        Failure {
            status: None,
            error_code: None,
            error_msg: format!("{NO_ANSWER} ({why})"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(status) = self.status else {
            // Not an HTTP answer: the message says what happened.
            return f.write_str(&self.error_msg);
        };
        write!(f, "HTTP {status}")?;
        if let Some(c) = &self.error_code {
            write!(f, " {c}")?;
        }
        if !self.error_msg.is_empty() {
            write!(f, ": {}", self.error_msg)?;
        }
        Ok(())
    }
}

/// The outcome of one create attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service created the task.
    Created(String),
    /// The service did what was asked (update, delete, action), with this HTTP status.
    Done(u16),
    /// Nothing was created; trying again is safe.
    Retry {
        failure: Failure,
        retry_after: Option<Duration>,
        throttled: bool,
    },
    /// The service refused the task (no retry).
    Failed(Failure),
    /// 401/403: the credential is refused; nothing else will work either.
    Unauthorized(Failure),
    /// The task may or may not have been created.
    InDoubt(InDoubtCause),
}

/// Why a request's outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InDoubtCause {
    /// No answer came in time (`timeout after 30 s`, a request cut off): the endpoint
    /// may never have seen it.
    NoAnswer(String),
    /// The endpoint took the request (it answered, or the connection broke after the
    /// request was sent), and what it did is unknown.
    Unclear(String),
}

impl InDoubtCause {
    /// Whether the endpoint responded at all.
    pub fn answered(&self) -> bool {
        matches!(self, InDoubtCause::Unclear(_))
    }
}

impl std::fmt::Display for InDoubtCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InDoubtCause::NoAnswer(why) => write!(f, "{NO_ANSWER} ({why})"),
            InDoubtCause::Unclear(what) => f.write_str(what),
        }
    }
}

impl Outcome {
    /// Whether the endpoint responded: with any HTTP status, or by closing a connection
    /// it had taken; not when the connection could not be made or no answer came within
    /// the timeout ([`InDoubtCause::NoAnswer`], a failure without a status).
    pub fn answered(&self) -> bool {
        match self {
            Outcome::Created(_) | Outcome::Done(_) => true,
            Outcome::Retry { failure, .. }
            | Outcome::Failed(failure)
            | Outcome::Unauthorized(failure) => failure.status.is_some(),
            Outcome::InDoubt(cause) => cause.answered(),
        }
    }

    /// For a retry: the failure and the wait the service asked for, after telling
    /// `pacer` about throttling. Any other outcome is given back.
    pub fn retry(
        self,
        pacer: &crate::remote::pacer::Pacer,
    ) -> Result<(Failure, Option<Duration>), Outcome> {
        match self {
            Outcome::Retry {
                failure,
                retry_after,
                throttled,
            } => {
                if throttled {
                    pacer.throttled();
                }
                Ok((failure, retry_after))
            }
            other => Err(other),
        }
    }
}

impl Failure {
    /// The task does not exist: HTTP 400 (as the Terraform provider sees it) or 404 (as
    /// the API definitions document it) with one of [`NOT_FOUND_CODES`]. Meaningful for
    /// answers about a task ID (show, update, delete, action) only: `DLG.0818` also
    /// means an unknown workspace (403 when the workspace is not the credential's).
    pub fn is_not_found(&self) -> bool {
        matches!(self.status, Some(400 | 404))
            && matches!(self.error_code.as_deref(), Some(c) if NOT_FOUND_CODES.contains(&c))
    }
    /// The endpoint does not exist (a gateway that exposes create only): HTTP 404, 405
    /// or 501 that the DataArts service did not answer itself, i.e. without a `DLG.`
    /// error code (the gateway's `APIG.0101`, or no error body at all).
    pub fn is_unsupported(&self) -> bool {
        matches!(self.status, Some(404 | 405 | 501)) && !self.is_service_code()
    }
    /// The error code is the DataArts service's own (`DLG.`), not the gateway's.
    fn is_service_code(&self) -> bool {
        self.error_code
            .as_deref()
            .is_some_and(|c| c.starts_with(SERVICE_CODE_PREFIX))
    }
    /// The task is being scheduled and must be stopped first.
    pub fn is_scheduling(&self) -> bool {
        self.error_code.as_deref() == Some(SCHEDULING_CODE)
    }
}

/// Codes meaning "no such task", as the Terraform provider's
/// `metadataTaskExecuteNotFoundCodes` reads them: `DLG.0818` ("the workspace or metadata
/// task does not exist", on query or delete), `DLG.2208` (the task to delete does not
/// exist), `DLG.2253` (the task to query does not exist).
pub const NOT_FOUND_CODES: &[&str] = &["DLG.0818", "DLG.2208", "DLG.2253"];
/// The prefix of the DataArts service's own error codes.
pub const SERVICE_CODE_PREFIX: &str = "DLG.";
/// A scheduled task cannot be updated or deleted before it is stopped.
pub const SCHEDULING_CODE: &str = "DLG.2206";

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What taskform needs of the API: the writes the applier sends one attempt at a time,
/// and the reads that observe the server. A trait, so that in-process tests stand in
/// for the service.
pub trait TaskApi: Send + Sync {
    /// Where requests go, for messages (`https://dayu.cn-north-4.myhuaweicloud.com`).
    fn endpoint(&self) -> Option<String> {
        None
    }
    /// The longest one write may take from the moment it is let go (token fetches
    /// included), when the client bounds it: the applier cuts it off there, so that
    /// nothing leaves later than a holder of the state lock promised.
    fn longest_send(&self) -> Option<Duration> {
        None
    }
    fn create<'a>(&'a self, body: &'a [u8]) -> Pending<'a, Outcome>;
    /// Replaces a task's body (PUT).
    fn update<'a>(&'a self, task_id: &'a str, body: &'a [u8]) -> Pending<'a, Outcome>;
    fn delete<'a>(&'a self, task_id: &'a str) -> Pending<'a, Outcome>;
    /// `run`, `runimmediate` or `stop`.
    fn action<'a>(&'a self, task_id: &'a str, action: &'a str) -> Pending<'a, Outcome>;
    /// Every remote task whose name is exactly `name`; `None` when the endpoint offers
    /// no search (a gateway exposing create only).
    fn search_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> Pending<'a, Result<Option<Vec<Value>>, Error>>;
    /// Every task of the workspace, and whether the listing is complete; `None` when the
    /// endpoint offers no search.
    fn list_tasks(&self) -> Pending<'_, Result<Option<Listing>, Error>>;
    /// Reads one task.
    fn show<'a>(&'a self, task_id: &'a str) -> Pending<'a, Result<Shown, Error>>;
}

/// The tasks a search listed, and whether the listing is complete (the service may cap
/// how far a search pages).
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub tasks: Vec<Value>,
    pub complete: bool,
}

/// What a show found.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Found(serde_json::Value),
    /// The service says the task does not exist.
    Gone,
    /// The endpoint offers no show (create-only gateway).
    Unsupported,
}

/// An answer, before it is classified.
struct Answer {
    status: u16,
    body: bytes::Bytes,
    retry_after: Option<Duration>,
}

/// Settings of the HTTP client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: String,
    pub project_id: String,
    pub workspace: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Extra trusted roots (PEM), for private CAs; the system's roots stay trusted.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Allow `http://` to a host that is not loopback.
    pub allow_insecure_http: bool,
    /// Reads (search, show) a second; 0 = no limit. Writes are paced by the applier.
    pub max_rate: f64,
    /// Attempts per read, counting the first (writes: the applier's own setting).
    pub max_attempts: u32,
}

/// Whether a URL's host is this machine.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Refuses plain http to another machine unless allowed (then warns).
pub fn check_scheme(
    url: &reqwest::Url,
    what: &str,
    allow_insecure_http: bool,
) -> Result<(), Error> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" if allow_insecure_http => {
            tracing::warn!(url = %url, "plain http to a host that is not loopback: credentials and bodies travel unencrypted");
            Ok(())
        }
        "http" => Err(Error::Setup(format!(
            "refusing plain http:// for the {what} {url}: credentials would travel unencrypted. Use https:// (with --ca-bundle for a private CA), or pass --allow-insecure-http if you must"
        ))),
        other => Err(Error::Setup(format!(
            "invalid {what} {url}: the scheme {other}:// is not http or https"
        ))),
    }
}

/// The client for one target.
pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    create_url: reqwest::Url,
    auth: Authenticator,
    /// Paces reads.
    pacer: crate::remote::pacer::Pacer,
    /// Set when a read got no answer to any of its attempts (with the last reason);
    /// cleared by any answer. While set, reads fail at once.
    unreachable: std::sync::Mutex<Option<String>>,
}

/// Installs rustls' ring provider once per process (reqwest is built without one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    pub fn new(cfg: ClientConfig, creds: Credentials) -> Result<Client, Error> {
        install_crypto_provider();
        let base: reqwest::Url = cfg
            .endpoint
            .parse()
            .map_err(|e| Error::Setup(format!("invalid endpoint {:?}: {e}", cfg.endpoint)))?;
        check_scheme(&base, "endpoint", cfg.allow_insecure_http)?;
        if let Credentials::Password { iam_endpoint, .. } = &creds {
            let iam: reqwest::Url = iam_endpoint
                .parse()
                .map_err(|e| Error::Setup(format!("invalid IAM endpoint {iam_endpoint:?}: {e}")))?;
            check_scheme(&iam, "IAM endpoint", cfg.allow_insecure_http)?;
        }
        let create_url = base
            .join(&api::create_path(&cfg.project_id))
            .map_err(|e| Error::Setup(format!("invalid endpoint {:?}: {e}", cfg.endpoint)))?;
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &cfg.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Setup(format!("cannot read the CA bundle {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Setup(format!(
                    "the CA bundle {} is not a PEM bundle: {}",
                    path.display(),
                    error_chain(&e)
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::Setup(format!(
                    "the CA bundle {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("taskform/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| {
                Error::Setup(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        let auth = Authenticator::new(creds, cfg.project_id.clone(), http.clone());
        Ok(Client {
            http,
            pacer: crate::remote::pacer::Pacer::new(cfg.max_rate),
            unreachable: std::sync::Mutex::new(None),
            cfg,
            create_url,
            auth,
        })
    }

    pub fn credentials(&self) -> &Credentials {
        self.auth.credentials()
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, Error> {
        self.create_url
            .join(path)
            .map_err(|e| Error::Setup(format!("invalid endpoint {:?}: {e}", self.cfg.endpoint)))
    }

    /// Sends one signed request. `Err` is the outcome when no answer came: not sent
    /// (retry is safe), or sent without an answer (in doubt).
    ///
    /// With IAM password credentials, a 401 drops the cached token (revoked before its
    /// expiry, say) and the request is sent once more with a new one: a 401 means the
    /// gateway refused it, so nothing was done. A second 401 is the answer.
    async fn exchange(
        &self,
        method: reqwest::Method,
        url: &reqwest::Url,
        body: &[u8],
    ) -> Result<Answer, Outcome> {
        let (answer, sent_token) = self.exchange_once(method.clone(), url, body).await?;
        if answer.status == 401
            && let Some(token) = sent_token
            && self.auth.forget_refused(&token).await
        {
            tracing::info!(
                "the service refused the IAM token (HTTP 401): getting a new one and trying once more"
            );
            return Ok(self.exchange_once(method, url, body).await?.0);
        }
        Ok(answer)
    }

    /// One signed request, and the IAM token it carried (password credentials only).
    async fn exchange_once(
        &self,
        method: reqwest::Method,
        url: &reqwest::Url,
        body: &[u8],
    ) -> Result<(Answer, Option<Secret>), Outcome> {
        const CT: &str = "application/json";
        let unauthorized = |error_msg: String| {
            Outcome::Unauthorized(Failure {
                status: None,
                error_code: None,
                error_msg,
            })
        };
        let auth = self
            .auth
            .headers(method.as_str(), url, CT, &self.cfg.workspace, body)
            .await
            .map_err(|e| unauthorized(e.0))?;
        let sent_token = match self.auth.credentials() {
            Credentials::Password { .. } => auth
                .iter()
                .find(|(k, _)| *k == "X-Auth-Token")
                .map(|(_, v)| Secret::new(v.clone())),
            _ => None,
        };
        // RFC 9110 §8.6: a POST or PUT without a body says `Content-Length: 0` (as
        // Huawei's SDK sends it); gateways may answer 411 otherwise.
        let bodiless_write =
            body.is_empty() && matches!(method, reqwest::Method::POST | reqwest::Method::PUT);
        let mut req = self
            .http
            .request(method, url.clone())
            .header("workspace", &self.cfg.workspace)
            .header("Content-Type", CT);
        if bodiless_write {
            req = req.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let mut req = req.body(body.to_vec());
        for (k, v) in auth {
            // Sensitive values are left out of any debug output of the request.
            let mut value = reqwest::header::HeaderValue::from_str(&v).map_err(|_| {
                unauthorized(format!(
                    "the credential for {k} holds characters an HTTP header cannot carry"
                ))
            })?;
            value.set_sensitive(
                k != signer::DATE_HEADER && k != crate::remote::auth::PROJECT_HEADER,
            );
            req = req.header(k, value);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // Never sent: nothing can have happened.
            Err(e) if e.is_connect() => {
                return Err(Outcome::Retry {
                    failure: Failure::no_answer(&self.why_no_answer(&e)),
                    retry_after: None,
                    throttled: false,
                });
            }
            Err(e) if e.is_timeout() => {
                return Err(Outcome::InDoubt(InDoubtCause::NoAnswer(
                    self.why_no_answer(&e),
                )));
            }
            Err(e) => {
                // The endpoint is there (it took the connection); what it did is unknown.
                return Err(Outcome::InDoubt(InDoubtCause::Unclear(format!(
                    "the connection failed after the request was sent: {}",
                    self.why_no_answer(&e)
                ))));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(300.0)));
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if (200..300).contains(&status) => {
                return Err(Outcome::InDoubt(InDoubtCause::Unclear(format!(
                    "HTTP {status} but the answer was cut off: {}",
                    error_chain(&e)
                ))));
            }
            Err(_) => Default::default(),
        };
        Ok((
            Answer {
                status,
                body,
                retry_after,
            },
            sent_token,
        ))
    }

    /// Why a request got no answer, for a person: `connection refused`, `timeout after
    /// 30 s`, `cannot connect: invalid peer certificate: UnknownIssuer`.
    fn why_no_answer(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            let after = match e.is_connect() {
                true => self.cfg.connect_timeout,
                false => self.cfg.timeout,
            };
            return format!("timeout after {} s", after.as_secs_f64());
        }
        // The innermost error says what happened; an I/O error's kind says it best.
        let mut innermost: &dyn std::error::Error = e;
        let mut kind = None;
        let mut src: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
            }
            innermost = s;
            src = s.source();
        }
        use std::io::ErrorKind as K;
        match kind {
            Some(K::ConnectionRefused) => "connection refused".into(),
            Some(K::ConnectionReset) => "connection reset".into(),
            Some(K::ConnectionAborted) => "connection aborted".into(),
            Some(K::TimedOut) => "timed out".into(),
            Some(K::BrokenPipe | K::NotConnected | K::UnexpectedEof) => "connection closed".into(),
            _ if e.is_connect() => format!("cannot connect: {innermost}"),
            _ => innermost.to_string(),
        }
    }

    /// A read (search, show), retried while retrying is safe (reads change nothing):
    /// throttling, 500/503, connection errors and timeouts, up to `max_attempts`
    /// attempts. `Err` says why it failed. While an earlier read got no answer at all,
    /// a read fails at once ([`Error::NoAnswer`]).
    async fn read(
        &self,
        what: &'static str,
        method: reqwest::Method,
        url: &reqwest::Url,
        body: &[u8],
    ) -> Result<Answer, Error> {
        let max_attempts = self.cfg.max_attempts.max(1);
        let mut attempt = 0;
        let mut answered = false;
        loop {
            if let Some(why) = self.unreachable() {
                return Err(Error::NoAnswer {
                    what,
                    endpoint: self.cfg.endpoint.clone(),
                    attempts: attempt,
                    why,
                });
            }
            attempt += 1;
            self.pacer.wait().await;
            let outcome = self.exchange(method.clone(), url, body).await;
            let (failure, wait) = match outcome {
                Ok(a) => {
                    self.set_unreachable(None);
                    answered = true;
                    match classify_error(a.status, &a.body, a.retry_after).retry(&self.pacer) {
                        Ok((failure, retry_after)) => (failure.to_string(), retry_after),
                        Err(_) => {
                            self.pacer.succeeded();
                            return Ok(a);
                        }
                    }
                }
                Err(Outcome::Retry { failure, .. }) => (failure.to_string(), None),
                Err(Outcome::InDoubt(why)) => (why.to_string(), None),
                Err(Outcome::Unauthorized(failure) | Outcome::Failed(failure)) => {
                    return Err(Error::Refused { what, failure });
                }
                // `exchange` gives back no other outcome.
                Err(Outcome::Created(_) | Outcome::Done(_)) => {
                    return Err(Error::TaskFailed(format!(
                        "{what}: an unexpected outcome without an answer"
                    )));
                }
            };
            if attempt >= max_attempts {
                if !answered {
                    let why = no_answer_why(&failure).to_string();
                    self.set_unreachable(Some(why.clone()));
                    return Err(Error::NoAnswer {
                        what,
                        endpoint: self.cfg.endpoint.clone(),
                        attempts: attempt,
                        why,
                    });
                }
                return Err(Error::GaveUp {
                    what,
                    attempts: attempt,
                    last: failure,
                });
            }
            let wait = wait.unwrap_or_else(|| {
                crate::remote::pacer::backoff(
                    Duration::from_millis(200),
                    Duration::from_millis(200 << 6),
                    attempt,
                )
            });
            tracing::debug!(what, attempt, error = %failure, wait_ms = wait.as_millis() as u64, "retrying a read");
            tokio::time::sleep(wait).await;
        }
    }

    fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_unreachable(&self, last: Option<String>) {
        *self.unreachable.lock().unwrap_or_else(|p| p.into_inner()) = last;
    }

    /// Every remote task whose name is exactly `name` (the service's search matches
    /// names loosely, so results are filtered here), paging through the results.
    /// `Ok(None)` when the endpoint offers no search (HTTP 404, e.g. a gateway that
    /// exposes create only).
    pub async fn search_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Vec<serde_json::Value>>, Error> {
        Ok(self.search(Some(name)).await?.map(|listing| {
            listing
                .tasks
                .into_iter()
                .filter(|t| t.get("name").and_then(|v| v.as_str()) == Some(name))
                .collect()
        }))
    }

    /// Every task of the workspace, and whether the listing is complete (the service
    /// may cap how far a search pages). `Ok(None)` when there is no search endpoint.
    pub async fn list_tasks(&self) -> Result<Option<Listing>, Error> {
        self.search(None).await
    }

    /// All pages of a search; the flag says whether the last page was reached.
    async fn search(&self, name: Option<&str>) -> Result<Option<Listing>, Error> {
        const LIMIT: u64 = 100;
        const MAX_PAGES: u64 = 1000;
        let url = self.url(&api::search_path(&self.cfg.project_id))?;
        let mut found = Vec::new();
        for page in 0..MAX_PAGES {
            let req = api::SearchRequest {
                name: name.map(str::to_string),
                limit: Some(LIMIT),
                offset: Some(page * LIMIT),
                ..Default::default()
            };
            let body = serde_json::to_vec(&req).map_err(|e| Error::Setup(e.to_string()))?;
            let a = self
                .read("search", reqwest::Method::POST, &url, &body)
                .await?;
            if classify_failure(a.status, &a.body).is_unsupported() {
                return Ok(None);
            }
            if a.status != 200 {
                return Err(Error::Unexpected {
                    what: "search".into(),
                    failure: classify_failure(a.status, &a.body),
                });
            }
            let page: api::SearchResponse =
                serde_json::from_slice(&a.body).map_err(|e| Error::Garbage {
                    what: "search",
                    expected: "a search result",
                    detail: e.to_string(),
                })?;
            // `total_records` counts the whole project, not the matches: page until a
            // page holds fewer than asked for.
            let n = page.resources.len() as u64;
            found.extend(page.resources);
            if n < LIMIT {
                return Ok(Some(Listing {
                    tasks: found,
                    complete: true,
                }));
            }
        }
        Ok(Some(Listing {
            tasks: found,
            complete: false,
        }))
    }

    /// Reads one task.
    pub async fn show(&self, task_id: &str) -> Result<Shown, Error> {
        let url = self.url(&api::task_path(&self.cfg.project_id, task_id))?;
        let a = self.read("show", reqwest::Method::GET, &url, b"").await?;
        if a.status == 200 {
            return serde_json::from_slice(&a.body)
                .map(Shown::Found)
                .map_err(|e| Error::Garbage {
                    what: "show",
                    expected: "a task",
                    detail: e.to_string(),
                });
        }
        let f = classify_failure(a.status, &a.body);
        if f.is_unsupported() {
            Ok(Shown::Unsupported)
        } else if f.is_not_found() {
            Ok(Shown::Gone)
        } else {
            Err(Error::Unexpected {
                what: format!("show of task {task_id}"),
                failure: f,
            })
        }
    }

    /// One create attempt.
    pub async fn create_once(&self, body: &[u8]) -> Outcome {
        match self
            .exchange(reqwest::Method::POST, &self.create_url, body)
            .await
        {
            Ok(a) => classify(a.status, &a.body, a.retry_after),
            Err(o) => o,
        }
    }

    /// One attempt of a request that answers without a body (update, delete, action).
    async fn write_once(&self, method: reqwest::Method, path: String, body: &[u8]) -> Outcome {
        let url = match self.url(&path) {
            Ok(u) => u,
            Err(e) => {
                return Outcome::Failed(Failure {
                    status: None,
                    error_code: None,
                    error_msg: e.to_string(),
                });
            }
        };
        match self.exchange(method, &url, body).await {
            Ok(a) if (200..300).contains(&a.status) => Outcome::Done(a.status),
            Ok(a) => classify_error(a.status, &a.body, a.retry_after),
            Err(o) => o,
        }
    }
}

impl Client {
    /// The longest one request can take from the moment it is let go: its timeout;
    /// with IAM password credentials, a token fetch before it, and after a refused
    /// token another fetch and the request again (four timeouts); plus a second. A holder of the state
    /// lock records it so that a process taking over after it waits that long past its
    /// lease ([`crate::state::lease`]); the applier cuts a request off at it.
    pub fn longest_send(&self) -> Duration {
        // A second more than the timeouts, so that the client's own timeout is what a
        // slow request normally meets.
        let slack = Duration::from_secs(1);
        match self.auth.credentials() {
            crate::remote::auth::Credentials::Password { .. } => self.cfg.timeout * 4 + slack,
            _ => self.cfg.timeout + slack,
        }
    }
}

impl TaskApi for Client {
    fn endpoint(&self) -> Option<String> {
        Some(self.cfg.endpoint.clone())
    }
    fn longest_send(&self) -> Option<Duration> {
        Some(Client::longest_send(self))
    }
    fn create<'a>(&'a self, body: &'a [u8]) -> Pending<'a, Outcome> {
        Box::pin(self.create_once(body))
    }
    fn update<'a>(&'a self, task_id: &'a str, body: &'a [u8]) -> Pending<'a, Outcome> {
        let path = api::task_path(&self.cfg.project_id, task_id);
        Box::pin(self.write_once(reqwest::Method::PUT, path, body))
    }
    fn delete<'a>(&'a self, task_id: &'a str) -> Pending<'a, Outcome> {
        let path = api::task_path(&self.cfg.project_id, task_id);
        Box::pin(self.write_once(reqwest::Method::DELETE, path, b""))
    }
    fn action<'a>(&'a self, task_id: &'a str, action: &'a str) -> Pending<'a, Outcome> {
        let path = api::action_path(&self.cfg.project_id, task_id, action);
        Box::pin(self.write_once(reqwest::Method::POST, path, b""))
    }
    fn search_by_name<'a>(
        &'a self,
        name: &'a str,
    ) -> Pending<'a, Result<Option<Vec<Value>>, Error>> {
        Box::pin(Client::search_by_name(self, name))
    }
    fn list_tasks(&self) -> Pending<'_, Result<Option<Listing>, Error>> {
        Box::pin(Client::list_tasks(self))
    }
    fn show<'a>(&'a self, task_id: &'a str) -> Pending<'a, Result<Shown, Error>> {
        Box::pin(Client::show(self, task_id))
    }
}

/// Runs `f` over `items` with at most `limit` in flight; results in `items`' order.
/// A task that panicked (a bug) is an error, never a silently missing result.
pub async fn map_concurrent<T, R, F, Fut>(
    items: Vec<T>,
    limit: usize,
    f: F,
) -> Result<Vec<R>, Error>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let fut = f(item);
        set.spawn(async move {
            let r = fut.await;
            drop(slot);
            (i, r)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        out.push(done.map_err(|e| Error::TaskFailed(e.to_string()))?);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// Classifies an answer.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Outcome {
    if (200..300).contains(&status) {
        return match serde_json::from_slice::<api::CreateResponse>(body) {
            Ok(r) if !r.task_id.is_empty() => Outcome::Created(r.task_id),
            // The answer's text is not kept: it is recorded (in doubt) and may echo
            // the request's sensitive values.
            _ => Outcome::InDoubt(InDoubtCause::Unclear(format!(
                "HTTP {status} without a task_id in the answer ({} bytes)",
                body.len()
            ))),
        };
    }
    classify_error(status, body, retry_after)
}

/// Classifies an answer that is not a success.
fn classify_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> Outcome {
    let err = api::parse_error(body);
    let failure = match &err {
        Some(ApiError {
            error_code,
            error_msg,
        }) => Failure {
            status: Some(status),
            error_code: Some(error_code.clone()),
            error_msg: error_msg.clone(),
        },
        None => Failure {
            status: Some(status),
            error_code: None,
            error_msg: snippet(body),
        },
    };
    let throttled = err
        .as_ref()
        .is_some_and(|e| api::THROTTLE_CODES.contains(&e.error_code.as_str()))
        || status == 429;
    match status {
        _ if throttled => Outcome::Retry {
            failure,
            retry_after,
            throttled: true,
        },
        500 | 503 => Outcome::Retry {
            failure,
            retry_after,
            throttled: false,
        },
        401 | 403 => Outcome::Unauthorized(failure),
        400..=499 => Outcome::Failed(failure),
        200..=299 => Outcome::Done(status),
        _ => Outcome::InDoubt(InDoubtCause::Unclear(format!(
            "{failure} (the service may have done it)"
        ))),
    }
}

/// An error answer as `HTTP 400 DLG.0001: message`.
fn classify_failure(status: u16, body: &[u8]) -> Failure {
    match api::parse_error(body) {
        Some(ApiError {
            error_code,
            error_msg,
        }) => Failure {
            status: Some(status),
            error_code: Some(error_code),
            error_msg,
        },
        None => Failure {
            status: Some(status),
            error_code: None,
            error_msg: snippet(body),
        },
    }
}

/// `connection refused` of `no answer (connection refused)`.
pub fn no_answer_why(reason: &str) -> &str {
    reason
        .strip_prefix(NO_ANSWER)
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(reason)
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn map_concurrent_keeps_order_and_bounds_what_is_in_flight() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = std::sync::Arc::new(AtomicUsize::new(0));
        let peak = std::sync::Arc::new(AtomicUsize::new(0));
        let out = map_concurrent((0..40u64).collect(), 4, |i| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis((i * 7) % 5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await
        .unwrap();
        assert_eq!(out, (0..40).map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    /// Accepts connections on a loopback port; answers every request `200` with an
    /// empty body and sends each request's head (request line and headers) on the
    /// channel.
    fn recording_server() -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let _ = tx.send(head);
                let _ = out.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        (url, rx)
    }

    fn test_client(endpoint: &str) -> Client {
        Client::new(
            ClientConfig {
                endpoint: endpoint.into(),
                project_id: "p".into(),
                workspace: "w".into(),
                timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(5),
                ca_bundle: None,
                allow_insecure_http: false,
                max_rate: 100.0,
                max_attempts: 1,
            },
            Credentials::Token(Secret::new("t")),
        )
        .unwrap()
    }

    /// RFC 9110 §8.6, and what Huawei's SDK sends: a body-less POST (an action) says
    /// `Content-Length: 0`; a DELETE or GET sends no body headers.
    #[tokio::test]
    async fn bodiless_posts_say_content_length_zero() {
        let (url, heads) = recording_server();
        let client = test_client(&url);
        assert_eq!(client.action("id-1", "stop").await, Outcome::Done(200));
        let head = heads.recv().unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("post /v3/p/metadata/tasks/id-1/action?action=stop "),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!(client.update("id-1", b"").await, Outcome::Done(200));
        let head = heads.recv().unwrap().to_ascii_lowercase();
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        assert_eq!(client.delete("id-1").await, Outcome::Done(200));
        let head = heads.recv().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("delete "), "{head}");
        assert!(!head.contains("transfer-encoding"), "{head}");
    }

    #[test]
    fn a_missing_answer_is_never_shown_as_http_0() {
        let f = Failure {
            status: None,
            error_code: None,
            error_msg: "no answer (connection refused)".into(),
        };
        assert_eq!(f.to_string(), "no answer (connection refused)");
        assert_eq!(Failure::no_answer("connection refused"), f);
        assert_eq!(no_answer_why(&f.error_msg), "connection refused");
        let retry = Outcome::Retry {
            failure: f,
            retry_after: None,
            throttled: false,
        };
        assert!(!retry.answered());
        assert!(!Outcome::InDoubt(InDoubtCause::NoAnswer("timeout after 30 s".into())).answered());
        assert!(
            Outcome::InDoubt(InDoubtCause::Unclear(
                "HTTP 502: gateway (the service may have done it)".into()
            ))
            .answered()
        );
        assert!(classify(429, b"", None).answered());
    }

    fn failure(status: u16, body: &str) -> Failure {
        classify_failure(status, body.as_bytes())
    }

    #[test]
    fn not_found_and_unsupported_are_told_apart_by_the_error_code() {
        let dlg = |status, code| {
            failure(
                status,
                &format!(r#"{{"error_code":"{code}","error_msg":"no such task"}}"#),
            )
        };
        for code in ["DLG.0818", "DLG.2208", "DLG.2253"] {
            for status in [400, 404] {
                let f = dlg(status, code);
                assert!(f.is_not_found(), "{f}");
                assert!(!f.is_unsupported(), "{f}");
            }
            // A 403 DLG.0818 refuses the workspace: neither.
            assert!(!dlg(403, code).is_not_found());
        }
        // The wrapped form reads the same.
        let wrapped = failure(
            404,
            r#"{"errors":[{"error_code":"DLG.2253","error_msg":"gone"}]}"#,
        );
        assert!(wrapped.is_not_found() && !wrapped.is_unsupported());
        // The gateway's 404, or one without an error body: no such endpoint.
        let gateway = failure(
            404,
            r#"{"error_code":"APIG.0101","error_msg":"The API does not exist"}"#,
        );
        assert!(gateway.is_unsupported() && !gateway.is_not_found());
        assert!(failure(404, "<html>Not Found</html>").is_unsupported());
        assert!(failure(405, "").is_unsupported() && failure(501, "").is_unsupported());
        // Another DLG error on 404 is the service's: neither gone nor unsupported.
        let other = dlg(404, "DLG.0001");
        assert!(!other.is_unsupported() && !other.is_not_found());
        // Other codes on 400 are not "gone".
        assert!(!dlg(400, "DLG.2206").is_not_found());
        assert!(dlg(400, "DLG.2206").is_scheduling());
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(200, br#"{"task_id":"abc"}"#, None),
            Outcome::Created("abc".into())
        );
        assert!(matches!(classify(200, b"{}", None), Outcome::InDoubt(_)));
        assert!(matches!(
            classify(429, b"", Some(Duration::from_secs(2))),
            Outcome::Retry {
                throttled: true,
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify(
                400,
                br#"{"error_code":"APIG.0308","error_msg":"slow down"}"#,
                None
            ),
            Outcome::Retry {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            classify(500, b"", None),
            Outcome::Retry {
                throttled: false,
                ..
            }
        ));
        assert!(matches!(classify(503, b"", None), Outcome::Retry { .. }));
        assert!(matches!(classify(502, b"", None), Outcome::InDoubt(_)));
        assert!(matches!(classify(504, b"", None), Outcome::InDoubt(_)));
        assert!(matches!(
            classify(
                401,
                br#"{"error_code":"APIGW.0301","error_msg":"bad"}"#,
                None
            ),
            Outcome::Unauthorized(_)
        ));
        match classify(
            400,
            br#"{"errors":[{"error_code":"DLG.0001","error_msg":"name is required"}]}"#,
            None,
        ) {
            Outcome::Failed(f) => assert_eq!(f.to_string(), "HTTP 400 DLG.0001: name is required"),
            o => panic!("{o:?}"),
        }
    }
}
