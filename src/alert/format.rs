//! Each receiver's message, in the format its service defines, within its size limit:
//! details that do not fit are cut with "… and N more", so a body is never refused for
//! its size and never cut in the middle of a character.
//!
//! - `generic`: Flux's generic provider (`involvedObject`, `severity`, `timestamp`,
//!   `message`, `reason`, `metadata`, `reportingController`, `reportingInstance`).
//! - `slack`: an incoming webhook's `text` and one attachment (colour by severity), in
//!   Slack's mrkdwn with `&`, `<`, `>` escaped; the attachment's text at most 3,000
//!   characters.
//! - `feishu`: a custom bot's `text` message (at most 4,000 characters; a body of
//!   at most 20 KB).
//! - `dingtalk`: a custom robot's `markdown` message (title and text; text at most
//!   4,000 characters).
//! - `wecom`: a group robot's `markdown` message (content at most 4,096 bytes).

use super::{Event, ReceiverKind, Severity};
use serde_json::{Value, json};

/// The most details a message lists.
const MAX_DETAILS: usize = 100;

/// The body `kind`'s service takes for `event` (`instance`: who sends, for Flux's
/// `reportingInstance`).
pub fn body(kind: ReceiverKind, event: &Event, instance: &str) -> Value {
    match kind {
        ReceiverKind::Generic => generic(event, instance),
        ReceiverKind::Slack => {
            let title = title(event);
            let text = fit(event, 3000, Count::Chars, slack_escape, "• ");
            json!({
                "text": slack_escape(&title),
                "attachments": [{
                    "color": match event.severity { Severity::Error => "danger", Severity::Info => "good" },
                    "title": slack_escape(&title),
                    "text": text,
                    "footer": slack_escape(&footer(event, instance)),
                    "mrkdwn_in": ["text"],
                }],
            })
        }
        ReceiverKind::Feishu => {
            let text = format!(
                "{}\n{}\n{}",
                feishu_escape(&title(event)),
                fit(event, 4000 - 400, Count::Chars, feishu_escape, "- "),
                feishu_escape(&footer(event, instance))
            );
            json!({"msg_type": "text", "content": {"text": text}})
        }
        ReceiverKind::DingTalk => {
            let title = title(event);
            let text = format!(
                "#### {}\n\n{}\n\n{}",
                markdown_escape(&title),
                fit(event, 4000 - 400, Count::Chars, markdown_escape, "- "),
                markdown_escape(&footer(event, instance))
            );
            json!({"msgtype": "markdown", "markdown": {"title": cut_chars(&title, 60), "text": text}})
        }
        ReceiverKind::WeCom => {
            let head = format!("**{}**\n", markdown_escape(&title(event)));
            let foot = format!("\n{}", markdown_escape(&footer(event, instance)));
            let room = 4096usize.saturating_sub(head.len() + foot.len());
            let content = format!(
                "{head}{}{foot}",
                fit(event, room, Count::Bytes, markdown_escape, "- ")
            );
            json!({"msgtype": "markdown", "markdown": {"content": content}})
        }
    }
}

/// `[error] prod: reconcile failed` (severity, environment, what).
pub fn title(event: &Event) -> String {
    let env = event
        .environment
        .as_deref()
        .map(|e| format!("{e}: "))
        .unwrap_or_default();
    format!(
        "[{}] taskform {env}{}",
        event.severity.name(),
        event.kind.name().replace('_', " ")
    )
}

fn footer(event: &Event, instance: &str) -> String {
    let rev = event
        .revision
        .as_deref()
        .map(|r| format!("revision {} · ", r.chars().take(12).collect::<String>()))
        .unwrap_or_default();
    format!(
        "{rev}{} · taskform {} on {instance}",
        event.at,
        env!("CARGO_PKG_VERSION")
    )
}

fn generic(event: &Event, instance: &str) -> Value {
    let mut metadata = serde_json::Map::new();
    metadata.insert("summary".into(), json!(event.summary));
    if let Some(r) = &event.revision {
        metadata.insert("revision".into(), json!(r));
    }
    if let Some(e) = &event.environment {
        metadata.insert("environment".into(), json!(e));
    }
    if !event.details.is_empty() {
        let (shown, more) = event.details.split_at(event.details.len().min(MAX_DETAILS));
        let mut d = shown.join("\n");
        if !more.is_empty() {
            d.push_str(&format!("\n… and {} more", more.len()));
        }
        metadata.insert("details".into(), json!(d));
    }
    let mut message = event.summary.clone();
    for d in event.details.iter().take(10) {
        message.push_str("\n- ");
        message.push_str(d);
    }
    if event.details.len() > 10 {
        message.push_str(&format!("\n… and {} more", event.details.len() - 10));
    }
    json!({
        "involvedObject": {
            "kind": "Environment",
            "name": event.environment.as_deref().unwrap_or("default"),
            "namespace": "taskform",
            "apiVersion": "taskform/v1",
        },
        "severity": event.severity.name(),
        "timestamp": event.at,
        "message": message,
        "reason": event.kind.reason(),
        "metadata": metadata,
        "reportingController": "taskform",
        "reportingInstance": instance,
    })
}

#[derive(Clone, Copy)]
enum Count {
    Chars,
    Bytes,
}

fn size(s: &str, c: Count) -> usize {
    match c {
        Count::Chars => s.chars().count(),
        Count::Bytes => s.len(),
    }
}

/// The summary and as many details as fit in `room` (escaped by `esc`, one per line
/// after `bullet`), the rest counted in "… and N more".
fn fit(event: &Event, room: usize, count: Count, esc: fn(&str) -> String, bullet: &str) -> String {
    let mut out = esc(&event.summary);
    if size(&out, count) > room {
        out = match count {
            Count::Chars => cut_chars(&out, room.saturating_sub(1)),
            Count::Bytes => cut_bytes(&out, room.saturating_sub(3)),
        };
        out.push('…');
        return out;
    }
    let details = &event.details[..event.details.len().min(MAX_DETAILS)];
    let mut left = event.details.len();
    // Room kept for the "… and N more" line.
    let reserve = 24;
    for d in details {
        let line = format!("\n{bullet}{}", esc(d));
        if size(&out, count) + size(&line, count) + reserve > room {
            break;
        }
        out.push_str(&line);
        left -= 1;
    }
    if left > 0 {
        out.push_str(&format!("\n… and {left} more"));
    }
    out
}

fn cut_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn cut_bytes(s: &str, n: usize) -> String {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Slack's mrkdwn: `&`, `<`, `>` as entities (no link, mention or channel can be made
/// from untrusted text).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Feishu's text messages read `<at user_id="...">` tags: no `<` from untrusted text.
fn feishu_escape(s: &str) -> String {
    s.replace('<', "‹").replace('>', "›")
}

/// DingTalk's and WeCom's markdown: the characters that make emphasis, links, headings,
/// quotes or code escaped with a backslash, and `<` (WeCom's `<font>`) as an entity.
fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '*' | '_' | '`' | '[' | ']' | '(' | ')' | '#' | '>' | '|' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::alerts::EventKind;

    fn big() -> Event {
        Event::new(
            EventKind::RevisionInvalid,
            Severity::Error,
            "revision abc is invalid",
        )
        .environment(Some("prod"))
        .details(
            (0..2000)
                .map(|i| format!("tasks/t{i}.yaml:2:1: 订单 <@U123> [x](http://evil) *bold* {i}")),
        )
    }

    #[test]
    fn every_format_fits_its_limit_and_says_how_many_were_cut() {
        let e = big();
        let slack = body(ReceiverKind::Slack, &e, "h");
        let t = slack["attachments"][0]["text"].as_str().unwrap();
        assert!(t.chars().count() <= 3000, "{}", t.chars().count());
        assert!(t.contains("… and ") && t.contains(" more"));
        assert!(!t.contains("<@U123>") && t.contains("&lt;@U123&gt;"));
        let wecom = body(ReceiverKind::WeCom, &e, "h");
        let c = wecom["markdown"]["content"].as_str().unwrap();
        assert!(c.len() <= 4096, "{}", c.len());
        assert!(c.contains("\\[x\\]\\(http://evil\\)"), "{c}");
        let ding = body(ReceiverKind::DingTalk, &e, "h");
        assert!(ding["markdown"]["text"].as_str().unwrap().chars().count() <= 4000);
        let feishu = body(ReceiverKind::Feishu, &e, "h");
        let f = feishu["content"]["text"].as_str().unwrap();
        assert!(f.chars().count() <= 4000 && serde_json::to_vec(&feishu).unwrap().len() < 20_000);
        let generic = body(ReceiverKind::Generic, &e, "h");
        assert_eq!(generic["reason"], "RevisionInvalid");
        assert_eq!(generic["involvedObject"]["name"], "prod");
        assert!(
            generic["metadata"]["details"]
                .as_str()
                .unwrap()
                .ends_with("… and 1900 more")
        );
    }
}
