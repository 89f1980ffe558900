//! Where requests go and where the state lives: flags beat the environment, which
//! beats `taskform.yaml`.

use crate::load::settings::Settings;
use std::path::PathBuf;

/// The state file used when nothing else names one (relative to the working folder).
pub const DEFAULT_STATE: &str = "state/taskform.json";

/// Values given on the command line.
#[derive(Debug, Clone, Default)]
pub struct TargetFlags {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub workspace: Option<String>,
    pub state: Option<PathBuf>,
}

/// The resolved target; fields stay `None` where nothing set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: Option<String>,
    pub project_id: Option<String>,
    pub workspace: Option<String>,
    pub state: PathBuf,
}

/// `https://dayu.{region}.myhuaweicloud.com`.
pub fn endpoint_for_region(region: &str) -> String {
    format!("https://dayu.{region}.myhuaweicloud.com")
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Resolves flags, environment and settings.
pub fn resolve(
    flags: &TargetFlags,
    env: &dyn Fn(&str) -> Option<String>,
    settings: &Settings,
) -> Resolved {
    let endpoint = nonempty(flags.endpoint.clone())
        .or_else(|| nonempty(flags.region.clone()).map(|r| endpoint_for_region(&r)))
        .or_else(|| nonempty(env("TASKFORM_ENDPOINT")))
        .or_else(|| nonempty(env("HW_REGION_NAME")).map(|r| endpoint_for_region(&r)))
        .or_else(|| nonempty(settings.endpoint.clone()))
        .or_else(|| nonempty(settings.region.clone()).map(|r| endpoint_for_region(&r)))
        .map(|e| e.trim_end_matches('/').to_string());
    let project_id = nonempty(flags.project_id.clone())
        .or_else(|| nonempty(env("TASKFORM_PROJECT_ID")))
        .or_else(|| nonempty(env("HW_PROJECT_ID")))
        .or_else(|| nonempty(settings.project_id.clone()));
    let workspace = nonempty(flags.workspace.clone())
        .or_else(|| nonempty(env("TASKFORM_WORKSPACE")))
        .or_else(|| nonempty(settings.workspace.clone()));
    let state = flags
        .state
        .clone()
        .or_else(|| nonempty(env("TASKFORM_STATE")).map(PathBuf::from))
        .or_else(|| settings.state.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE));
    Resolved {
        endpoint,
        project_id,
        workspace,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_environment_beat_settings() {
        let settings = Settings {
            project_id: Some("from-file".into()),
            workspace: Some("ws-file".into()),
            region: Some("cn-north-4".into()),
            ..Settings::default()
        };
        let env = |k: &str| match k {
            "TASKFORM_PROJECT_ID" => Some("from-env".into()),
            "HW_REGION_NAME" => Some("ap-southeast-1".into()),
            _ => None,
        };
        let r = resolve(&TargetFlags::default(), &env, &settings);
        assert_eq!(r.project_id.as_deref(), Some("from-env"));
        assert_eq!(r.workspace.as_deref(), Some("ws-file"));
        assert_eq!(
            r.endpoint.as_deref(),
            Some("https://dayu.ap-southeast-1.myhuaweicloud.com")
        );
        assert_eq!(r.state, PathBuf::from(DEFAULT_STATE));
        let flags = TargetFlags {
            project_id: Some("flag".into()),
            endpoint: Some("http://127.0.0.1:1/".into()),
            ..TargetFlags::default()
        };
        let r = resolve(&flags, &env, &settings);
        assert_eq!(r.project_id.as_deref(), Some("flag"));
        assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:1"));
    }
}
