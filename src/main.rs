//! The `taskform` binary: parses arguments and calls the library.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use taskform::cli::{self, ConnectArgs, PlanArgs};
use taskform::error::Exit;
use taskform::load::target::TargetFlags;
use taskform::reconcile::Policy;
use taskform::reconcile::applier::ApplyOptions;
use taskform::render::Format;
use taskform::render::style::ColorChoice;

/// mimalloc: loading thousands of manifests is allocation-heavy, and the system
/// allocator spent about a quarter of a 10,000-manifest plan in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes:
  0    success, or nothing to do
  1    error: a usage error (unknown flag, bad value), invalid manifests, unusable state, refused confirmation or prune guard, or (apply) a request that failed or is in doubt
  2    plan --detailed-exitcode: apply would send something (create, replace, update, delete), or a task is in doubt
  130  interrupted (Ctrl-C / SIGTERM); what was in flight is recorded";

/// GitOps for Huawei Cloud DataArts Catalog metadata collection tasks.
#[derive(Parser)]
#[command(name = "taskform", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Colour on stdout: auto (terminal and no NO_COLOR), always, never.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
    Markdown,
}

/// Output of the commands that print data, not plans.
#[derive(Clone, Copy, ValueEnum)]
enum DataFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests (folders, or files as pre-commit passes them); report every problem as file:line:col.
    Validate {
        /// Manifest folders (searched recursively for *.yaml and *.yml) and files; a file is checked with the taskform.yaml of its folder or the nearest above it (not above the git root). Default: the current folder.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// json: the problems and warnings as [{"file", "line", "column", "message", "hint", "severity"}] on stdout, for editors and CI annotations.
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
    /// Rewrite manifests in the canonical style (documented key order, 2-space indent, quotes where YAML would retype, comments kept).
    Fmt {
        /// Manifest folders and files (as for validate). Default: the current folder.
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Change nothing: list the files that would change and exit 1 if there are any (for CI).
        #[arg(long)]
        check: bool,
    },
    /// Print the JSON Schema (draft 2020-12) of a task manifest, for editors (yaml-language-server).
    Schema {
        /// Manifest folder: fields its taskform.yaml `defaults` set are not required.
        dir: Option<PathBuf>,
    },
    /// Show what apply would do. Offline and without credentials, unless --refresh or --adopt reads the server.
    #[command(after_help = EXIT_CODES)]
    Plan {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Exit 2 when apply would send something (or a task is in doubt), 0 otherwise.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Settle in-doubt creates by search, then plan one with the content sent as recorded, or a create again when none has it.
        #[arg(long)]
        recreate_in_doubt: bool,
        /// Plan deleting every task the state records (guarded like --prune; prevent_destroy respected).
        #[arg(long)]
        destroy: bool,
        /// Also write the plan to FILE (JSON), for `taskform apply FILE` and `taskform show FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Markdown: where else the full plan is (e.g. "the artifact taskform-plan-SHA of this run"), named when details are cut to fit a comment.
        #[arg(long, value_name = "TEXT")]
        full_plan_hint: Option<String>,
        /// Plan every environment taskform.yaml declares (each against its own state and target, no lock) as one document; with --out, one plan file of them all (or, for a folder, one file per environment), applied per environment with `apply --env NAME FILE`.
        #[arg(long)]
        all_envs: bool,
        /// Text: list every unchanged task too (by default only what changes, and a count of the others).
        #[arg(long)]
        show_unchanged: bool,
        /// Alert the receivers of `notify:` in taskform.yaml when the plan finds something to send, tasks in doubt or duplicates (a scheduled drift check with --refresh); nothing is sent otherwise.
        #[arg(long)]
        notify: bool,
        #[command(flatten)]
        lifecycle: LifecycleCli,
        /// Used with --refresh or --adopt only.
        #[command(flatten)]
        connect: ConnectCli,
    },
    /// Render a saved plan file.
    Show {
        /// A plan file written by `plan --out`.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Markdown: where else the full plan is, named when details are cut to fit a comment.
        #[arg(long, value_name = "TEXT")]
        full_plan_hint: Option<String>,
        /// Text: list every unchanged task too.
        #[arg(long)]
        show_unchanged: bool,
        /// Of a file of every environment's plans (plan --all-envs --out FILE): the environment to show [env: TASKFORM_ENV]
        #[arg(long = "env", value_name = "NAME")]
        environment: Option<String>,
    },
    /// Send what the plan lists (create, replace, update, delete), recording every result.
    #[command(after_help = EXIT_CODES)]
    Apply(ApplyCli),
    /// Keep the remote tasks reconciled with DIR: apply at start and after every change.
    Watch(WatchCli),
    /// Record remote tasks whose names match manifests the state does not know (no duplicates).
    Import(ReadCli),
    /// Read every recorded task from the server and record drift (deleted or changed outside taskform).
    Refresh(ReadCli),
    /// Write a manifest for every task of the workspace into DIR and record them in the state (onboarding tasks made in the console).
    Export(ExportCli),
    /// Look at the state and edit it by hand (forget, rename, record by ID); nothing changes on the server.
    State(StateCli),
    /// Pause an environment: its watchers keep fetching and planning but send nothing, and apply refuses (without --ignore-suspend), until `taskform resume`.
    Suspend {
        /// Why (shown by watchers' /status, `state list` and the refused apply).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        opts: StateOpts,
    },
    /// Ask a running watcher to fetch (with --git) and reconcile now (POST /reconcile with TASKFORM_WEBHOOK_SECRET); with --wait, report the result.
    Reconcile {
        /// The watcher's --listen address (HOST:PORT) or URL.
        #[arg(long, value_name = "ADDR|URL")]
        listen: String,
        /// Of a watcher of every environment (watch --all-envs): this environment only [default: all]
        #[arg(long = "env", value_name = "NAME")]
        environment: Option<String>,
        /// Wait for the reconcile and report its result (exit 1 when it failed).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after SECS.
        #[arg(long, value_name = "SECS", default_value_t = 600.0)]
        timeout: f64,
    },
    /// Alerts: `taskform notify test` sends a test alert to every receiver of `notify:` in taskform.yaml and reports each answer.
    Notify {
        #[command(subcommand)]
        command: NotifySub,
    },
    /// Resume a suspended environment: its watchers reconcile at once.
    Resume {
        #[command(flatten)]
        opts: StateOpts,
    },
    /// Run a local emulator of the DataArts collection-task API (prints its URL first).
    Emulator(EmulatorCli),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Print the version, commit, build date and target.
    Version {
        #[arg(long, value_enum, default_value_t = DataFormat::Text)]
        format: DataFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OnChangeCli {
    /// Create a new task; the previous one is recorded as superseded (create-only APIs).
    Recreate,
    /// Change the task in place with PUT, keeping its ID.
    Update,
}

#[derive(Args)]
#[command(next_help_heading = "Lifecycle")]
struct LifecycleCli {
    /// Plan and apply only tasks whose names match NAME (`*` and `?` globs; repeatable); the others are left alone.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// Plan and apply only tasks whose manifests carry the label (`taskform: {labels: {KEY: VALUE}}`; repeatable: all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    labels: Vec<String>,
    /// What a changed task gets [default: `on_change` of taskform.yaml, else update]
    #[arg(long, value_enum)]
    on_change: Option<OnChangeCli>,
    /// Delete remote tasks no manifest declares any more, and those a replace superseded.
    #[arg(long)]
    prune: bool,
    /// With --prune: refuse to delete more than N remote tasks.
    #[arg(long, value_name = "N", default_value_t = taskform::plan::guard::DEFAULT_MAX_DELETES)]
    max_deletes: usize,
    /// With --prune: delete past the guard (more than --max-deletes, or every recorded task).
    #[arg(long)]
    force_prune: bool,
    /// Read every recorded task from the server first; drift shows in the plan (needs credentials).
    #[arg(long)]
    refresh: bool,
    /// Look up unrecorded manifests' names on the server and record those tasks instead of creating duplicates (needs credentials).
    #[arg(long)]
    adopt: bool,
}

/// The checks that stop apply and watch before an ordinary mistake costs tasks.
#[derive(Args, Default)]
#[command(next_help_heading = "Safety")]
struct SafetyCli {
    /// Apply a folder that holds no manifest (without it, an empty folder is refused).
    #[arg(long)]
    allow_empty: bool,
    /// Create tasks whose names the service already has although the state records none
    /// (without it, such an apply stops and points to `taskform import`).
    #[arg(long)]
    allow_duplicate_names: bool,
    /// Apply although the state is suspended (`taskform suspend`; a watcher of it sends nothing until `taskform resume`).
    #[arg(long)]
    ignore_suspend: bool,
}

impl LifecycleCli {
    fn policy(&self, recreate_in_doubt: bool, safety: &SafetyCli) -> Policy {
        Policy {
            allow_empty: safety.allow_empty,
            allow_duplicate_names: safety.allow_duplicate_names,
            ignore_suspend: safety.ignore_suspend,
            on_change: self.on_change.map(|c| match c {
                OnChangeCli::Recreate => taskform::plan::OnChange::Recreate,
                OnChangeCli::Update => taskform::plan::OnChange::Update,
            }),
            prune: self.prune,
            max_deletes: self.max_deletes,
            force_prune: self.force_prune,
            refresh: self.refresh,
            adopt: self.adopt,
            recreate_in_doubt,
            destroy: false,
            targets: self.targets.clone(),
            labels: self.labels.clone(),
        }
    }
}

#[derive(Args)]
#[command(next_help_heading = "Connection")]
struct ConnectCli {
    /// Per-request timeout in seconds; a create without an answer in time is in doubt.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Start the built-in emulator in-process (data in the state folder's emulator.json) and use it.
    #[arg(long)]
    emulator: bool,
    /// Extra trusted CA certificates (PEM bundle) for https endpoints [env: TASKFORM_CA_BUNDLE]
    #[arg(long, value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    /// Allow plain http:// to a host that is not loopback (credentials travel unencrypted).
    #[arg(long)]
    allow_insecure_http: bool,
    /// Client-side limit in requests a second (0 = none); halves after throttling.
    #[arg(long, default_value_t = 40.0)]
    max_rate: f64,
    /// Attempts per request where a retry is safe (429, 500, 503, throttling, connect errors; reads also timeouts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
}

impl ConnectCli {
    fn args(&self) -> ConnectArgs {
        ConnectArgs {
            timeout: seconds(self.timeout),
            emulator: self.emulator,
            ca_bundle: self.ca_bundle.clone().or_else(|| {
                std::env::var_os("TASKFORM_CA_BUNDLE")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            }),
            allow_insecure_http: self.allow_insecure_http,
            max_rate: rate(self.max_rate),
            max_attempts: self.max_attempts,
        }
    }
}

#[derive(Args)]
struct ExportCli {
    /// Where the manifests go (created if missing): <data_source_type>/<name>.yaml, and a taskform.yaml naming the target when there is none.
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Wait up to SECS for the state lock instead of failing at once.
    #[arg(long, value_name = "SECS")]
    lock_timeout: Option<f64>,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
    /// Keys whose values are secrets (comma-separated or repeated; matched in any case,
    /// without `_`, `-`, `.`, as a part of a key's name) instead of the built-in list:
    /// password, passwd, pwd, secret, token, access key, secret key, credential,
    /// private key, ak, sk.
    #[arg(long, value_name = "KEYS", value_delimiter = ',')]
    secret_keys: Vec<String>,
    /// Write the values of secret keys into the manifests as the service returned
    /// them, instead of as ${secret:NAME} (a warning names each).
    #[arg(long)]
    plaintext_secrets: bool,
    /// Export every environment taskform.yaml declares, each workspace listed once: the
    /// tasks all environments share as shared manifests, each environment's differences
    /// as patch: documents in its overlay, its own tasks as manifests there; each
    /// recorded in its environment's state.
    #[arg(long)]
    all_envs: bool,
    #[command(flatten)]
    connect: ConnectCli,
}

#[derive(Args)]
struct ReadCli {
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Wait up to SECS for the state lock instead of failing at once.
    #[arg(long, value_name = "SECS")]
    lock_timeout: Option<f64>,
    /// refresh: read only tasks whose names match NAME (globs; repeatable).
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// refresh: read only tasks whose manifests carry the label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    labels: Vec<String>,
    #[command(flatten)]
    connect: ConnectCli,
}

impl ReadCli {
    fn args(self) -> cli::ReadArgs {
        cli::ReadArgs {
            connect: self.connect.args(),
            dir: self.dir,
            target: self.target.into(),
            lock_timeout: self.lock_timeout.map(seconds),
            targets: self.targets,
            labels: self.labels,
        }
    }
}

#[derive(Args)]
struct StateCli {
    #[command(subcommand)]
    command: StateSub,
}

/// What every `taskform state` command takes.
#[derive(Args)]
struct StateOpts {
    /// The manifest folder whose state to use.
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Output format (list and show).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Wait up to SECS for the state lock instead of failing at once.
    #[arg(long, value_name = "SECS")]
    lock_timeout: Option<f64>,
    #[command(flatten)]
    connect: ConnectCli,
}

#[derive(Subcommand)]
enum StateSub {
    /// Every recorded task: name, task ID, hash, file, applied at (and superseded, in doubt).
    List(StateOpts),
    /// One record and its stored body (sensitive values shown as (sensitive)).
    Show {
        name: String,
        #[command(flatten)]
        opts: StateOpts,
    },
    /// Forget tasks without deleting them on the server.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        opts: StateOpts,
    },
    /// The record follows a rename of the task's manifest.
    Mv {
        old: String,
        new: String,
        #[command(flatten)]
        opts: StateOpts,
    },
    /// Record the remote task TASK_ID for the manifest NAME (read with show first).
    Import {
        name: String,
        task_id: String,
        #[command(flatten)]
        opts: StateOpts,
    },
    /// Copy a state (journal folded in, lineage and serial kept) between two locations,
    /// e.g. state/taskform.json into postgres://... when a team moves, and back.
    Copy {
        /// Where the state is: a state file or a postgres:// URL.
        #[arg(value_name = "SRC")]
        src: String,
        /// Where it goes: a state file or a postgres:// URL.
        #[arg(value_name = "DST")]
        dst: String,
        /// The state's name on a PostgreSQL side [env: TASKFORM_STATE_NAME] [default: default]
        #[arg(long, value_name = "NAME")]
        state_name: Option<String>,
        /// The destination's name when both sides are PostgreSQL [default: --state-name]
        #[arg(long, value_name = "NAME")]
        to_state_name: Option<String>,
        /// The PostgreSQL schema [env: TASKFORM_STATE_SCHEMA] [default: taskform]
        #[arg(long, value_name = "SCHEMA")]
        state_schema: Option<String>,
        /// Replace a destination that holds another state, a newer one, or a journal.
        #[arg(long)]
        force: bool,
        /// Retire the source: it then holds only a tombstone naming the destination, so that a run against it is refused with where the state went (two live copies of one state never diverge).
        #[arg(long = "move")]
        move_source: bool,
        /// Wait up to SECS for each lock instead of failing at once.
        #[arg(long, value_name = "SECS")]
        lock_timeout: Option<f64>,
    },
}

#[derive(Subcommand)]
enum NotifySub {
    /// Send a test alert to every receiver and report each one's answer (exit 1 when one failed).
    Test {
        /// The manifest folder whose taskform.yaml names the receivers.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The environment, in a repo whose taskform.yaml declares `environments:` [env: TASKFORM_ENV]
        #[arg(long = "env", value_name = "NAME")]
        environment: Option<String>,
    },
}

#[derive(Args)]
struct SendArgs {
    /// Creates, updates and deletes in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// Wait up to SECS for the state lock instead of failing at once.
    #[arg(long, value_name = "SECS")]
    lock_timeout: Option<f64>,
    #[command(flatten)]
    connect: ConnectCli,
}

impl SendArgs {
    fn options(&self) -> ApplyOptions {
        ApplyOptions {
            concurrency: self.concurrency as usize,
            max_rate: rate(self.connect.max_rate),
            max_attempts: self.connect.max_attempts,
            ..ApplyOptions::default()
        }
    }
}

#[derive(Args)]
struct WatchCli {
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    send: SendArgs,
    /// Quiet time after the last file event before reconciling.
    #[arg(long, default_value_t = 500)]
    debounce_ms: u64,
    /// First wait before a failed create with unchanged content is tried again (doubles each time).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    retry_interval: f64,
    /// Also reconcile every SECS without file events (network file systems, drift checks).
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// Log the plan after each change; never apply (no credentials needed).
    #[arg(long)]
    plan_only: bool,
    #[command(flatten)]
    lifecycle: LifecycleCli,
    /// Create tasks whose names the service already has although the state records none
    /// (without it, the watcher refuses and logs the names; see `taskform import`).
    #[arg(long)]
    allow_duplicate_names: bool,
    /// Serve /healthz, /readyz, /status and /metrics (Prometheus) on ADDR (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Watch a git repository (any URL git takes; your usual git authentication) instead of DIR.
    #[arg(long, value_name = "URL")]
    git: Option<String>,
    /// With --git: the branch.
    #[arg(long, default_value = "main", requires = "git")]
    branch: String,
    /// With --git: the manifest folder inside the repository.
    #[arg(long, default_value = "", requires = "git", value_name = "PATH")]
    path: String,
    /// With --git: fetch every SECS (and on POST /hooks/git).
    #[arg(long, default_value_t = 60.0, requires = "git", value_name = "SECS")]
    poll: f64,
    /// With --git: the clone and the trees [default: $XDG_CACHE_HOME/taskform/git/<hash>]
    #[arg(long, requires = "git", value_name = "DIR")]
    git_cache: Option<PathBuf>,
    /// Watch every environment taskform.yaml declares, in this process: each against its own target, state, lock and leadership (one failing never blocks the others); /status has a section per environment and every metric an `environment` label. With --git, each environment keeps its own clone below --git-cache.
    #[arg(long)]
    all_envs: bool,
}

#[derive(Args)]
struct ApplyCli {
    /// A manifest folder (plan now), or a plan file from `plan --out` (apply exactly that plan, no prompt).
    #[arg(default_value = ".", value_name = "DIR|PLAN_FILE")]
    path: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
    /// Output format (json: one result document on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Text: list every unchanged task in the plan shown too.
    #[arg(long)]
    show_unchanged: bool,
    /// With a plan file: the manifest folder it was made for, when the plan file is not where it was made (a downloaded CI artifact). The folder is checked against the plan as always.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Send the outcome (applied, failed, refused) to the receivers of `notify:` in taskform.yaml.
    #[arg(long)]
    notify: bool,
    #[command(flatten)]
    send: SendArgs,
    /// Settle in-doubt creates by search, then record one with the content sent, or create the task again when none has it.
    #[arg(long)]
    recreate_in_doubt: bool,
    /// Delete every task the state records (guarded like --prune; prevent_destroy respected).
    #[arg(long)]
    destroy: bool,
    #[command(flatten)]
    lifecycle: LifecycleCli,
    #[command(flatten)]
    safety: SafetyCli,
}

#[derive(Args)]
struct EmulatorCli {
    /// Address to listen on; port 0 picks a free port. Loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1:7080")]
    listen: std::net::SocketAddr,
    /// Persist tasks in FILE across restarts.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Accepted X-Auth-Token.
    #[arg(long, env = "TASKFORM_EMULATOR_TOKEN", default_value = taskform::emulator::DEMO_TOKEN, hide_env_values = true)]
    token: String,
    /// Access key whose SDK-HMAC-SHA256 signatures are accepted.
    #[arg(long, env = "TASKFORM_EMULATOR_ACCESS_KEY", requires = "secret_key")]
    access_key: Option<String>,
    /// Secret key of --access-key (prefer the environment variable).
    #[arg(
        long,
        env = "TASKFORM_EMULATOR_SECRET_KEY",
        hide_env_values = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,
    #[arg(long, default_value = taskform::emulator::DEMO_PROJECT_ID)]
    project_id: String,
    #[arg(long, default_value = taskform::emulator::DEMO_WORKSPACE)]
    workspace: String,
    /// Requests a second before answering 429 APIGW.0308 (0 = unlimited).
    #[arg(long, default_value_t = 50)]
    rate_limit: u32,
    /// Delay before each API answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability of an injected HTTP 500 (nothing created).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Probability of an injected 429 (nothing created).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Probability of closing the connection after creating the task (no answer).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Seed for the fault draws, for repeatable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Publish the create endpoint only; search, show, update, delete and actions answer 404.
    #[arg(long)]
    create_only: bool,
    /// How show, update, delete and action answer an unknown task ID: 400 (DLG.2253, DLG.2208 for delete), 0818 (400 DLG.0818), 404 (HTTP 404 with the DLG code).
    #[arg(long, value_name = "ANSWER", default_value = "400", value_parser = taskform::emulator::UnknownTask::NAMES)]
    unknown_task: String,
    /// How show and search echo task_config: exact, omitted (left out), reordered (keys in another order, with keys the service adds).
    #[arg(long, value_name = "ECHO", default_value = "exact", value_parser = taskform::emulator::Echo::NAMES)]
    task_config_echo: String,
    /// Accept task bodies without user_id (the Terraform provider never sends it).
    #[arg(long)]
    user_id_optional: bool,
    /// A PUT leaves a paused CRON task paused (enabled 5) whatever its body says; only
    /// `action?action=run` schedules it again.
    #[arg(long)]
    put_keeps_paused: bool,
}

#[derive(Args, Clone, Default)]
struct TargetArgs {
    /// The environment, in a repo whose taskform.yaml declares `environments:` [env: TASKFORM_ENV]
    #[arg(long = "env", value_name = "NAME")]
    environment: Option<String>,
    /// State file, or a PostgreSQL URL (postgres://USER@HOST:PORT/DB?sslmode=require; password in PGPASSWORD or ~/.pgpass) [env: TASKFORM_STATE] [default: DIR/state/taskform.json]
    #[arg(long, value_name = "PATH|URL")]
    state: Option<String>,
    /// Which state of a PostgreSQL database [env: TASKFORM_STATE_NAME] [default: default]
    #[arg(long, value_name = "NAME")]
    state_name: Option<String>,
    /// The PostgreSQL schema holding the states [env: TASKFORM_STATE_SCHEMA] [default: taskform]
    #[arg(long, value_name = "SCHEMA")]
    state_schema: Option<String>,
    /// API endpoint URL [env: TASKFORM_ENDPOINT]
    #[arg(long)]
    endpoint: Option<String>,
    /// Region, giving https://dayu.{region}.myhuaweicloud.com [env: HW_REGION_NAME]
    #[arg(long)]
    region: Option<String>,
    /// Project ID [env: TASKFORM_PROJECT_ID, HW_PROJECT_ID]
    #[arg(long)]
    project_id: Option<String>,
    /// Workspace ID [env: TASKFORM_WORKSPACE]
    #[arg(long)]
    workspace: Option<String>,
}

impl From<TargetArgs> for TargetFlags {
    fn from(a: TargetArgs) -> Self {
        TargetFlags {
            endpoint: a.endpoint,
            region: a.region,
            project_id: a.project_id,
            workspace: a.workspace,
            state: a.state,
            state_name: a.state_name,
            state_schema: a.state_schema,
            environment: a.environment,
        }
    }
}

fn format(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
        OutputFormat::Markdown => Format::Markdown,
    }
}

/// `--label KEY=VALUE`.
fn label(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(s.to_string()),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `--max-rate`: 0 (or less, or not a number) means no limit; a positive rate is at
/// least one request in 100 seconds (a smaller one would wait for ever).
fn rate(r: f64) -> f64 {
    if r.is_finite() && r > 0.0 {
        r.max(0.01)
    } else {
        0.0
    }
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, 86_400.0)
    } else {
        30.0
    })
}

fn main() {
    // Usage errors exit 1, never 2 (`plan --detailed-exitcode`'s "there are changes"):
    // a typo in a pipeline must not look like a plan with changes.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok
                }
                _ => Exit::Error,
            };
            std::process::exit(code.code());
        }
    };
    taskform::cli::logging::init(
        cli.verbose,
        matches!(cli.log_format, LogFormat::Json),
        !matches!(cli.command, Command::Emulator(_)),
    );
    let color = match cli.color {
        Color::Auto => ColorChoice::Auto,
        Color::Always => ColorChoice::Always,
        Color::Never => ColorChoice::Never,
    };
    let env = cli::process_env;
    let progress_bar = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && matches!(cli.log_format, LogFormat::Text)
        && cli.verbose == 0;
    let exit = match cli.command {
        Command::Validate { paths, format } => cli::validate(
            cli::ValidateArgs {
                paths,
                json: matches!(format, DataFormat::Json),
            },
            &env,
        ),
        Command::Fmt { paths, check } => cli::fmt(cli::FmtArgs { paths, check }, &env),
        Command::Schema { dir } => cli::schema(dir, &env),
        Command::Completions { shell } => cli::completions(Cli::command(), shell),
        Command::Man => cli::man(Cli::command()),
        Command::Version { format } => cli::version(matches!(format, DataFormat::Json)),
        Command::Plan {
            dir,
            target,
            format: f,
            detailed_exitcode,
            recreate_in_doubt,
            destroy,
            out,
            full_plan_hint,
            all_envs,
            show_unchanged,
            notify,
            lifecycle,
            connect,
        } => cli::plan(
            PlanArgs {
                dir,
                target: target.into(),
                format: format(f),
                detailed_exitcode,
                policy: Policy {
                    destroy,
                    ..lifecycle.policy(recreate_in_doubt, &SafetyCli::default())
                },
                connect: connect.args(),
                color,
                out,
                full_plan_hint,
                all_envs,
                show_unchanged,
                notify,
            },
            &env,
        ),
        Command::Apply(a) => cli::apply(
            cli::ApplyArgs {
                path: a.path,
                target: a.target.into(),
                format: format(a.format),
                yes: a.yes,
                apply: a.send.options(),
                progress_bar,
                connect: a.send.connect.args(),
                lock_timeout: a.send.lock_timeout.map(seconds),
                policy: Policy {
                    destroy: a.destroy,
                    ..a.lifecycle.policy(a.recreate_in_doubt, &a.safety)
                },
                color,
                show_unchanged: a.show_unchanged,
                dir: a.dir,
                notify: a.notify,
            },
            &env,
        ),
        Command::Watch(w) => cli::watch(
            cli::WatchArgs {
                dir: w.dir,
                target: w.target.into(),
                apply: w.send.options(),
                debounce: Duration::from_millis(w.debounce_ms),
                retry_interval: seconds(w.retry_interval),
                // At least a second: 0 would reconcile in a tight loop against the service.
                interval: w.interval.map(|s| seconds(s).max(Duration::from_secs(1))),
                plan_only: w.plan_only,
                lock_timeout: w.send.lock_timeout.map(seconds),
                connect: w.send.connect.args(),
                listen: w.listen,
                git: w.git.map(|url| cli::GitArgs {
                    url,
                    branch: w.branch,
                    path: w.path,
                    poll: seconds(w.poll).max(Duration::from_secs(1)),
                    cache: w.git_cache,
                }),
                all_envs: w.all_envs,
                policy: w.lifecycle.policy(
                    false,
                    &SafetyCli {
                        allow_empty: true,
                        allow_duplicate_names: w.allow_duplicate_names,
                        ignore_suspend: false,
                    },
                ),
            },
            &env,
        ),
        Command::Import(r) => cli::import(r.args(), &env),
        Command::Refresh(r) => cli::refresh(r.args(), &env),
        Command::State(s) => state_command(s.command, &env),
        Command::Suspend { reason, opts } => {
            state_command_with(cli::StateCommand::Suspend { reason }, opts, &env)
        }
        Command::Reconcile {
            listen,
            environment,
            wait,
            timeout,
        } => cli::sync(
            cli::SyncArgs {
                listen,
                environment,
                wait,
                timeout: seconds(timeout),
            },
            &env,
        ),
        Command::Notify {
            command: NotifySub::Test { dir, environment },
        } => cli::notify_test(dir, environment, &env),
        Command::Resume { opts } => state_command_with(cli::StateCommand::Resume, opts, &env),
        Command::Export(x) => cli::export(
            cli::ExportArgs {
                dir: x.dir,
                target: x.target.into(),
                connect: x.connect.args(),
                lock_timeout: x.lock_timeout.map(seconds),
                force: x.force,
                secrets: taskform::reconcile::export::Secrets {
                    keys: match x.secret_keys.is_empty() {
                        true => Default::default(),
                        false => taskform::load::export::SecretKeys::from_list(&x.secret_keys),
                    },
                    plaintext: x.plaintext_secrets,
                },
                all_envs: x.all_envs,
            },
            &env,
        ),
        Command::Show {
            file,
            format: f,
            full_plan_hint,
            show_unchanged,
            environment,
        } => cli::show(
            file,
            format(f),
            color,
            full_plan_hint,
            show_unchanged,
            environment.or_else(|| env("TASKFORM_ENV").filter(|e| !e.is_empty())),
        ),
        Command::Emulator(e) => cli::emulator(
            taskform::emulator::Config {
                listen: e.listen,
                data: e.data,
                token: Some(e.token),
                access_key: e.access_key,
                secret_key: e.secret_key,
                project_id: e.project_id,
                workspace: e.workspace,
                rate_limit: e.rate_limit,
                latency: Duration::from_millis(e.latency_ms),
                fail_rate: e.fail_rate,
                throttle_rate: e.throttle_rate,
                drop_rate: e.drop_rate,
                seed: e.seed,
                create_only: e.create_only,
                unknown_task: taskform::emulator::UnknownTask::parse(&e.unknown_task)
                    .unwrap_or_default(),
                task_config_echo: taskform::emulator::Echo::parse(&e.task_config_echo)
                    .unwrap_or_default(),
                user_id_optional: e.user_id_optional,
            },
            taskform::emulator::Modes {
                put_keeps_paused: e.put_keeps_paused,
            },
        ),
    };
    std::process::exit(Exit::code(exit));
}

/// `taskform state ...`.
fn state_command(sub: StateSub, env: cli::Env) -> Exit {
    let (command, o) = match sub {
        StateSub::Copy {
            src,
            dst,
            state_name,
            to_state_name,
            state_schema,
            force,
            move_source,
            lock_timeout,
        } => {
            return cli::state_copy(
                cli::CopyArgs {
                    src,
                    dst,
                    state_name,
                    to_state_name,
                    state_schema,
                    lock_timeout: lock_timeout.map(seconds),
                    force,
                    move_source,
                },
                env,
            );
        }
        StateSub::List(o) => (cli::StateCommand::List, o),
        StateSub::Show { name, opts } => (cli::StateCommand::Show { name }, opts),
        StateSub::Rm { names, opts } => (cli::StateCommand::Rm { names }, opts),
        StateSub::Mv { old, new, opts } => (cli::StateCommand::Mv { old, new }, opts),
        StateSub::Import {
            name,
            task_id,
            opts,
        } => (cli::StateCommand::Import { name, task_id }, opts),
    };
    state_command_with(command, o, env)
}

fn state_command_with(command: cli::StateCommand, o: StateOpts, env: cli::Env) -> Exit {
    cli::state(
        command,
        cli::StateArgs {
            dir: o.dir,
            target: o.target.into(),
            format: format(o.format),
            lock_timeout: o.lock_timeout.map(seconds),
            connect: o.connect.args(),
        },
        env,
    )
}
