//! Reaching the API: target, credentials and client, or the built-in emulator.

use super::Env;
use crate::emulator;
use crate::load::settings::Settings;
use crate::load::target::{self, Resolved, TargetFlags};
use crate::remote::auth::{Credentials, Secret};
use crate::remote::client::{Client, ClientConfig};
use crate::state::Target;
use std::sync::Arc;
use std::time::Duration;

/// What a command needs to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub target: TargetFlags,
    pub timeout: Duration,
    /// Start the built-in emulator in-process and use it.
    pub emulator: bool,
    /// The command, for messages (`apply`, `watch`).
    pub command: &'static str,
    pub ca_bundle: Option<std::path::PathBuf>,
    pub allow_insecure_http: bool,
    /// Reads a second (0 = no limit).
    pub max_rate: f64,
}

/// The connection flags of the commands that reach the API.
#[derive(Debug, Clone)]
pub struct ConnectArgs {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Start the built-in emulator in-process and use it.
    pub emulator: bool,
    /// Extra trusted roots (PEM) for https endpoints.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Allow plain http to a host that is not loopback.
    pub allow_insecure_http: bool,
    /// Requests a second (0 = no limit).
    pub max_rate: f64,
}

impl Default for ConnectArgs {
    fn default() -> Self {
        ConnectArgs {
            timeout: Duration::from_secs(30),
            emulator: false,
            ca_bundle: None,
            allow_insecure_http: false,
            max_rate: 40.0,
        }
    }
}

impl ConnectOptions {
    pub fn new(target: &TargetFlags, c: &ConnectArgs, command: &'static str) -> Self {
        ConnectOptions {
            target: target.clone(),
            timeout: c.timeout,
            emulator: c.emulator,
            command,
            ca_bundle: c.ca_bundle.clone(),
            allow_insecure_http: c.allow_insecure_http,
            max_rate: c.max_rate,
        }
    }
}

/// A client for one target.
pub struct Connection {
    pub client: Arc<Client>,
    pub target: Target,
    pub resolved: Resolved,
    /// Kept alive while the connection is used.
    _emulator: Option<emulator::Emulator>,
}

impl Connection {
    /// Resolves the target and credentials (failing before anything is sent when
    /// either is missing) and builds the client.
    pub async fn open(
        opts: &ConnectOptions,
        env: Env<'_>,
        settings: &Settings,
    ) -> Result<Connection, String> {
        let mut resolved = target::resolve(&opts.target, env, settings);
        let (creds, emu) = if opts.emulator {
            let (creds, emu) = start_emulator(&mut resolved).await?;
            (creds, Some(emu))
        } else {
            let region = opts
                .target
                .region
                .clone()
                .or_else(|| env("HW_REGION_NAME"))
                .or_else(|| settings.region.clone());
            (
                Credentials::from_env(env, region.as_deref())
                    .map_err(|msg| format!("{msg}; nothing was sent"))?,
                None,
            )
        };
        let (endpoint, target) = required_target(&resolved, opts.command)?;
        let client = Client::new(
            ClientConfig {
                endpoint: endpoint.clone(),
                project_id: target.project_id.clone(),
                workspace: target.workspace.clone(),
                timeout: opts.timeout,
                connect_timeout: Duration::from_secs(10),
                ca_bundle: opts.ca_bundle.clone(),
                allow_insecure_http: opts.allow_insecure_http,
                max_rate: opts.max_rate,
            },
            creds,
        )?;

        Ok(Connection {
            client: Arc::new(client),
            target,
            resolved,
            _emulator: emu,
        })
    }
}

/// Starts the built-in emulator with its data beside the state file; it sets the
/// endpoint, and the project and workspace where none is set.
async fn start_emulator(
    resolved: &mut Resolved,
) -> Result<(Credentials, emulator::Emulator), String> {
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
    let emu = emulator::start(cfg).await.map_err(|e| {
        format!(
            "cannot start the built-in emulator (data {}): {e}",
            data.display()
        )
    })?;
    tracing::info!(url = %emu.url(), data = %data.display(), "started the built-in emulator");
    resolved.endpoint = Some(emu.url());
    resolved.project_id = Some(project_id);
    resolved.workspace = Some(workspace);
    Ok((Credentials::Token(Secret::new(emulator::DEMO_TOKEN)), emu))
}

fn required_target(resolved: &Resolved, command: &str) -> Result<(String, Target), String> {
    if let (Some(e), Some(p), Some(w)) = (
        &resolved.endpoint,
        &resolved.project_id,
        &resolved.workspace,
    ) {
        return Ok((
            e.clone(),
            Target {
                project_id: p.clone(),
                workspace: w.clone(),
            },
        ));
    }
    let mut missing = Vec::new();
    if resolved.endpoint.is_none() {
        missing.push("the endpoint (--endpoint / TASKFORM_ENDPOINT, --region / HW_REGION_NAME, or `endpoint:`/`region:` in taskform.yaml)");
    }
    if resolved.project_id.is_none() {
        missing.push("the project (--project-id / TASKFORM_PROJECT_ID / HW_PROJECT_ID, or `project_id:` in taskform.yaml)");
    }
    if resolved.workspace.is_none() {
        missing.push(
            "the workspace (--workspace / TASKFORM_WORKSPACE, or `workspace:` in taskform.yaml)",
        );
    }
    Err(format!(
        "{} needs {}; nothing was sent",
        command,
        missing.join(" and ")
    ))
}
