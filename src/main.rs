//! The `taskform` binary: parses arguments and calls the library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use taskform::commands::{self, PlanArgs};
use taskform::exit::Exit;
use taskform::render::Format;
use taskform::style::ColorChoice;
use taskform::target::TargetFlags;

const EXIT_CODES: &str = "\
Exit codes:
  0    success, or nothing to do
  1    error: invalid manifests, unusable state, refused confirmation, or (apply) a create that failed or is in doubt
  2    plan --detailed-exitcode: the plan lists something other than `unchanged`
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
}

#[derive(Subcommand)]
enum Command {
    /// Check every manifest below DIR; report every problem as file:line:col.
    Validate {
        /// Manifest folder (searched recursively for *.yaml and *.yml).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Show what apply would do. Needs no network and no credentials.
    #[command(after_help = EXIT_CODES)]
    Plan {
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Exit 2 when anything other than `unchanged` is listed, 0 when nothing is.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Plan in-doubt tasks as creates again (may make a duplicate on the server).
        #[arg(long)]
        recreate_in_doubt: bool,
    },
}

#[derive(Args, Clone, Default)]
struct TargetArgs {
    /// State file [env: TASKFORM_STATE] [default: state/taskform.json]
    #[arg(long)]
    state: Option<PathBuf>,
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
        TargetFlags { endpoint: a.endpoint, region: a.region, project_id: a.project_id, workspace: a.workspace, state: a.state }
    }
}

fn format(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
    }
}

fn main() {
    let cli = Cli::parse();
    taskform::logging::init(cli.verbose, matches!(cli.log_format, LogFormat::Json));
    let color = match cli.color {
        Color::Auto => ColorChoice::Auto,
        Color::Always => ColorChoice::Always,
        Color::Never => ColorChoice::Never,
    };
    let env = commands::process_env;
    let exit = match cli.command {
        Command::Validate { dir } => commands::validate(dir, &env),
        Command::Plan { dir, target, format: f, detailed_exitcode, recreate_in_doubt } => commands::plan(
            PlanArgs { dir, target: target.into(), format: format(f), detailed_exitcode, recreate_in_doubt, color },
            &env,
        ),
    };
    std::process::exit(Exit::code(exit));
}
