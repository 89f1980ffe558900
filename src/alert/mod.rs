//! Stage 4 (beside the commands): alerts where teams look. What happened is an
//! [`Event`] (kind, severity, environment, revision, summary, details, time); the
//! receivers of `notify:` ([`crate::load::alerts`]) get it in their own format
//! ([`format`]: Flux's generic JSON, Slack, Feishu/Lark, DingTalk, WeCom), signed where
//! the service defines it ([`sign`]), through [`Alerts`] ([`send`]): one queue per
//! receiver, bounded retries with backoff, identical events suppressed for a window, a
//! recovery always sent, and never a wait for a reconcile. [`watch`] turns what a
//! watcher observes into events.
//!
//! A webhook URL and a signing secret come from the environment and appear in no
//! output, log, state or plan: errors name the receiver, the HTTP status and the
//! service's own error text, never the URL.

pub mod format;
pub mod send;
pub mod sign;
pub mod watch;

pub use crate::load::alerts::{EventKind, Receiver, ReceiverKind, Severity};
pub use send::{Alerts, Delivered};

/// Something that happened, for the receivers that want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub severity: Severity,
    /// The environment (`None`: a repo without environments).
    pub environment: Option<String>,
    /// The config repo's commit, when known (`watch --git`).
    pub revision: Option<String>,
    /// One line.
    pub summary: String,
    /// One line each (task names, `path:line:col: message` problems...).
    pub details: Vec<String>,
    /// RFC 3339.
    pub at: String,
}

impl Event {
    /// An event now; every text is made safe to show (control characters escaped,
    /// one line each).
    pub fn new(kind: EventKind, severity: Severity, summary: &str) -> Event {
        Event {
            kind,
            severity,
            environment: None,
            revision: None,
            summary: one_line(summary),
            details: Vec::new(),
            at: crate::clock::now_rfc3339(),
        }
    }

    pub fn environment(mut self, e: Option<&str>) -> Event {
        self.environment = e.map(one_line);
        self
    }

    pub fn revision(mut self, r: Option<&str>) -> Event {
        self.revision = r.map(one_line);
        self
    }

    pub fn details<I, S>(mut self, details: I) -> Event
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.details = details.into_iter().map(|d| one_line(d.as_ref())).collect();
        self
    }

    /// What makes two events the same for suppression: everything but the time.
    pub fn key(&self) -> String {
        crate::hash::sha256_tagged(
            format!(
                "{}\0{:?}\0{:?}\0{:?}\0{}\0{}",
                self.kind.name(),
                self.severity,
                self.environment,
                self.revision,
                self.summary,
                self.details.join("\n")
            )
            .as_bytes(),
        )
    }
}

/// `s` on one line, with control characters escaped (untrusted text from manifests,
/// servers and git never forges lines or escapes into a terminal).
fn one_line(s: &str) -> String {
    crate::load::diagnostic::escape(s).into_owned()
}
