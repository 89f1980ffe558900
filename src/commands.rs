//! The commands behind the CLI: each takes its options, does its work and returns the
//! process's [`Exit`]. `main.rs` only parses arguments and calls these.

use crate::diagnostic::Diagnostic;
use crate::exit::Exit;
use crate::manifest::{self, LoadError, Loaded};
use crate::plan::{self, PlanOptions};
use crate::render::{self, Format};
use crate::state::{self, Target};
use crate::store::{LocalStore, StateStore};
use crate::style::{ColorChoice, Style};
use crate::target::{self, Resolved, TargetFlags};
use std::io::Write;
use std::path::PathBuf;

/// How commands read the environment (tests pass their own).
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Prints an error for a person on stderr.
pub fn report_error(message: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
}

fn report_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "error: {d}");
    }
    let files: std::collections::BTreeSet<&str> = diags.iter().map(|d| d.file.as_str()).collect();
    let _ = writeln!(
        err,
        "{} problem{} in {} file{}; nothing was planned or sent",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
}

/// Loads DIR, reporting problems; `None` means the caller exits 1.
pub fn load_manifests(dir: &std::path::Path, env: Env) -> Option<Loaded> {
    let started = std::time::Instant::now();
    match manifest::load(dir, env) {
        Ok(loaded) => {
            tracing::debug!(
                manifests = loaded.manifests.len(),
                files = loaded.file_digests.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "manifests loaded"
            );
            Some(loaded)
        }
        Err(LoadError::Dir(msg)) => {
            report_error(msg);
            None
        }
        Err(LoadError::Invalid(diags)) => {
            report_diagnostics(&diags);
            None
        }
    }
}

/// `taskform validate [DIR]`.
pub fn validate(dir: PathBuf, env: Env) -> Exit {
    match load_manifests(&dir, env) {
        Some(l) => {
            println!(
                "{} task{} in {} file{} valid.",
                l.manifests.len(),
                if l.manifests.len() == 1 { "" } else { "s" },
                l.file_digests.len(),
                if l.file_digests.len() == 1 {
                    " is"
                } else {
                    "s are"
                }
            );
            Exit::Ok
        }
        None => Exit::Error,
    }
}

/// Options of `taskform plan`.
#[derive(Debug, Clone, Default)]
pub struct PlanArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub detailed_exitcode: bool,
    pub recreate_in_doubt: bool,
    pub color: ColorChoice,
}

/// The target when both project and workspace are known.
pub fn known_target(r: &Resolved) -> Option<Target> {
    Some(Target {
        project_id: r.project_id.clone()?,
        workspace: r.workspace.clone()?,
    })
}

/// `taskform plan [DIR]`: offline, no credentials.
pub fn plan(args: PlanArgs, env: Env) -> Exit {
    let Some(loaded) = load_manifests(&args.dir, env) else {
        return Exit::Error;
    };
    let resolved = target::resolve(&args.target, env, &loaded.settings);
    let store = LocalStore::new(&resolved.state);
    let state = match store.load() {
        Ok(s) => s,
        Err(e) => {
            report_error(e);
            return Exit::Error;
        }
    };
    if let Some(t) = known_target(&resolved)
        && let Err(msg) = state::check_target(&state, &t, &store.describe())
    {
        report_error(msg);
        return Exit::Error;
    }
    let plan = plan::plan(
        &loaded.manifests,
        &state,
        PlanOptions {
            recreate_in_doubt: args.recreate_in_doubt,
        },
    );
    let text = match args.format {
        Format::Json => render::plan_json(&plan),
        Format::Text => render::plan_text(
            &plan,
            &loaded.manifests,
            &state,
            Style::for_stdout(args.color),
        ),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if args.detailed_exitcode && plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Ok
    }
}

/// Options of `taskform apply`.
#[derive(Debug, Clone)]
pub struct ApplyArgs {
    pub dir: PathBuf,
    pub target: TargetFlags,
    pub format: Format,
    pub yes: bool,
    pub apply: crate::apply::ApplyOptions,
    pub timeout: std::time::Duration,
    pub lock_timeout: Option<std::time::Duration>,
    pub recreate_in_doubt: bool,
    pub color: ColorChoice,
    /// Start an emulator in-process and apply to it.
    pub emulator: bool,
}

/// The apply's JSON document.
#[derive(serde::Serialize)]
struct ApplyJson<'a> {
    format_version: &'static str,
    summary: ApplySummary,
    plan: crate::plan::Summary,
    tasks: &'a [crate::apply::TaskResult],
}

#[derive(serde::Serialize, Default)]
struct ApplySummary {
    created: usize,
    replaced: usize,
    failed: usize,
    in_doubt: usize,
    skipped: usize,
}

/// Builds the runtime commands use: two workers suit the CLI's I/O-bound work.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// `taskform apply [DIR]`.
pub fn apply(args: ApplyArgs, env: Env) -> Exit {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            report_error(format!("cannot start the async runtime: {e}"));
            return Exit::Error;
        }
    };
    rt.block_on(apply_async(args, env))
}

async fn apply_async(args: ApplyArgs, env: Env<'_>) -> Exit {
    use crate::apply::TaskOutcome;
    use crate::auth::{Credentials, Secret};
    use crate::client::{Client, ClientConfig};
    use crate::emulator;
    use std::sync::Arc;

    let Some(loaded) = load_manifests(&args.dir, env) else {
        return Exit::Error;
    };
    let mut resolved = target::resolve(&args.target, env, &loaded.settings);

    // The built-in emulator stands in for the service when asked.
    let mut _emulator = None;
    let creds = if args.emulator {
        let project_id = resolved
            .project_id
            .clone()
            .unwrap_or_else(|| emulator::DEMO_PROJECT_ID.to_string());
        let workspace = resolved
            .workspace
            .clone()
            .unwrap_or_else(|| emulator::DEMO_WORKSPACE.to_string());
        let data = crate::fsutil::parent_dir(&resolved.state).join("emulator.json");
        let cfg = emulator::Config {
            data: Some(data.clone()),
            project_id: project_id.clone(),
            workspace: workspace.clone(),
            ..emulator::Config::default()
        };
        match emulator::start(cfg).await {
            Ok(emu) => {
                tracing::info!(url = %emu.url(), data = %data.display(), "started the built-in emulator");
                resolved.endpoint = Some(emu.url());
                resolved.project_id = Some(project_id);
                resolved.workspace = Some(workspace);
                _emulator = Some(emu);
            }
            Err(e) => {
                report_error(format!(
                    "cannot start the built-in emulator (data {}): {e}",
                    data.display()
                ));
                return Exit::Error;
            }
        }
        Credentials::Token(Secret::new(emulator::DEMO_TOKEN))
    } else {
        let region = args
            .target
            .region
            .clone()
            .or_else(|| env("HW_REGION_NAME"))
            .or_else(|| loaded.settings.region.clone());
        match Credentials::from_env(env, region.as_deref()) {
            Ok(c) => c,
            Err(msg) => {
                report_error(format!("{msg}; nothing was sent"));
                return Exit::Error;
            }
        }
    };
    let (Some(endpoint), Some(project_id), Some(workspace)) = (
        resolved.endpoint.clone(),
        resolved.project_id.clone(),
        resolved.workspace.clone(),
    ) else {
        let mut missing = Vec::new();
        if resolved.endpoint.is_none() {
            missing.push("the endpoint (--endpoint / TASKFORM_ENDPOINT, --region / HW_REGION_NAME, or `endpoint:`/`region:` in taskform.yaml)");
        }
        if resolved.project_id.is_none() {
            missing.push("the project (--project-id / TASKFORM_PROJECT_ID / HW_PROJECT_ID, or `project_id:` in taskform.yaml)");
        }
        if resolved.workspace.is_none() {
            missing.push("the workspace (--workspace / TASKFORM_WORKSPACE, or `workspace:` in taskform.yaml)");
        }
        report_error(format!(
            "apply needs {}; nothing was sent",
            missing.join(" and ")
        ));
        return Exit::Error;
    };
    let target = Target {
        project_id: project_id.clone(),
        workspace: workspace.clone(),
    };
    let client = match Client::new(
        ClientConfig {
            endpoint: endpoint.clone(),
            project_id,
            workspace,
            timeout: args.timeout,
            connect_timeout: std::time::Duration::from_secs(10),
        },
        creds,
    ) {
        Ok(c) => Arc::new(c),
        Err(msg) => {
            report_error(msg);
            return Exit::Error;
        }
    };
    if endpoint.starts_with("http://") && !is_loopback(&endpoint) {
        tracing::warn!(endpoint = %endpoint, "plain http to a host that is not loopback: credentials and bodies travel unencrypted");
    }

    let store = LocalStore::new(&resolved.state);
    let holder = crate::lock::Holder::this_process("apply");
    let _lock = match store.lock(&holder, args.lock_timeout) {
        Ok(l) => l,
        Err(e) => {
            report_error(e);
            return Exit::Error;
        }
    };
    let mut state = match store.load() {
        Ok(s) => s,
        Err(e) => {
            report_error(e);
            return Exit::Error;
        }
    };
    if let Err(msg) = state::check_target(&state, &target, &store.describe()) {
        report_error(msg);
        return Exit::Error;
    }
    if store.has_journal() || state.serial == 0 || state.target.is_none() {
        // Fold what an earlier run left, and make a new state's lineage and target
        // durable, before a journal refers to them.
        if state.target.is_none() {
            state.target = Some(target.clone());
        }
        if let Err(e) = store.persist(&mut state) {
            report_error(e);
            return Exit::Error;
        }
    }

    let plan = plan::plan(
        &loaded.manifests,
        &state,
        PlanOptions {
            recreate_in_doubt: args.recreate_in_doubt,
        },
    );
    let style = Style::for_stdout(args.color);
    if args.format == Format::Text {
        print!(
            "{}",
            render::plan_text(&plan, &loaded.manifests, &state, style)
        );
    }
    let to_send = plan.to_send().count();
    let in_doubt_before = plan.summary().in_doubt;
    if to_send == 0 {
        if args.format == Format::Json {
            print_apply_json(&plan, &[]);
        }
        if in_doubt_before > 0 {
            report_error(format!(
                "{in_doubt_before} task(s) in doubt: check whether they exist on the server, then re-run with --recreate-in-doubt to create them"
            ));
            return Exit::Error;
        }
        return Exit::Ok;
    }
    if !args.yes && !confirm(to_send) {
        return Exit::Error;
    }

    let journal: Arc<dyn crate::store::Journal> = match store.open_journal(&state) {
        Ok(j) => Arc::from(j),
        Err(e) => {
            report_error(e);
            return Exit::Error;
        }
    };
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        crate::signals::wait_for_shutdown().await;
        tracing::warn!(
            "interrupted: no new creates; waiting for those in flight (interrupt again to exit at once; the journal keeps them safe)"
        );
        let _ = cancel_tx.send(true);
        crate::signals::wait_for_shutdown().await;
        std::process::exit(Exit::Interrupted.code());
    });
    let started = std::time::Instant::now();
    let crate::apply::Applied { results, records } = crate::apply::execute(
        &plan,
        &loaded.manifests,
        client.clone(),
        journal.clone(),
        &args.apply,
        cancel_rx.clone(),
    )
    .await;
    let interrupted = *cancel_rx.borrow();
    tracing::info!(
        tasks = results.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "creates finished"
    );
    journal.close();

    // The records the journal holds, applied to the state in memory: the state is
    // complete even if a journal write failed (disk full) after a task was created.
    crate::journal::replay(&mut state, &records);
    let persisted = store.persist(&mut state);
    let mut exit = Exit::Ok;
    if let Err(e) = persisted {
        report_error(format!(
            "{e}; the journal {} still holds every result and the next run folds it in",
            store.journal_path().display()
        ));
        for r in results.iter().filter(|r| r.outcome == TaskOutcome::Created) {
            report_error(format!(
                "created {} as task {}",
                r.name,
                r.task_id.as_deref().unwrap_or("?")
            ));
        }
        exit = Exit::Error;
    }
    signals.abort();

    let mut sum = ApplySummary::default();
    for r in &results {
        match r.outcome {
            TaskOutcome::Created if r.action == crate::plan::Action::Replace => sum.replaced += 1,
            TaskOutcome::Created => sum.created += 1,
            TaskOutcome::Failed => sum.failed += 1,
            TaskOutcome::InDoubt => sum.in_doubt += 1,
            TaskOutcome::Skipped => sum.skipped += 1,
        }
    }
    match args.format {
        Format::Json => print_apply_json(&plan, &results),
        Format::Text => {
            let mut err = std::io::stderr().lock();
            for r in results.iter().filter(|r| r.outcome != TaskOutcome::Created) {
                let file = r
                    .file
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default();
                let what = match r.outcome {
                    TaskOutcome::Failed => "failed",
                    TaskOutcome::InDoubt => "in doubt",
                    _ => "skipped",
                };
                let detail = match (r.http_status, &r.error_code) {
                    (Some(s), Some(c)) => format!(
                        "HTTP {s} {c}: {}",
                        r.error_msg.as_deref().unwrap_or_default()
                    ),
                    (Some(s), None) => {
                        format!("HTTP {s}: {}", r.error_msg.as_deref().unwrap_or_default())
                    }
                    _ => r.error_msg.clone().unwrap_or_default(),
                };
                let _ = writeln!(err, "{what}: {}{file}: {detail}", r.name);
            }
            if results.iter().any(|r| {
                r.outcome == TaskOutcome::Failed && matches!(r.http_status, Some(401 | 403))
            }) {
                let _ = writeln!(
                    err,
                    "the service refused {}; check it and the project/workspace it is valid for",
                    client.credentials().kind()
                );
            }
            if sum.in_doubt + in_doubt_before > 0 {
                let _ = writeln!(
                    err,
                    "tasks in doubt may exist on the server: check them, then re-run with --recreate-in-doubt to create them again"
                );
            }
            println!(
                "Apply {}: {} created, {} replaced, {} failed, {} in doubt, {} skipped.",
                if interrupted {
                    "interrupted"
                } else {
                    "complete"
                },
                sum.created,
                sum.replaced,
                sum.failed,
                sum.in_doubt,
                sum.skipped
            );
        }
    }
    if interrupted {
        return Exit::Interrupted;
    }
    if sum.failed + sum.in_doubt + sum.skipped + in_doubt_before > 0 {
        exit = Exit::Error;
    }
    exit
}

fn print_apply_json(plan: &crate::plan::Plan, results: &[crate::apply::TaskResult]) {
    use crate::apply::TaskOutcome;
    let mut summary = ApplySummary::default();
    for r in results {
        match r.outcome {
            TaskOutcome::Created if r.action == crate::plan::Action::Replace => {
                summary.replaced += 1
            }
            TaskOutcome::Created => summary.created += 1,
            TaskOutcome::Failed => summary.failed += 1,
            TaskOutcome::InDoubt => summary.in_doubt += 1,
            TaskOutcome::Skipped => summary.skipped += 1,
        }
    }
    let doc = ApplyJson {
        format_version: "1",
        summary,
        plan: plan.summary(),
        tasks: results,
    };
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}

fn is_loopback(endpoint: &str) -> bool {
    reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Asks on a terminal; refuses without one.
fn confirm(n: usize) -> bool {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        report_error(
            "refusing to apply without confirmation: stdin is not a terminal; pass --yes to apply non-interactively",
        );
        return false;
    }
    eprint!(
        "\nCreate {n} task{}? Only 'yes' will be accepted: ",
        if n == 1 { "" } else { "s" }
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() == "yes" {
        true
    } else {
        report_error("apply cancelled; nothing was sent");
        false
    }
}

/// `taskform emulator`.
pub fn emulator(cfg: crate::emulator::Config) -> Exit {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            report_error(format!("cannot start the async runtime: {e}"));
            return Exit::Error;
        }
    };
    match rt.block_on(crate::emulator::run(cfg)) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            report_error(format!("emulator: {e}"));
            Exit::Error
        }
    }
}
