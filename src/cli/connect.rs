//! Reaching the API: target, credentials (from the environment only) and client, or
//! the built-in emulator started in-process.

use super::Env;
use crate::emulator;
use crate::error::Error;
use crate::load::settings::Settings;
use crate::load::target::{self, Resolved, TargetFlags};
use crate::remote::auth::{Credentials, Secret};
use crate::remote::client::{Client, ClientConfig, TaskApi};
use crate::state::Target;
use std::sync::Arc;
use std::time::Duration;

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
    /// Attempts per read where a retry is safe (writes: `ApplyOptions::max_attempts`,
    /// from the same flag).
    pub max_attempts: u32,
}

impl Default for ConnectArgs {
    fn default() -> Self {
        ConnectArgs {
            timeout: Duration::from_secs(30),
            emulator: false,
            ca_bundle: None,
            allow_insecure_http: false,
            max_rate: 40.0,
            max_attempts: 5,
        }
    }
}

/// A client for one target.
pub struct Connection {
    pub client: Arc<Client>,
    /// The same client, as the library takes it.
    pub api: Arc<dyn TaskApi>,
    pub target: Target,
    pub resolved: Resolved,
    /// Kept alive while the connection is used.
    _emulator: Option<emulator::Emulator>,
}

impl Connection {
    /// Resolves the target of the manifest folder `dir` and the credentials (failing
    /// before anything is sent when either is missing) and builds the client.
    /// `command` names the command in messages (`apply`, `watch`).
    pub async fn open(
        flags: &TargetFlags,
        opts: &ConnectArgs,
        command: &str,
        env: Env<'_>,
        settings: &Settings,
        dir: &std::path::Path,
    ) -> Result<Connection, Error> {
        let mut resolved = target::resolve(flags, env, settings, dir)?;
        let (creds, emu) = if opts.emulator {
            let (creds, emu) = start_emulator(&mut resolved, dir).await?;
            (creds, Some(emu))
        } else {
            let region = flags
                .region
                .clone()
                .or_else(|| env("HW_REGION_NAME"))
                .or_else(|| settings.region.clone());
            (
                Credentials::from_env(env, region.as_deref())
                    .map_err(|e| Error::Command(format!("{e}; nothing was sent")))?,
                None,
            )
        };
        let (endpoint, target) = required_target(&resolved, command)?;
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
                max_attempts: opts.max_attempts,
            },
            creds,
        )?;

        let client = Arc::new(client);
        Ok(Connection {
            api: client.clone(),
            client,
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
    dir: &std::path::Path,
) -> Result<(Credentials, emulator::Emulator), Error> {
    let project_id = resolved
        .project_id
        .clone()
        .unwrap_or_else(|| emulator::DEMO_PROJECT_ID.to_string());
    let workspace = resolved
        .workspace
        .clone()
        .unwrap_or_else(|| emulator::DEMO_WORKSPACE.to_string());
    // Beside a state file; with a PostgreSQL state, in the manifest folder's default
    // state folder.
    let data = match resolved.state.as_file() {
        Some(state) => crate::fsutil::parent_dir(state).join("emulator.json"),
        None => dir
            .join(target::DEFAULT_STATE)
            .with_file_name("emulator.json"),
    };
    let cfg = emulator::Config {
        data: Some(data.clone()),
        project_id: project_id.clone(),
        workspace: workspace.clone(),
        ..emulator::Config::default()
    };
    let emu = emulator::start(cfg).await.map_err(|e| {
        Error::Command(format!(
            "cannot start the built-in emulator (data {}): {e}",
            data.display()
        ))
    })?;
    tracing::info!(url = %emu.url(), data = %data.display(), "started the built-in emulator");
    resolved.endpoint = Some(emu.url());
    resolved.project_id = Some(project_id);
    resolved.workspace = Some(workspace);
    Ok((Credentials::Token(Secret::new(emulator::DEMO_TOKEN)), emu))
}

fn required_target(resolved: &Resolved, command: &str) -> Result<(String, Target), Error> {
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
    Err(Error::Command(format!(
        "{} needs {}; nothing was sent",
        command,
        missing.join(" and ")
    )))
}
