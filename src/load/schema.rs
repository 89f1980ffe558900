//! The create request's body schema, from the API reference, and validation against it.
//!
//! [`validate`] checks a merged task body (manifest plus `defaults`) and returns every
//! problem as a [`Problem`] with the path of the node concerned; the loader turns the
//! paths into `file:line:col` positions. [`warnings`] finds what the service may refuse
//! but taskform cannot know for sure (a `data_source_type` nobody has seen).
//!
//! Beyond types, it checks what the service would reject: `schedule_type` (RUN_ONCE or
//! CRON), `enabled` (0 or 1), a Quartz `cron_expression` field by field ([`parse_cron`]),
//! no server-assigned `job_id`, and task names free of control and bidirectional-override
//! characters (they would reach terminals and pull-request comments).

use crate::load::diagnostic;
use crate::load::yaml::{Part, Seg, path_string};
use serde_json::{Map, Value};

pub use super::cron::{CronError, parse_cron};

/// Body fields the API accepts, as listed on the create page.
pub const FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "user_id",
    "create_time",
    "project_id",
    "dir_id",
    "schedule_config",
    "parameter_config",
    "update_time",
    "user_name",
    "path",
    "last_run_time",
    "start_time",
    "end_time",
    "next_run_time",
    "duty_person",
    "update_type",
    "data_source_type",
    "task_config",
    "data_source_workspace_id",
];

/// Fields every task must set.
pub const MANDATORY: &[&str] = &[
    "name",
    "user_id",
    "dir_id",
    "schedule_config",
    "data_source_type",
    "task_config",
];

/// Fields the service manages; a manifest must not set them.
pub const SERVER_MANAGED: &[&str] = &[
    "id",
    "create_time",
    "update_time",
    "last_run_time",
    "next_run_time",
];

/// The `schedule_config.enabled` a manifest writes for what the service reads back:
/// 3 (scheduling) was written as 1, 5 (paused) as 0; anything else as it is.
pub fn enabled_as_written(read_back: i64) -> i64 {
    match read_back {
        3 => 1,
        5 => 0,
        other => other,
    }
}

/// `schedule_config` (SchedulerInfo) fields.
pub const SCHEDULE_FIELDS: &[&str] = &[
    "cron_expression",
    "end_time",
    "max_time_out",
    "interval",
    "schedule_type",
    "start_time",
    "job_id",
    "enabled",
];

const SCHEDULE_INTEGERS: &[&str] = &["max_time_out", "job_id", "enabled"];

/// Whether the schema wants an integer at `path` (a whole `${VAR}` there is typed).
pub fn wants_integer(path: &[Seg]) -> bool {
    matches!(path, [Seg::Key(a), Seg::Key(b)] if a == "schedule_config" && SCHEDULE_INTEGERS.contains(&b.as_str()))
}

/// `schedule_config.schedule_type` values: the reference's example and the Terraform
/// provider use these two; nothing else is published.
pub const SCHEDULE_TYPES: &[&str] = &["RUN_ONCE", "CRON"];

/// `data_source_type` values seen in Huawei's documentation and SDKs (no list is
/// published for collection tasks): `DLI` on the create page; the Go SDK's
/// `services/dataartsstudio/v1/model/model_dw_type.go` lists DLI, DWS, MRS_HIVE,
/// POSTGRESQL, MRS_SPARK, CLICKHOUSE, MYSQL, ORACLE and DORIS as connection types, and
/// `model_data_ware_house_dto.go` HIVE, DWS and SPARK. Others only warn
/// ([`warnings`]); `known_data_source_types` in taskform.yaml adds to the list.
pub const KNOWN_DATA_SOURCE_TYPES: &[&str] = &[
    "CLICKHOUSE",
    "DLI",
    "DORIS",
    "DWS",
    "HIVE",
    "MRS_HIVE",
    "MRS_SPARK",
    "MYSQL",
    "ORACLE",
    "POSTGRESQL",
    "SPARK",
];

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<Seg>,
    /// Whether the problem is best shown at the key or at the value.
    pub part: Part,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    fn at(path: Vec<Seg>, part: Part, message: impl Into<String>) -> Self {
        Problem {
            path,
            part,
            message: message.into(),
            hint: None,
        }
    }
    fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// The closest candidate to a misspelt word, if one is close enough.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A string field holding something else: explain YAML's reading of unquoted scalars.
fn not_a_string(path: Vec<Seg>, value: &Value) -> Problem {
    let name = path_string(&path);
    let hint = match value {
        Value::Number(_) | Value::Bool(_) => Some(format!(
            "YAML reads the unquoted `{value}` as {}; quote it to send a string: {}: \"{value}\"",
            type_name(value),
            match path.last() {
                Some(Seg::Key(k)) => k.as_str(),
                _ => name.as_str(),
            }
        )),
        Value::Null => Some("give it a value or remove the key".to_string()),
        _ => None,
    };
    Problem::at(
        path,
        Part::Value,
        format!("`{name}` must be a string, found {}", type_name(value)),
    )
    .hint(hint)
}

/// What validation may relax, from taskform.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `user_id` is mandatory (the create page and the SDK say so); `require_user_id:
    /// false` in taskform.yaml lets manifests leave it out, as the Terraform provider
    /// does.
    pub require_user_id: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            require_user_id: true,
        }
    }
}

/// Validates a merged task body by the default rules; an empty result means valid.
pub fn validate(body: &Value) -> Vec<Problem> {
    validate_with(body, &Rules::default())
}

/// Validates a merged task body by `rules`; an empty result means valid.
pub fn validate_with(body: &Value, rules: &Rules) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Value::Object(map) = body else {
        problems.push(Problem::at(
            vec![],
            Part::Value,
            format!(
                "a task manifest must be a mapping of task fields, found {}",
                type_name(body)
            ),
        ));
        return problems;
    };
    for (k, v) in map {
        let path = vec![key(k)];
        if SERVER_MANAGED.contains(&k.as_str()) {
            problems.push(
                Problem::at(
                    path,
                    Part::Key,
                    format!("`{k}` is set by the service and must not be in a manifest"),
                )
                .hint(Some(format!("remove `{k}`"))),
            );
            continue;
        }
        match k.as_str() {
            "schedule_config" => validate_schedule(v, &mut problems),
            "task_config" => {
                if !v.is_object() {
                    problems.push(Problem::at(
                        path,
                        Part::Value,
                        format!(
                            "`task_config` must be a mapping of attributes, found {}",
                            type_name(v)
                        ),
                    ));
                }
            }
            "parameter_config" => match v {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        validate_custom_metadata(i, item, &mut problems);
                    }
                }
                _ => problems.push(Problem::at(
                    path,
                    Part::Value,
                    format!("`parameter_config` must be a list, found {}", type_name(v)),
                )),
            },
            known if FIELDS.contains(&known) => {
                if !v.is_string() {
                    problems.push(not_a_string(path, v));
                } else if known == "name" && v.as_str().is_some_and(|s| s.trim().is_empty()) {
                    problems.push(Problem::at(path, Part::Value, "`name` must not be empty"));
                } else if known == "name"
                    && let Some(name) = v.as_str()
                    && let Some(c) = name.chars().find(|c| diagnostic::is_unsafe_char(*c))
                {
                    problems.push(
                        Problem::at(
                            path,
                            Part::Value,
                            format!(
                                "`name` contains a control or bidirectional-override character, shown here as `{}`: `{}`",
                                diagnostic::escape_char(c),
                                diagnostic::escape(name)
                            ),
                        )
                        .hint(Some(
                            "task names are shown in plans, logs and pull-request comments, where such characters can hide or forge text; remove it".into(),
                        )),
                    );
                }
            }
            unknown => problems.push(
                Problem::at(
                    path,
                    Part::Key,
                    format!("unknown field `{}`", diagnostic::escape(unknown)),
                )
                .hint(Some(match suggest(unknown, FIELDS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "task fields are those of the create API's request body (see the README)"
                            .to_string()
                    }
                })),
            ),
        }
    }
    for m in MANDATORY {
        if *m == "user_id" && !rules.require_user_id {
            continue;
        }
        if !map.contains_key(*m) {
            let hint = match *m {
                "user_id" => "add `user_id:` to the manifest or to `defaults` in taskform.yaml, or set `require_user_id: false` in taskform.yaml if your service accepts tasks without it (the Terraform provider never sends it)".to_string(),
                _ => format!("add `{m}:` to the manifest or to `defaults` in taskform.yaml"),
            };
            problems.push(
                Problem::at(
                    vec![],
                    Part::Value,
                    format!("missing mandatory field `{m}`"),
                )
                .hint(Some(hint)),
            );
        }
    }
    problems
}

/// `CustomMetadata` fields (an entry of `parameter_config`), all strings.
pub const CUSTOM_METADATA_FIELDS: &[&str] = &["description", "type", "task_id"];

/// Checks `parameter_config[i]` against the `CustomMetadata` definition.
fn validate_custom_metadata(i: usize, item: &Value, problems: &mut Vec<Problem>) {
    let Value::Object(entry) = item else {
        problems.push(Problem::at(
            vec![key("parameter_config"), Seg::Index(i)],
            Part::Value,
            format!(
                "`parameter_config[{i}]` must be a mapping (description, type, task_id), found {}",
                type_name(item)
            ),
        ));
        return;
    };
    for (k, v) in entry {
        let path = vec![key("parameter_config"), Seg::Index(i), key(k)];
        if !CUSTOM_METADATA_FIELDS.contains(&k.as_str()) {
            problems.push(
                Problem::at(
                    path,
                    Part::Key,
                    format!(
                        "unknown field `parameter_config[{i}].{}`",
                        diagnostic::escape(k)
                    ),
                )
                .hint(Some(match suggest(k, CUSTOM_METADATA_FIELDS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "a `parameter_config` entry (CustomMetadata) has `description`, `type` and `task_id`".to_string(),
                })),
            );
        } else if !v.is_string() {
            problems.push(not_a_string(path, v));
        }
    }
}

fn validate_schedule(v: &Value, problems: &mut Vec<Problem>) {
    let Value::Object(sc) = v else {
        problems.push(Problem::at(
            vec![key("schedule_config")],
            Part::Value,
            format!(
                "`schedule_config` must be a mapping, found {}",
                type_name(v)
            ),
        ));
        return;
    };
    for (k, v) in sc {
        let path = vec![key("schedule_config"), key(k)];
        if k == "job_id" {
            problems.push(
                Problem::at(
                    path,
                    Part::Key,
                    "`schedule_config.job_id` is assigned by the service and must not be in a manifest",
                )
                .hint(Some(
                    "remove `job_id`: the service assigns it when it creates the task's schedule"
                        .into(),
                )),
            );
        } else if SCHEDULE_INTEGERS.contains(&k.as_str()) {
            let ok = v.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
            if !ok {
                let hint = match v {
                    Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                        Some(format!("remove the quotes: {k}: {}", s.trim()))
                    }
                    Value::Bool(b) if k == "enabled" => Some(format!(
                        "write {k}: {} (1 schedules the task, 0 leaves it stopped)",
                        u8::from(*b)
                    )),
                    Value::String(s) if k == "enabled" => {
                        let on = matches!(
                            s.trim().to_ascii_lowercase().as_str(),
                            "yes" | "y" | "true" | "on" | "enabled"
                        );
                        let off = matches!(
                            s.trim().to_ascii_lowercase().as_str(),
                            "no" | "n" | "false" | "off" | "disabled"
                        );
                        Some(match (on, off) {
                            (true, _) => {
                                format!("write {k}: 1 (1 schedules the task, 0 leaves it stopped)")
                            }
                            (_, true) => {
                                format!("write {k}: 0 (1 schedules the task, 0 leaves it stopped)")
                            }
                            _ => format!(
                                "write {k}: 1 or 0 (1 schedules the task, 0 leaves it stopped)"
                            ),
                        })
                    }
                    _ => None,
                };
                let found = if v.as_i64().is_some() {
                    "an integer out of 32-bit range".to_string()
                } else {
                    type_name(v).to_string()
                };
                problems.push(
                    Problem::at(
                        path,
                        Part::Value,
                        format!("`schedule_config.{k}` must be a 32-bit integer, found {found}"),
                    )
                    .hint(hint),
                );
            } else if k == "enabled"
                && let Some(n) = v.as_i64()
                && n != 0
                && n != 1
            {
                problems.push(
                    Problem::at(
                        path,
                        Part::Value,
                        format!("`schedule_config.enabled` must be 0 or 1, found {n}"),
                    )
                    .hint(Some(
                        "1 schedules the task (CRON), 0 leaves it stopped; the service reports 3 (scheduling) and 5 (paused) when read back, which a manifest does not set".into(),
                    )),
                );
            }
        } else if k == "schedule_type" {
            match v {
                Value::String(t) if !SCHEDULE_TYPES.contains(&t.as_str()) => {
                    problems.push(bad_schedule_type(path, t))
                }
                Value::String(_) => {}
                _ => problems.push(not_a_string(path, v)),
            }
        } else if SCHEDULE_FIELDS.contains(&k.as_str()) {
            if !v.is_string() {
                problems.push(not_a_string(path, v));
            }
        } else {
            problems.push(
                Problem::at(
                    path,
                    Part::Key,
                    format!("unknown field `schedule_config.{}`", diagnostic::escape(k)),
                )
                .hint(suggest(k, SCHEDULE_FIELDS).map(|s| format!("did you mean `{s}`?"))),
            );
        }
    }
    let is_cron = sc.get("schedule_type").and_then(Value::as_str) == Some("CRON");
    match sc.get("cron_expression") {
        None if is_cron => problems.push(
            Problem::at(
                vec![key("schedule_config")],
                Part::Key,
                "`schedule_type: CRON` needs a `cron_expression`",
            )
            .hint(Some(
                "Quartz style, seconds first, e.g. cron_expression: \"0 */15 9-23 * * ?\"".into(),
            )),
        ),
        // Checked whatever the schedule type: a wrong one is reported on its own, and
        // a nonsense expression is never what was meant. An empty one (as the service
        // may echo for RUN_ONCE) is left alone unless the task is CRON.
        Some(Value::String(expr)) if is_cron || !expr.trim().is_empty() => {
            if let Err(e) = parse_cron(expr) {
                problems.push(
                    Problem::at(
                        vec![key("schedule_config"), key("cron_expression")],
                        Part::Value,
                        format!(
                            "invalid cron_expression `{}`: {}",
                            diagnostic::escape(expr),
                            e.message
                        ),
                    )
                    .hint(Some(e.hint)),
                );
            }
        }
        _ => {} // absent where not needed, or reported as a type problem above
    }
}

/// A `schedule_type` that is neither RUN_ONCE nor CRON, with a did-you-mean.
fn bad_schedule_type(path: Vec<Seg>, t: &str) -> Problem {
    let upper = t.trim().to_ascii_uppercase();
    let hint = match SCHEDULE_TYPES.iter().find(|s| **s == upper) {
        Some(s) => format!("did you mean `{s}`? (the values are upper case)"),
        None => match suggest(&upper, SCHEDULE_TYPES) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "RUN_ONCE runs the task once; CRON runs it on `cron_expression`".into(),
        },
    };
    Problem::at(
        path,
        Part::Value,
        format!(
            "`schedule_config.schedule_type` must be RUN_ONCE or CRON, not `{}`",
            diagnostic::escape(t)
        ),
    )
    .hint(Some(hint))
}

/// What the service may refuse though taskform cannot tell for sure: a
/// `data_source_type` outside [`KNOWN_DATA_SOURCE_TYPES`] and `known` (the setting
/// `known_data_source_types`). Problems to show as warnings, never errors.
pub fn warnings(body: &Value, known: &[String]) -> Vec<Problem> {
    let Some(Value::String(t)) = body.get("data_source_type") else {
        return Vec::new();
    };
    if KNOWN_DATA_SOURCE_TYPES.contains(&t.as_str()) || known.iter().any(|k| k == t) {
        return Vec::new();
    }
    let upper = t.trim().to_ascii_uppercase();
    let listed = format!("known_data_source_types: [{}]", diagnostic::escape(t));
    let hint = match KNOWN_DATA_SOURCE_TYPES
        .iter()
        .find(|s| **s == upper)
        .copied()
        .or_else(|| suggest(&upper, KNOWN_DATA_SOURCE_TYPES))
    {
        Some(s) => format!(
            "did you mean `{s}`? If `{}` is right, list it in taskform.yaml to silence this warning: {listed}",
            diagnostic::escape(t)
        ),
        None => format!(
            "values seen: {}. If `{}` is right, list it in taskform.yaml to silence this warning: {listed}",
            KNOWN_DATA_SOURCE_TYPES.join(", "),
            diagnostic::escape(t)
        ),
    };
    vec![
        Problem::at(
            vec![key("data_source_type")],
            Part::Value,
            format!(
                "`data_source_type` `{}` is not a value seen in the DataArts documentation or SDKs; the service may refuse it",
                diagnostic::escape(t)
            ),
        )
        .hint(Some(hint)),
    ]
}

/// Deep-merges `defaults` under `body`: mappings merge key by key, the manifest wins
/// everywhere else (lists are replaced, not concatenated).
pub fn merge_defaults(body: &mut Value, defaults: &Map<String, Value>) {
    if let Value::Object(map) = body {
        merge_map(map, defaults);
    }
}

fn merge_map(map: &mut Map<String, Value>, defaults: &Map<String, Value>) {
    for (k, dv) in defaults {
        match map.get_mut(k) {
            None => {
                map.insert(k.clone(), dv.clone());
            }
            Some(Value::Object(inner)) => {
                if let Value::Object(dinner) = dv {
                    merge_map(inner, dinner);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "name": "t", "user_id": "u", "dir_id": "0", "data_source_type": "DLI",
            "task_config": {}, "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": 10}
        })
    }

    fn messages(v: &Value) -> Vec<String> {
        validate(v).into_iter().map(|p| p.message).collect()
    }

    #[test]
    fn the_reference_example_is_valid() {
        assert!(validate(&valid()).is_empty());
    }

    #[test]
    fn user_id_is_mandatory_unless_the_rules_relax_it() {
        let mut v = valid();
        v.as_object_mut().unwrap().shift_remove("user_id");
        let p = validate(&v);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].message, "missing mandatory field `user_id`");
        assert!(
            p[0].hint
                .as_deref()
                .unwrap()
                .contains("require_user_id: false")
        );
        let relaxed = Rules {
            require_user_id: false,
        };
        assert!(validate_with(&v, &relaxed).is_empty());
        // One that is set is still checked, and the other mandatory fields still are.
        v["user_id"] = json!(7);
        v.as_object_mut().unwrap().shift_remove("dir_id");
        let m: Vec<String> = validate_with(&v, &relaxed)
            .into_iter()
            .map(|p| p.message)
            .collect();
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.iter().any(|s| s.contains("`user_id` must be a string")));
        assert!(m.contains(&"missing mandatory field `dir_id`".to_string()));
    }

    #[test]
    fn reports_every_problem() {
        let v = json!({"nmae": "x", "id": "1", "dir_id": 0, "task_config": [], "schedule_config": {"max_time_out": "10", "enabled": 1.5}});
        let m = messages(&v);
        assert!(m.contains(&"unknown field `nmae`".to_string()), "{m:?}");
        assert!(m.iter().any(|s| s.contains("`id` is set by the service")));
        assert!(
            m.iter()
                .any(|s| s.contains("`dir_id` must be a string, found an integer"))
        );
        assert!(
            m.iter()
                .any(|s| s.contains("`task_config` must be a mapping"))
        );
        assert!(m.iter().any(|s| {
            s.contains("`schedule_config.max_time_out` must be a 32-bit integer, found a string")
        }));
        assert!(m.iter().any(|s| {
            s.contains("`schedule_config.enabled` must be a 32-bit integer, found a decimal")
        }));
        for f in ["name", "user_id", "data_source_type"] {
            assert!(
                m.contains(&format!("missing mandatory field `{f}`")),
                "{f}: {m:?}"
            );
        }
        let p = validate(&v)
            .into_iter()
            .find(|p| p.message.contains("nmae"))
            .unwrap();
        assert_eq!(p.hint.as_deref(), Some("did you mean `name`?"));
        let p = validate(&v)
            .into_iter()
            .find(|p| p.message.contains("dir_id"))
            .unwrap();
        assert_eq!(
            p.hint.as_deref(),
            Some(
                "YAML reads the unquoted `0` as an integer; quote it to send a string: dir_id: \"0\""
            )
        );
    }

    #[test]
    fn empty_name_and_out_of_range_integers() {
        let mut v = valid();
        v["name"] = json!("  ");
        v["schedule_config"]["max_time_out"] = json!(4_000_000_000u64);
        let m = messages(&v);
        assert!(m.contains(&"`name` must not be empty".to_string()));
        assert!(m.iter().any(|s| s.contains("out of 32-bit range")));
    }

    #[test]
    fn job_id_enabled_and_schedule_type_follow_the_service() {
        let mut v = valid();
        v["schedule_config"] = json!({"schedule_type": "Cron", "job_id": 7, "enabled": 2, "cron_expression": "0 0 2 * * ?"});
        let p = validate(&v);
        assert_eq!(p.len(), 3, "{p:?}");
        let job = p.iter().find(|p| p.message.contains("job_id")).unwrap();
        assert_eq!(job.part, Part::Key);
        assert!(job.message.contains("assigned by the service"));
        let ty = p
            .iter()
            .find(|p| p.message.contains("schedule_type"))
            .unwrap();
        assert!(
            ty.hint
                .as_deref()
                .unwrap()
                .starts_with("did you mean `CRON`?")
        );
        assert!(
            p.iter()
                .any(|p| p.message == "`schedule_config.enabled` must be 0 or 1, found 2")
        );
        v["schedule_config"] = json!({"schedule_type": "RUN_PNCE"});
        assert_eq!(
            validate(&v)[0].hint.as_deref(),
            Some("did you mean `RUN_ONCE`?")
        );
        v["schedule_config"] =
            json!({"schedule_type": "RUN_ONCE", "enabled": 0, "cron_expression": ""});
        assert!(validate(&v).is_empty());
        v["schedule_config"] = json!({"schedule_type": "RUN_ONCE", "cron_expression": "nonsense"});
        assert!(messages(&v)[0].starts_with("invalid cron_expression `nonsense`"));
    }

    #[test]
    fn names_with_control_or_bidi_characters_are_refused() {
        for bad in [
            "a\u{1b}[2J",
            "a\nb",
            "a\u{7f}",
            "a\u{85}",
            "a\u{202d}",
            "a\u{2069}",
        ] {
            let mut v = valid();
            v["name"] = json!(bad);
            let m = messages(&v);
            assert_eq!(m.len(), 1, "{bad:?}: {m:?}");
            assert!(m[0].starts_with("`name` contains a control"), "{m:?}");
            assert!(!m[0].contains(bad), "raw in {m:?}");
        }
        let mut v = valid();
        v["name"] = json!("dépôt-日本-\u{200d}");
        assert!(validate(&v).is_empty());
    }

    #[test]
    fn unknown_data_source_types_are_warnings() {
        let mut v = valid();
        assert!(warnings(&v, &[]).is_empty());
        v["data_source_type"] = json!("mrs_hive");
        let w = warnings(&v, &[]);
        assert!(
            w[0].hint
                .as_deref()
                .unwrap()
                .starts_with("did you mean `MRS_HIVE`?")
        );
        assert!(warnings(&v, &["mrs_hive".to_string()]).is_empty());
        v["data_source_type"] = json!("KAFKA");
        assert!(
            w.len() == 1
                && warnings(&v, &[])[0]
                    .hint
                    .as_deref()
                    .unwrap()
                    .contains("known_data_source_types: [KAFKA]")
        );
        assert!(validate(&v).is_empty(), "a warning, never an error");
    }

    fn cron_err(expr: &str) -> String {
        parse_cron(expr).unwrap_err().message
    }

    #[test]
    fn quartz_expressions_are_checked_field_by_field() {
        for ok in [
            "0 30 2 * * ?",
            "0 0 2 ? * MON-FRI",
            "0 0 2 ? * 2-6",
            "0 0 2 ? * fri-mon",
            "0 0 22-2 * * ?",
            "0 0 0 ? 1/2 SUN",
            "0 0 0 L-30 * ?",
            "0 0 0 31W * ?",
            "0 0 0 ? * SAT#5",
            "0 0 0 ? * 7L",
            "0 0 0 * * ? *",
            "0 0 0 * * ? 2030/5",
            "0\t0  0 * * ?",
        ] {
            assert_eq!(parse_cron(ok), Ok(()), "{ok}");
        }
        for (bad, msg) in [
            (
                "0 0 0 ? * 1,L",
                "day-of-week field `1,L`: the special forms",
            ),
            (
                "0 0 0 L,5 * ?",
                "day-of-month field `L,5`: the special forms",
            ),
            ("0 0 0 L-31 * ?", "the offset L-31 is over 30"),
            (
                "0 0 0 32W * ?",
                "day-of-month field `32W`: 32 is out of range 1-31",
            ),
            ("0 0 0 ? * 8L", "8 is out of range 1-7"),
            ("0 0 0 ? * MON#0", "the week after `#` must be 1-5"),
            (
                "0 0 0 * * ? 2030-2020",
                "year field `2030-2020`: the range 2030-2020 ends before it starts",
            ),
            (
                "0 0/60 0 * * ?",
                "minutes field `0/60`: the step /60 is larger than the field's 59",
            ),
            (
                "0 0/x 0 * * ?",
                "the step after `/` must be a number, not `X`",
            ),
            ("0 0 0,,1 * * ?", "hours field `0,,1`: an empty item"),
            (
                "0 0 1- * * ?",
                "hours field `1-`: a range needs a value on both sides",
            ),
            (
                "0 0 0 ?/2 * MON",
                "day-of-month field `?/2`: `?` must stand alone",
            ),
            (
                "0 0 0 * MON ?",
                "month field `MON`: `MON` is not a number or a month name",
            ),
            (
                "0 0 0 * * ? 2030 1",
                "expected 6 or 7 fields (seconds first), found 8",
            ),
        ] {
            let e = cron_err(bad);
            assert!(e.contains(msg), "{bad}: {e}");
        }
        let e = parse_cron("*/5 * * * *").unwrap_err();
        assert!(
            e.hint.contains("is \"0 */5 * * * ?\" in Quartz"),
            "{}",
            e.hint
        );
    }

    #[test]
    fn cron_schedules_need_a_quartz_expression() {
        let mut v = valid();
        v["schedule_config"] = json!({"schedule_type": "CRON"});
        assert!(messages(&v)[0].contains("needs a `cron_expression`"));
        v["schedule_config"]["cron_expression"] = json!("*/5 * * * *");
        assert!(messages(&v)[0].contains("expected 6 or 7 fields"));
        v["schedule_config"]["cron_expression"] = json!("0 61 * * * ?");
        assert!(messages(&v)[0].contains("invalid cron_expression"));
        for ok in [
            "00 */15 9-23 * * ?",
            "0 0 2 ? * MON-FRI",
            "0 0/30 * * * ? 2027",
            "0 0 12 L * ?",
        ] {
            v["schedule_config"]["cron_expression"] = json!(ok);
            assert!(validate(&v).is_empty(), "{ok}: {:?}", messages(&v));
        }
    }

    #[test]
    fn defaults_merge_deeply_and_the_manifest_wins() {
        let mut body =
            json!({"name": "t", "schedule_config": {"max_time_out": 5}, "task_config": {"a": [1]}});
        let defaults = json!({"user_id": "u", "schedule_config": {"max_time_out": 10, "schedule_type": "RUN_ONCE"}, "task_config": {"a": [2, 3], "b": true}});
        merge_defaults(&mut body, defaults.as_object().unwrap());
        assert_eq!(
            body,
            json!({"name": "t", "schedule_config": {"max_time_out": 5, "schedule_type": "RUN_ONCE"}, "task_config": {"a": [1], "b": true}, "user_id": "u"})
        );
    }
}
