//! `notify:` of taskform.yaml: where alerts go. Each receiver names its type, the
//! environment variable that holds its webhook URL (a URL is a secret: it is never in
//! the file), optionally the one that holds its signing secret, the events it wants and
//! the least severity it wants. Parsed and checked here (`file:line:col` problems);
//! sending is [`crate::alert`]'s.
//!
//! ```yaml
//! notify:
//!   - type: slack
//!     url_from: SLACK_WEBHOOK_URL
//!     severity: error
//!   - name: data-team
//!     type: feishu
//!     url_from: FEISHU_WEBHOOK_URL
//!     secret_from: FEISHU_SECRET
//!     events: [reconcile_failed, revision_invalid, drift, recovered]
//! ```

use super::diagnostic::Diagnostic;
use super::yaml::{Part, Seg};
use serde_json::Value;

/// How much an event matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Error => "error",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A reconcile stopped with an error, or requests failed.
    ReconcileFailed,
    /// A revision's (or the folder's) manifests are invalid.
    RevisionInvalid,
    /// Creates whose outcome is unknown.
    InDoubt,
    /// Tasks changed outside taskform (found by `--interval` or `--refresh`).
    Drift,
    /// Remote tasks of managed names that no record holds.
    Duplicates,
    /// The prune guard refused deletes.
    PruneRefused,
    /// The first success after a failure.
    Recovered,
    /// `taskform suspend`.
    Suspended,
    /// `taskform resume`.
    Resumed,
    /// The outcome of `apply --notify`.
    Apply,
    /// What `plan --refresh --notify` found: drift or duplicates.
    DriftCheck,
    /// `taskform notify test`.
    Test,
}

impl EventKind {
    /// Every kind a receiver can ask for (`test` is always sent).
    pub const ALL: [EventKind; 11] = [
        EventKind::ReconcileFailed,
        EventKind::RevisionInvalid,
        EventKind::InDoubt,
        EventKind::Drift,
        EventKind::Duplicates,
        EventKind::PruneRefused,
        EventKind::Recovered,
        EventKind::Suspended,
        EventKind::Resumed,
        EventKind::Apply,
        EventKind::DriftCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::ReconcileFailed => "reconcile_failed",
            EventKind::RevisionInvalid => "revision_invalid",
            EventKind::InDoubt => "in_doubt",
            EventKind::Drift => "drift",
            EventKind::Duplicates => "duplicates",
            EventKind::PruneRefused => "prune_refused",
            EventKind::Recovered => "recovered",
            EventKind::Suspended => "suspended",
            EventKind::Resumed => "resumed",
            EventKind::Apply => "apply",
            EventKind::DriftCheck => "drift_check",
            EventKind::Test => "test",
        }
    }

    /// The `reason` of Flux's generic provider: `ReconcileFailed`, `Drift`...
    pub fn reason(self) -> &'static str {
        match self {
            EventKind::ReconcileFailed => "ReconcileFailed",
            EventKind::RevisionInvalid => "RevisionInvalid",
            EventKind::InDoubt => "TasksInDoubt",
            EventKind::Drift => "DriftDetected",
            EventKind::Duplicates => "DuplicatesFound",
            EventKind::PruneRefused => "PruneRefused",
            EventKind::Recovered => "Recovered",
            EventKind::Suspended => "Suspended",
            EventKind::Resumed => "Resumed",
            EventKind::Apply => "Applied",
            EventKind::DriftCheck => "DriftCheck",
            EventKind::Test => "Test",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Where a receiver is, and the message format it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiverKind {
    /// A JSON body in the shape of Flux's generic provider; signed with
    /// `X-Signature: sha256=<hex HMAC of the body>` when a secret is given.
    Generic,
    /// A Slack incoming webhook.
    Slack,
    /// A Feishu (Lark) custom bot; signed (timestamp and `sign` in the body) when a
    /// secret is given.
    Feishu,
    /// A DingTalk custom robot; signed (`timestamp` and `sign` in the query) when a
    /// secret is given.
    DingTalk,
    /// A WeCom (WeChat Work) group robot (`key` in the URL).
    WeCom,
}

impl ReceiverKind {
    const NAMES: [&str; 6] = ["generic", "slack", "feishu", "lark", "dingtalk", "wecom"];

    pub fn name(self) -> &'static str {
        match self {
            ReceiverKind::Generic => "generic",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Feishu => "feishu",
            ReceiverKind::DingTalk => "dingtalk",
            ReceiverKind::WeCom => "wecom",
        }
    }

    pub fn parse(s: &str) -> Option<ReceiverKind> {
        Some(match s {
            "generic" => ReceiverKind::Generic,
            "slack" => ReceiverKind::Slack,
            "feishu" | "lark" => ReceiverKind::Feishu,
            "dingtalk" => ReceiverKind::DingTalk,
            "wecom" => ReceiverKind::WeCom,
            _ => return None,
        })
    }
}

/// One receiver of `notify:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// For messages and the `receiver` label (default: the type).
    pub name: String,
    pub kind: ReceiverKind,
    /// The environment variable that holds the webhook URL.
    pub url_from: String,
    /// The environment variable that holds the signing secret.
    pub secret_from: Option<String>,
    /// The events it wants (empty: every one).
    pub events: Vec<EventKind>,
    /// The least severity it wants.
    pub severity: Severity,
}

impl Receiver {
    /// Whether this receiver wants an event of `kind` and `severity` (a test event
    /// always).
    /// A recovery passes the severity filter: a receiver told of a failure hears that
    /// it is over.
    pub fn wants(&self, kind: EventKind, severity: Severity) -> bool {
        let severe = severity >= self.severity || kind == EventKind::Recovered;
        kind == EventKind::Test
            || (severe && (self.events.is_empty() || self.events.contains(&kind)))
    }
}

const KEYS: [&str; 6] = [
    "name",
    "type",
    "url_from",
    "secret_from",
    "events",
    "severity",
];

/// An environment variable's name as the convention writes them (`[A-Z_][A-Z0-9_]*`):
/// a secret pasted in its place (mixed case, as Feishu's and DingTalk's are) is refused,
/// and never quoted.
fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Where a path of the settings file is: `(line, column)`.
pub type Locate<'a> = dyn Fn(&[Seg], Part) -> (usize, usize) + 'a;

/// Parses `notify:` (`value` at `path`); problems go to `diags`, placed by `at`.
pub fn parse(
    value: &Value,
    path: &[Seg],
    file: &str,
    at: &Locate<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Receiver> {
    let example = "notify:\n    - type: slack\n      url_from: SLACK_WEBHOOK_URL";
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Vec::new(),
        _ => {
            let (l, c) = at(path, Part::Value);
            diags.push(
                Diagnostic::new(file, l, c, "`notify` must be a list of receivers")
                    .with_hint(example),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Receiver> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut here = path.to_vec();
        here.push(Seg::Index(i));
        let problem = |diags: &mut Vec<Diagnostic>,
                       key: Option<&str>,
                       part: Part,
                       msg: String,
                       hint: Option<String>| {
            let mut p = here.clone();
            if let Some(k) = key {
                p.push(Seg::Key(k.to_string()));
            }
            let (l, c) = at(&p, part);
            diags.push(Diagnostic::new(file, l, c, msg).with_hint_opt(hint));
        };
        let Some(map) = item.as_object() else {
            problem(
                diags,
                None,
                Part::Value,
                "each receiver of `notify` is a mapping with `type` and `url_from`".into(),
                Some(example.into()),
            );
            continue;
        };
        let mut ok = true;
        for key in map.keys() {
            if !KEYS.contains(&key.as_str()) {
                ok = false;
                let hint = match key.as_str() {
                    "url" | "webhook" | "address" | "secret" => Some(
                        "a webhook URL and a signing secret are secrets: put them in environment variables and name those with `url_from` and `secret_from`; they are never written in taskform.yaml".to_string(),
                    ),
                    _ => crate::load::schema::suggest(key, &KEYS)
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| Some(format!("a receiver takes {}", KEYS.join(", ")))),
                };
                problem(
                    diags,
                    Some(key),
                    Part::Key,
                    format!("unknown receiver setting `{key}`"),
                    hint,
                );
            }
        }
        let text = |key: &str| map.get(key).and_then(Value::as_str);
        let kind = match map.get("type") {
            None => {
                ok = false;
                problem(
                    diags,
                    None,
                    Part::Value,
                    "a receiver needs `type`".into(),
                    Some(format!("type: one of {}", ReceiverKind::NAMES.join(", "))),
                );
                None
            }
            Some(v) => match v.as_str().and_then(ReceiverKind::parse) {
                Some(k) => Some(k),
                None => {
                    ok = false;
                    let shown = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    let hint = v
                        .as_str()
                        .and_then(|s| crate::load::schema::suggest(s, &ReceiverKind::NAMES))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("one of {}", ReceiverKind::NAMES.join(", ")));
                    problem(
                        diags,
                        Some("type"),
                        Part::Value,
                        // Never quote what may be a URL with its token.
                        match shown.contains("://") || shown.len() > 32 {
                            true => {
                                "unknown receiver type (not shown: it looks like a URL or a secret)"
                                    .to_string()
                            }
                            false => format!(
                                "unknown receiver type `{}`",
                                crate::load::diagnostic::escape(&shown)
                            ),
                        },
                        Some(hint),
                    );
                    None
                }
            },
        };
        let url_from = match text("url_from") {
            Some(v) if is_variable_name(v) => Some(v.to_string()),
            Some(v) => {
                ok = false;
                let hint = if v.contains("://") {
                    "the URL itself is a secret: put it in an environment variable and name that variable here, e.g. url_from: SLACK_WEBHOOK_URL".to_string()
                } else {
                    "an environment variable's name: capital letters, digits and _ (a secret itself never goes in taskform.yaml)".to_string()
                };
                // Never quote what may be a URL with its token.
                problem(
                    diags,
                    Some("url_from"),
                    Part::Value,
                    "`url_from` must name an environment variable".into(),
                    Some(hint),
                );
                None
            }
            None => {
                ok = false;
                problem(diags, None, Part::Value, "a receiver needs `url_from`: the environment variable that holds its webhook URL".into(), Some("url_from: SLACK_WEBHOOK_URL".into()));
                None
            }
        };
        let secret_from = match map.get("secret_from") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) if is_variable_name(v) => Some(v.clone()),
            Some(_) => {
                ok = false;
                problem(
                    diags,
                    Some("secret_from"),
                    Part::Value,
                    "`secret_from` must name an environment variable".into(),
                    Some("secret_from: FEISHU_SECRET".into()),
                );
                None
            }
        };
        if secret_from.is_some() && matches!(kind, Some(ReceiverKind::Slack | ReceiverKind::WeCom))
        {
            ok = false;
            problem(
                diags,
                Some("secret_from"),
                Part::Key,
                format!(
                    "a {} receiver is not signed: its URL is its secret",
                    kind.map(ReceiverKind::name).unwrap_or_default()
                ),
                Some("leave out secret_from".into()),
            );
        }
        let mut events = Vec::new();
        match map.get("events") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (j, e) in list.iter().enumerate() {
                    match e.as_str().and_then(EventKind::parse) {
                        Some(k) => events.push(k),
                        None => {
                            ok = false;
                            let names: Vec<&str> =
                                EventKind::ALL.iter().map(|k| k.name()).collect();
                            let hint = e
                                .as_str()
                                .and_then(|s| crate::load::schema::suggest(s, &names))
                                .map(|s| format!("did you mean `{s}`?"))
                                .unwrap_or_else(|| format!("one of {}", names.join(", ")));
                            let mut p = here.clone();
                            p.push(Seg::Key("events".into()));
                            p.push(Seg::Index(j));
                            let (l, c) = at(&p, Part::Value);
                            let shown = e
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| e.to_string());
                            diags.push(
                                Diagnostic::new(
                                    file,
                                    l,
                                    c,
                                    format!(
                                        "unknown event `{}`",
                                        crate::load::diagnostic::escape(&shown)
                                    ),
                                )
                                .with_hint(hint),
                            );
                        }
                    }
                }
            }
            Some(_) => {
                ok = false;
                problem(
                    diags,
                    Some("events"),
                    Part::Value,
                    "`events` must be a list of event names".into(),
                    Some("events: [reconcile_failed, drift, recovered]".into()),
                );
            }
        }
        let severity = match text("severity") {
            None if map.get("severity").is_none_or(Value::is_null) => Severity::Info,
            Some("info") => Severity::Info,
            Some("error") => Severity::Error,
            _ => {
                ok = false;
                problem(
                    diags,
                    Some("severity"),
                    Part::Value,
                    "`severity` must be `info` or `error`".into(),
                    Some("severity: error sends only what needs a person".into()),
                );
                Severity::Info
            }
        };
        let name = match map.get("name") {
            None | Some(Value::Null) => kind.map(|k| k.name().to_string()).unwrap_or_default(),
            Some(Value::String(n)) if !n.trim().is_empty() && n.len() <= 64 => n.clone(),
            Some(_) => {
                ok = false;
                problem(
                    diags,
                    Some("name"),
                    Part::Value,
                    "`name` must be a short text (1 to 64 characters)".into(),
                    None,
                );
                String::new()
            }
        };
        if ok && out.iter().any(|r| r.name == name) {
            problem(
                diags,
                None,
                Part::Value,
                format!(
                    "two receivers are named `{}`",
                    crate::load::diagnostic::escape(&name)
                ),
                Some(
                    "give each its own `name:` (it labels the taskform_notifications_total metric)"
                        .into(),
                ),
            );
            continue;
        }
        if let (true, Some(kind), Some(url_from)) = (ok, kind, url_from) {
            out.push(Receiver {
                name,
                kind,
                url_from,
                secret_from,
                events,
                severity,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> (Vec<Receiver>, Vec<String>) {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        let mut diags = Vec::new();
        let r = parse(
            &value["notify"],
            &[Seg::Key("notify".into())],
            "t.yaml",
            &|_, _| (1, 1),
            &mut diags,
        );
        (r, diags.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn receivers_are_read_and_mistakes_named() {
        let (r, d) = parsed(
            "notify:\n  - type: lark\n    url_from: LARK_URL\n    secret_from: LARK_SECRET\n    events: [drift, recovered]\n    severity: error\n",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r[0].kind, ReceiverKind::Feishu);
        assert_eq!(r[0].name, "feishu");
        assert!(r[0].wants(EventKind::Drift, Severity::Error));
        assert!(!r[0].wants(EventKind::Drift, Severity::Info));
        assert!(!r[0].wants(EventKind::Apply, Severity::Error));
        assert!(r[0].wants(EventKind::Test, Severity::Info));
        let any = Receiver {
            events: Vec::new(),
            ..r[0].clone()
        };
        assert!(
            any.wants(EventKind::Recovered, Severity::Info),
            "a recovery passes the severity filter"
        );
        let (_, d) = parsed(
            "notify:\n  - type: https://hooks.slack.com/services/T/B/SECRETTOKEN\n    url_from: A\n  - type: slack\n    url_from: SECdeadbeef\n",
        );
        assert!(
            !d.join("\n").contains("SECRETTOKEN") && !d.join("\n").contains("SECdeadbeef"),
            "{d:?}"
        );
        let (r, d) = parsed(
            "notify:\n  - type: slak\n    url: https://hooks.slack.com/services/T/B/SECRETTOKEN\n    events: [drfit]\n",
        );
        assert!(r.is_empty());
        let all = d.join("\n");
        assert!(all.contains("did you mean `slack`?"), "{all}");
        assert!(all.contains("did you mean `drift`?"), "{all}");
        assert!(all.contains("are secrets"), "{all}");
        assert!(!all.contains("SECRETTOKEN"), "{all}");
        let (_, d) = parsed(
            "notify:\n  - type: slack\n    url_from: https://hooks.slack.com/services/T/B/SECRETTOKEN\n",
        );
        assert!(!d.join("\n").contains("SECRETTOKEN"), "{d:?}");
        let (r, d) =
            parsed("notify:\n  - type: wecom\n    url_from: A\n  - type: wecom\n    url_from: B\n");
        assert_eq!(r.len(), 1);
        assert!(d[0].contains("two receivers are named `wecom`"), "{d:?}");
    }
}
