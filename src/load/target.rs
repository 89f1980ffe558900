//! Where requests go and where the state lives: flags beat the environment, which
//! beats `taskform.yaml`; an endpoint given explicitly beats one derived from a region.
//! The state's default lives in the manifest folder, never in whatever folder the
//! command happens to run in.

use crate::load::settings::Settings;
use crate::location::{LocationError, StateLocation};
use std::path::Path;

/// The state file used when nothing else names one, relative to the manifest folder.
pub const DEFAULT_STATE: &str = "state/taskform.json";

/// Where the state location came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StateSource {
    /// `--state`.
    Flag,
    /// `TASKFORM_STATE`.
    Env,
    /// `state:` in taskform.yaml (relative to that file).
    Settings,
    /// Nothing named one: [`DEFAULT_STATE`] in the manifest folder.
    #[default]
    Default,
}

/// Values given on the command line.
#[derive(Clone, Default)]
pub struct TargetFlags {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub project_id: Option<String>,
    pub workspace: Option<String>,
    /// `--state`: a path or a `postgres://` URL.
    pub state: Option<String>,
    /// `--state-name` (PostgreSQL states).
    pub state_name: Option<String>,
    /// `--state-schema` (PostgreSQL states).
    pub state_schema: Option<String>,
    /// `--env`: the environment of a repo that declares environments.
    pub environment: Option<String>,
}

impl std::fmt::Debug for TargetFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetFlags")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("project_id", &self.project_id)
            .field("workspace", &self.workspace)
            .field(
                "state",
                &self.state.as_deref().map(crate::location::shown_value),
            )
            .field("state_name", &self.state_name)
            .field("state_schema", &self.state_schema)
            .field("environment", &self.environment)
            .finish()
    }
}

/// The resolved target; fields stay `None` where nothing set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: Option<String>,
    pub project_id: Option<String>,
    pub workspace: Option<String>,
    pub state: StateLocation,
    pub state_source: StateSource,
}

/// `https://dayu.{region}.myhuaweicloud.com`.
pub fn endpoint_for_region(region: &str) -> String {
    format!("https://dayu.{region}.myhuaweicloud.com")
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Resolves flags, environment and settings for the manifest folder `dir`. A state
/// named `postgres://...` is a PostgreSQL state, named by `--state-name` /
/// `TASKFORM_STATE_NAME` / `state_name:` in its schema (`--state-schema` /
/// `TASKFORM_STATE_SCHEMA` / `state_schema:`).
pub fn resolve(
    flags: &TargetFlags,
    env: &dyn Fn(&str) -> Option<String>,
    settings: &Settings,
    dir: &Path,
) -> Result<Resolved, LocationError> {
    // With an environment chosen, its target and state are taskform.yaml's alone: the
    // process environment is not read for them (a runner's HW_PROJECT_ID or
    // TASKFORM_WORKSPACE must not send prod's tasks elsewhere); flags still apply.
    let env: &dyn Fn(&str) -> Option<String> = match settings.environment {
        Some(_) => &|_: &str| None,
        None => env,
    };
    // An endpoint named explicitly anywhere beats one derived from a region: a region
    // in the environment (HW_REGION_NAME, set for the SDKs) must not send requests
    // elsewhere than taskform.yaml's endpoint.
    let endpoint = nonempty(flags.endpoint.clone())
        .or_else(|| nonempty(env("TASKFORM_ENDPOINT")))
        .or_else(|| nonempty(settings.endpoint.clone()))
        .or_else(|| nonempty(flags.region.clone()).map(|r| endpoint_for_region(&r)))
        .or_else(|| nonempty(env("HW_REGION_NAME")).map(|r| endpoint_for_region(&r)))
        .or_else(|| nonempty(settings.region.clone()).map(|r| endpoint_for_region(&r)))
        .map(|e| e.trim_end_matches('/').to_string());
    let project_id = nonempty(flags.project_id.clone())
        .or_else(|| nonempty(env("TASKFORM_PROJECT_ID")))
        .or_else(|| nonempty(env("HW_PROJECT_ID")))
        .or_else(|| nonempty(settings.project_id.clone()));
    let workspace = nonempty(flags.workspace.clone())
        .or_else(|| nonempty(env("TASKFORM_WORKSPACE")))
        .or_else(|| nonempty(settings.workspace.clone()));
    // A name given by flag or environment must fit the state; one in taskform.yaml
    // goes with a PostgreSQL state and is not held against a state file named by
    // --state (a local copy, say).
    let explicit_name =
        nonempty(flags.state_name.clone()).or_else(|| nonempty(env("TASKFORM_STATE_NAME")));
    let name = explicit_name
        .clone()
        .or_else(|| nonempty(settings.state_name.clone()));
    let schema = nonempty(flags.state_schema.clone())
        .or_else(|| nonempty(env("TASKFORM_STATE_SCHEMA")))
        .or_else(|| nonempty(settings.state_schema.clone()));
    let (name, schema) = (name.as_deref(), schema.as_deref());
    let file =
        |p: &Path| StateLocation::file(crate::fsutil::normalize(p), explicit_name.as_deref());
    let (state, state_source) = if let Some(s) = nonempty(flags.state.clone()) {
        (location(&s, name, schema, &file)?, StateSource::Flag)
    } else if let Some(s) = nonempty(env("TASKFORM_STATE")) {
        (location(&s, name, schema, &file)?, StateSource::Env)
    } else if let Some(s) = &settings.state {
        let located = match s {
            StateLocation::File(p) => file(p)?,
            pg => pg.clone().named(name, schema)?,
        };
        (located, StateSource::Settings)
    } else {
        (file(&dir.join(DEFAULT_STATE))?, StateSource::Default)
    };
    Ok(Resolved {
        endpoint,
        project_id,
        workspace,
        state,
        state_source,
    })
}

fn location(
    value: &str,
    name: Option<&str>,
    schema: Option<&str>,
    file: &dyn Fn(&Path) -> Result<StateLocation, LocationError>,
) -> Result<StateLocation, LocationError> {
    match crate::location::is_postgres_url(value) || crate::location::url_like(value).is_some() {
        true => StateLocation::parse(value, name, schema),
        false => file(Path::new(value)),
    }
}

/// The state file the working folder held by default before the default followed the
/// manifest folder: a state there, while the default location has none, is refused
/// instead of silently starting from an empty state (which would create every task
/// again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no state at {default}, but {legacy} holds one: taskform keeps the state in the manifest folder ({default}) unless `state:` in taskform.yaml, TASKFORM_STATE or --state names it. Move the state there (with its .journal, if any), or set `state: {suggested}` in {settings}"
)]
pub struct LegacyState {
    pub default: String,
    pub legacy: String,
    /// The `state:` value that keeps using the old file.
    pub suggested: String,
    pub settings: String,
}

/// Refuses a default state location that is empty while the old default (relative to
/// the working folder) holds a state.
pub fn check_legacy_state(r: &Resolved, dir: &Path) -> Result<(), LegacyState> {
    let Some(state) = r.state.as_file() else {
        return Ok(());
    };
    if r.state_source != StateSource::Default || state.exists() {
        return Ok(());
    }
    let legacy = Path::new(DEFAULT_STATE);
    let same = match (
        std::fs::canonicalize(legacy),
        std::fs::canonicalize(crate::fsutil::parent_dir(state)),
    ) {
        (Ok(l), Ok(d)) => l.parent() == Some(d.as_path()),
        _ => false,
    };
    if same || !legacy.exists() {
        return Ok(());
    }
    let suggested = crate::fsutil::relative_to(legacy, dir)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| DEFAULT_STATE.to_string());
    Err(LegacyState {
        default: state.display().to_string(),
        legacy: legacy.display().to_string(),
        suggested,
        settings: crate::fsutil::normalize(&dir.join(crate::load::settings::FILE_NAME))
            .display()
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        let r = resolve(&TargetFlags::default(), &env, &settings, Path::new("t")).unwrap();
        assert_eq!(r.project_id.as_deref(), Some("from-env"));
        assert_eq!(r.workspace.as_deref(), Some("ws-file"));
        assert_eq!(
            r.endpoint.as_deref(),
            Some("https://dayu.ap-southeast-1.myhuaweicloud.com")
        );
        assert_eq!(
            r.state,
            StateLocation::File(PathBuf::from("t/state/taskform.json"))
        );
        assert_eq!(r.state_source, StateSource::Default);
        let flags = TargetFlags {
            project_id: Some("flag".into()),
            endpoint: Some("http://127.0.0.1:1/".into()),
            ..TargetFlags::default()
        };
        let r = resolve(&flags, &env, &settings, Path::new("t")).unwrap();
        assert_eq!(r.project_id.as_deref(), Some("flag"));
        assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn an_explicit_endpoint_beats_a_region_wherever_each_is_set() {
        let settings = Settings {
            endpoint: Some("https://gw.example".into()),
            ..Settings::default()
        };
        let env = |k: &str| (k == "HW_REGION_NAME").then(|| "cn-north-4".to_string());
        let flags = TargetFlags {
            region: Some("ap-southeast-1".into()),
            ..TargetFlags::default()
        };
        let r = resolve(&flags, &env, &settings, Path::new(".")).unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("https://gw.example"));
        let r = resolve(&flags, &env, &Settings::default(), Path::new(".")).unwrap();
        assert_eq!(
            r.endpoint.as_deref(),
            Some("https://dayu.ap-southeast-1.myhuaweicloud.com")
        );
        let r = resolve(
            &TargetFlags::default(),
            &env,
            &Settings::default(),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            r.endpoint.as_deref(),
            Some("https://dayu.cn-north-4.myhuaweicloud.com")
        );
        assert_eq!(
            r.state,
            StateLocation::File(PathBuf::from("state/taskform.json"))
        );
    }

    #[test]
    fn a_postgres_state_takes_its_name_and_schema_flag_first() {
        let settings = Settings {
            state: Some(StateLocation::parse("postgres://ci@db/tasks", None, None).unwrap()),
            state_name: Some("from-file".into()),
            state_schema: Some("file_schema".into()),
            ..Settings::default()
        };
        let env = |k: &str| (k == "TASKFORM_STATE_NAME").then(|| "from-env".to_string());
        let r = resolve(&TargetFlags::default(), &env, &settings, Path::new(".")).unwrap();
        assert_eq!(
            r.state.to_string(),
            "postgres://ci@db/tasks (state \"from-env\" in schema file_schema)"
        );
        assert_eq!(r.state_source, StateSource::Settings);
        let flags = TargetFlags {
            state: Some("postgres://u:pw@other/x".into()),
            state_name: Some("flag".into()),
            ..TargetFlags::default()
        };
        let r = resolve(&flags, &env, &settings, Path::new(".")).unwrap();
        assert_eq!(
            r.state.to_string(),
            "postgres://u:***@other/x (state \"flag\" in schema file_schema)"
        );
        // A name with the default file state is refused.
        let e = resolve(
            &TargetFlags::default(),
            &env,
            &Settings::default(),
            Path::new("."),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("applies to a PostgreSQL state only"),
            "{e}"
        );
    }
}
