//! `taskform notify test [DIR] [--env NAME]`: sends a test alert to every receiver of
//! `notify:` and reports each one's answer (the service's own error text; never the
//! URL). Exit 1 when any receiver failed. And the alerts of one-shot commands:
//! `plan --notify` (drift or duplicates found) and `apply --notify` (its outcome).

use super::{Env, block_on};
use crate::alert::{Alerts, Event, EventKind, Receiver, Severity};
use crate::error::{Error, Exit};
use crate::plan::document::SavedPlan;
use crate::render::escape;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a one-shot command waits for its alerts (with their retries) before it
/// exits.
const ONE_SHOT_DEADLINE: Duration = Duration::from_secs(30);

/// `taskform notify test`.
pub fn notify_test(dir: PathBuf, environment: Option<String>, env: Env) -> Exit {
    block_on(run_test(dir, environment, env))
}

async fn run_test(dir: PathBuf, environment: Option<String>, env: Env<'_>) -> Result<Exit, Error> {
    let environment = environment.or_else(|| env("TASKFORM_ENV").filter(|e| !e.is_empty()));
    let settings = crate::load::manifest::settings_for(&dir, environment.as_deref(), env)?;
    let scoped = settings.scope.over(env);
    let env: Env = &scoped;
    let receivers = settings.notify.clone().unwrap_or_default();
    if receivers.is_empty() {
        return Err(Error::Command(format!(
            "{} names no receiver: add `notify:` (see the README's Notifications section)",
            escape(&settings.file.clone().unwrap_or_else(|| {
                dir.join(crate::load::settings::FILE_NAME)
                    .display()
                    .to_string()
            }))
        )));
    }
    let alerts = Alerts::new(&receivers, env, Arc::new(|_, _| {})).map_err(Error::Command)?;
    let event = Event::new(
        EventKind::Test,
        Severity::Info,
        &format!(
            "a test alert from `taskform notify test` by {}",
            crate::state::lock::user_at_host(env, "notify test")
        ),
    )
    .environment(environment.as_deref());
    let mut failed = 0;
    for (name, kind, result) in alerts.test(&event).await {
        match result {
            Ok(d) => println!(
                "{} ({}): delivered (HTTP {}{})",
                escape(&name),
                kind.name(),
                d.status,
                match d.answer.is_empty() {
                    true => String::new(),
                    false => format!(": {}", d.answer),
                }
            ),
            Err(f) => {
                failed += 1;
                println!("{} ({}): failed: {f}", escape(&name), kind.name());
            }
        }
    }
    alerts.close(Duration::from_secs(1)).await;
    Ok(match failed {
        0 => Exit::Ok,
        _ => Exit::Error,
    })
}

/// Sends one event to `receivers` and waits for its delivery (with retries) at most
/// [`ONE_SHOT_DEADLINE`]. A receiver that fails is a warning: the command's own
/// outcome stands.
pub async fn send_once(receivers: &[Receiver], env: Env<'_>, event: Event) {
    if receivers.is_empty() {
        tracing::warn!("--notify: taskform.yaml names no receiver (`notify:`): nothing sent");
        return;
    }
    match Alerts::new(receivers, env, Arc::new(|_, _| {})) {
        Ok(alerts) => {
            alerts.emit(event);
            alerts.close(ONE_SHOT_DEADLINE).await;
        }
        Err(e) => tracing::warn!("--notify: {e}"),
    }
}

/// `plan --notify`: an alert when the plan found drift (something apply would send)
/// or duplicates; nothing otherwise.
pub async fn drift_check(doc: &SavedPlan, receivers: &[Receiver], env: Env<'_>) {
    let lines: Vec<String> = doc
        .tasks
        .iter()
        .filter(|t| {
            t.action.sends()
                || matches!(
                    t.action,
                    crate::plan::Action::Duplicate | crate::plan::Action::InDoubt
                )
        })
        .map(|t| t.described())
        .collect();
    if lines.is_empty() {
        return;
    }
    let s = doc.summary;
    let event = Event::new(
        EventKind::DriftCheck,
        Severity::Error,
        &format!(
            "the state and the server differ from the manifests{}: {} to create, {} to replace, {} to update, {} to delete, {} duplicate(s), {} in doubt",
            if doc.options.refresh { " (read from the server)" } else { "" },
            s.create, s.replace, s.update, s.delete, s.duplicate, s.in_doubt
        ),
    )
    .environment(doc.environment.as_deref())
    .details(lines);
    send_once(receivers, env, event).await;
}

/// What `apply --notify` says: filled by the apply as it goes.
#[derive(Debug, Default)]
pub struct ApplyNote {
    pub receivers: Vec<Receiver>,
    pub environment: Option<String>,
    /// `created N, updated N, deleted N, failed N, in doubt N`, once requests went out.
    pub counts: Option<String>,
    /// The requests that failed or are in doubt: `name: why`.
    pub failures: Vec<String>,
    /// The error's text when it was printed already (a refused credential).
    pub error: Option<String>,
}

impl ApplyNote {
    /// What the requests came to.
    pub fn outcome(
        &mut self,
        results: &[crate::reconcile::applier::TaskResult],
        interrupted: bool,
    ) {
        use crate::reconcile::applier::TaskOutcome;
        let count = |o: TaskOutcome| results.iter().filter(|r| r.outcome == o).count();
        self.counts = Some(format!(
            "created {}, updated {}, deleted {}, failed {}, in doubt {}{}",
            count(TaskOutcome::Created),
            count(TaskOutcome::Updated),
            count(TaskOutcome::Deleted),
            count(TaskOutcome::Failed),
            count(TaskOutcome::InDoubt),
            if interrupted { " (interrupted)" } else { "" }
        ));
        self.failures = results
            .iter()
            .filter(|r| matches!(r.outcome, TaskOutcome::Failed | TaskOutcome::InDoubt))
            .map(|r| format!("{}: {}", escape(&r.name), crate::render::detail(r)))
            .collect();
    }
}

/// `apply --notify`: the outcome (info when everything was applied, error otherwise).
pub async fn apply_outcome(result: &Result<Exit, Error>, note: ApplyNote, env: Env<'_>) {
    let (severity, summary, mut details) = match result {
        Ok(Exit::Ok) => (
            Severity::Info,
            format!(
                "applied: {}",
                note.counts.as_deref().unwrap_or("nothing to send")
            ),
            Vec::new(),
        ),
        Ok(_) => (
            Severity::Error,
            format!(
                "apply finished with failures: {}",
                note.counts.as_deref().unwrap_or("nothing sent")
            ),
            Vec::new(),
        ),
        Err(e) => {
            let text = note.error.clone().unwrap_or_else(|| super::error_text(e));
            let (first, rest) = crate::load::diagnostic::split_lines(&text);
            (
                Severity::Error,
                format!("apply failed: {first}"),
                rest.into_iter().map(|l| l.trim().to_string()).collect(),
            )
        }
    };
    details.extend(note.failures);
    let event = Event::new(EventKind::Apply, severity, &summary)
        .environment(note.environment.as_deref())
        .details(details);
    send_once(&note.receivers, env, event).await;
}
