//! [`Alerts`]: the receivers of `notify:` with their URLs and secrets (read from the
//! environment once), a queue per receiver worked by a task of its own, so that a
//! receiver that is down or slow delays only its own messages and never a reconcile
//! ([`Alerts::emit`] never waits). Each delivery is retried with exponential backoff
//! (`backon`: 0.5 s doubling to 30 s, 4 retries, jittered) when the service did not
//! answer, throttled (429) or failed (5xx); a refusal (4xx, or a service's error code)
//! is not retried. Identical events are suppressed for [`WINDOW`] (as Flux does), a
//! recovery is always sent (and forgets what was suppressed). A receiver that fails is
//! logged once per outage, and again when it delivers.

use super::{Event, EventKind, Receiver, ReceiverKind, format, sign};
use backon::{ExponentialBuilder, Retryable};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long an identical event is suppressed.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Messages waiting per receiver; more are dropped (and counted).
const QUEUE: usize = 64;
/// One request's whole time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a receiver's service answered to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    /// The service's answer (escaped, at most 200 characters; never the URL).
    pub answer: String,
}

/// Why a delivery failed: the HTTP status and the service's own error text, or why no
/// answer came; never the URL or the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub text: String,
    /// Worth another try (no answer, 429, 5xx).
    pub retry: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// When an event was last queued for a receiver, and its environment.
type Sent = (Instant, Option<String>);

/// Counts each delivery's result by receiver: `sent`, `failed`, `suppressed`, `dropped`.
pub type Tally = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A receiver with its URL and secret.
struct Target {
    spec: Receiver,
    url: String,
    secret: Option<String>,
    http: reqwest::Client,
    /// `user@host` of this process, for Flux's `reportingInstance`.
    instance: String,
    /// Failing since its last delivery (logged once per outage).
    down: AtomicBool,
    /// A full queue was logged since its last delivery.
    dropping: AtomicBool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.spec.name, self.spec.kind.name())
    }
}

/// The receivers and their queues.
pub struct Alerts {
    targets: Vec<Arc<Target>>,
    queues: Mutex<Vec<Option<mpsc::Sender<Arc<Event>>>>>,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When each (receiver, event key) was last sent, and its environment.
    recent: Mutex<HashMap<(usize, String), Sent>>,
    tally: Tally,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.targets).finish()
    }
}

impl Alerts {
    /// The receivers, their URLs and secrets read from `env`. Every variable that is
    /// not set is named in the error (none of the values). Needs a tokio runtime: each
    /// receiver's worker starts here.
    pub fn new(
        receivers: &[Receiver],
        env: &dyn Fn(&str) -> Option<String>,
        tally: Tally,
    ) -> Result<Alerts, String> {
        let mut missing = Vec::new();
        let mut targets = Vec::new();
        let instance = crate::state::lock::host_name();
        for r in receivers {
            let url = env(&r.url_from).filter(|v| !v.trim().is_empty());
            let secret = match &r.secret_from {
                Some(v) => match env(v).filter(|v| !v.is_empty()) {
                    Some(s) => Some(s),
                    None => {
                        missing.push(format!("{v} (the signing secret of receiver {})", r.name));
                        continue;
                    }
                },
                None => None,
            };
            let Some(url) = url else {
                missing.push(format!(
                    "{} (the webhook URL of receiver {})",
                    r.url_from, r.name
                ));
                continue;
            };
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok {
                return Err(format!(
                    "{} (receiver {}) holds no http(s) URL",
                    r.url_from, r.name
                ));
            }
            crate::remote::client::install_crypto_provider();
            let http = reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                // A redirect would turn the POST into a GET elsewhere: a 3xx is a failure.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("taskform/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
            targets.push(Arc::new(Target {
                spec: r.clone(),
                url,
                secret,
                http,
                instance: instance.clone(),
                down: AtomicBool::new(false),
                dropping: AtomicBool::new(false),
            }));
        }
        if !missing.is_empty() {
            return Err(format!(
                "the alerts of `notify:` need {}: set them in the environment (their values are never printed)",
                missing.join(", ")
            ));
        }
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for t in &targets {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push(Some(tx));
            workers.push(tokio::spawn(worker(t.clone(), rx, tally.clone())));
        }
        Ok(Alerts {
            targets,
            queues: Mutex::new(queues),
            workers: Mutex::new(workers),
            recent: Mutex::new(HashMap::new()),
            tally,
        })
    }

    /// Queues `event` for every receiver that wants it, unless an identical one was
    /// sent within [`WINDOW`]. Never waits.
    pub fn emit(&self, event: Event) {
        if self.targets.is_empty() {
            return;
        }
        let event = Arc::new(event);
        let key = event.key();
        let now = Instant::now();
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, (at, _)| now.duration_since(*at) < WINDOW);
        if event.kind == EventKind::Recovered {
            // After a recovery the next failure is news.
            recent.retain(|_, (_, env)| *env != event.environment);
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !t.spec.wants(event.kind, event.severity) {
                continue;
            }
            let always = matches!(event.kind, EventKind::Recovered | EventKind::Test);
            if !always && recent.contains_key(&(i, key.clone())) {
                (self.tally)(&t.spec.name, "suppressed");
                continue;
            }
            let Some(Some(tx)) = queues.get(i) else {
                continue;
            };
            match tx.try_send(event.clone()) {
                Ok(()) => {
                    if !always {
                        recent.insert((i, key.clone()), (now, event.environment.clone()));
                    }
                }
                Err(_) => {
                    (self.tally)(&t.spec.name, "dropped");
                    if !t.dropping.swap(true, Ordering::SeqCst) {
                        tracing::warn!(receiver = %t.spec.name, "the alert queue is full (the receiver is slow or down): alerts are dropped until it delivers again (counted in taskform_notifications_total{{result=\"dropped\"}})");
                    }
                }
            }
        }
    }

    /// Delivers what is queued (with its retries), waiting at most `deadline`: for the
    /// one-shot commands, before they exit. Nothing can be emitted after.
    pub async fn close(&self, deadline: Duration) {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter_mut()
            .for_each(|q| *q = None);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        if tokio::time::timeout(deadline, futures_util::future::join_all(workers))
            .await
            .is_err()
        {
            tracing::warn!(
                "alerts still undelivered after {} s: given up",
                deadline.as_secs()
            );
        }
    }

    /// Sends `event` to every receiver once, without retry or suppression, and says
    /// what each answered (`taskform notify test`).
    pub async fn test(
        &self,
        event: &Event,
    ) -> Vec<(String, ReceiverKind, Result<Delivered, Failure>)> {
        let mut out = Vec::new();
        for t in &self.targets {
            let r = t.deliver(event).await;
            (self.tally)(&t.spec.name, if r.is_ok() { "sent" } else { "failed" });
            out.push((t.spec.name.clone(), t.spec.kind, r));
        }
        out
    }
}

async fn worker(target: Arc<Target>, mut rx: mpsc::Receiver<Arc<Event>>, tally: Tally) {
    let name = target.spec.name.clone();
    while let Some(event) = rx.recv().await {
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(4)
            .with_jitter();
        let result = (|| async { target.deliver(&event).await })
            .retry(policy)
            .when(|f: &Failure| f.retry)
            .notify(|f: &Failure, wait: Duration| {
                tracing::debug!(receiver = %name, retry_in_ms = wait.as_millis() as u64, "alert not delivered: {f}");
            })
            .await;
        match result {
            Ok(_) => {
                tally(&name, "sent");
                target.dropping.store(false, Ordering::SeqCst);
                if target.down.swap(false, Ordering::SeqCst) {
                    tracing::info!(receiver = %name, "alerts are delivered again");
                }
            }
            Err(f) => {
                tally(&name, "failed");
                match target.down.swap(true, Ordering::SeqCst) {
                    false => {
                        tracing::warn!(receiver = %name, kind = target.spec.kind.name(), "cannot deliver alerts: {f}; counted in taskform_notifications_total{{result=\"failed\"}} and said again once delivered")
                    }
                    true => tracing::debug!(receiver = %name, "alert not delivered: {f}"),
                }
            }
        }
    }
}

impl Target {
    /// One delivery of `event` (signed where the service defines it).
    async fn deliver(&self, event: &Event) -> Result<Delivered, Failure> {
        let mut body = format::body(self.spec.kind, event, &self.instance);
        let mut url = self.url.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        match (self.spec.kind, &self.secret) {
            (ReceiverKind::Feishu, Some(secret)) => {
                let ts = now.as_secs();
                body["timestamp"] = ts.to_string().into();
                body["sign"] = sign::feishu(secret, ts).into();
            }
            (ReceiverKind::DingTalk, Some(secret)) => {
                let ts = now.as_millis() as u64;
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!(
                    "{url}{sep}timestamp={ts}&sign={}",
                    sign::dingtalk(secret, ts)
                );
            }
            _ => {}
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut req = self.http.post(&url).header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        );
        if let (ReceiverKind::Generic, Some(secret)) = (self.spec.kind, &self.secret) {
            req = req.header("X-Signature", sign::generic(secret, &bytes));
        }
        let answer = req.body(bytes).send().await.map_err(|e| Failure {
            text: self.hide(&format!("no answer: {}", error_chain(&e.without_url()))),
            retry: true,
        })?;
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        let shown = self.hide(&snippet(&text));
        if status == 429 || status >= 500 {
            return Err(Failure {
                text: format!("HTTP {status}: {shown}"),
                retry: true,
            });
        }
        if !(200..300).contains(&status) {
            return Err(Failure {
                text: format!("HTTP {status}: {shown}"),
                retry: false,
            });
        }
        // Feishu, DingTalk and WeCom answer 200 with their own error code.
        let code = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let code = match self.spec.kind {
                    ReceiverKind::Feishu => v.get("code").or_else(|| v.get("StatusCode")),
                    ReceiverKind::DingTalk | ReceiverKind::WeCom => v.get("errcode"),
                    _ => None,
                }?;
                code.as_i64().filter(|c| *c != 0)
            });
        if let Some(code) = code {
            return Err(Failure {
                text: format!("HTTP {status}, code {code}: {shown}"),
                // Throttled by the service (WeCom 45009, DingTalk 130101, Feishu 11232).
                retry: matches!(code, 45009 | 130101 | 11232),
            });
        }
        Ok(Delivered {
            status,
            answer: shown,
        })
    }

    /// `text` with the URL, its query and the secret replaced by `***` (a service or a
    /// library might echo them).
    fn hide(&self, text: &str) -> String {
        let mut out = text.to_string();
        let (base, query) = self.url.split_once('?').unwrap_or((&self.url, ""));
        let mut secrets: Vec<String> = vec![self.url.clone(), base.to_string()];
        // The URL as JSON writes it, each query value, each long path segment (a token).
        secrets.push(self.url.replace('/', "\\/"));
        secrets.extend(
            query
                .split('&')
                .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string())),
        );
        secrets.extend(
            base.split('/')
                .skip(3)
                .filter(|seg| seg.len() >= 16)
                .map(str::to_string),
        );
        secrets.extend(self.secret.clone());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// A service's answer for a message: escaped, at most 200 characters.
fn snippet(text: &str) -> String {
    let t = crate::load::diagnostic::escape(text.trim());
    let mut s: String = t.chars().take(200).collect();
    if t.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!(": {c}"));
        }
        source = cause.source();
    }
    s
}
