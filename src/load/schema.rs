//! The create request's body schema, from the API reference, and validation against it.
//!
//! [`validate`] checks a merged task body (manifest plus `defaults`) and returns every
//! problem as a [`Problem`] with the path of the node concerned; the loader turns the
//! paths into `file:line:col` positions.

use crate::load::yaml::{Part, Seg, path_string};
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Map, Value};

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

/// Validates a merged task body; an empty result means valid.
pub fn validate(body: &Value) -> Vec<Problem> {
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
                        if !item.is_object() {
                            problems.push(Problem::at(
                                vec![key(k), Seg::Index(i)],
                                Part::Value,
                                format!("`parameter_config[{i}]` must be a mapping (description, type, task_id), found {}", type_name(item)),
                            ));
                        }
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
                }
            }
            unknown => problems.push(
                Problem::at(path, Part::Key, format!("unknown field `{unknown}`"))
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
        if !map.contains_key(*m) {
            problems.push(
                Problem::at(
                    vec![],
                    Part::Value,
                    format!("missing mandatory field `{m}`"),
                )
                .hint(Some(format!(
                    "add `{m}:` to the manifest or to `defaults` in taskform.yaml"
                ))),
            );
        }
    }
    problems
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
        if SCHEDULE_INTEGERS.contains(&k.as_str()) {
            let ok = v.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
            if !ok {
                let hint = match v {
                    Value::String(s) if s.trim().parse::<i64>().is_ok() => {
                        Some(format!("remove the quotes: {k}: {}", s.trim()))
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
                    format!("unknown field `schedule_config.{k}`"),
                )
                .hint(suggest(k, SCHEDULE_FIELDS).map(|s| format!("did you mean `{s}`?"))),
            );
        }
    }
    if sc.get("schedule_type").and_then(Value::as_str) == Some("CRON") {
        match sc.get("cron_expression") {
            None => problems.push(
                Problem::at(
                    vec![key("schedule_config")],
                    Part::Key,
                    "`schedule_type: CRON` needs a `cron_expression`",
                )
                .hint(Some(
                    "Quartz style, seconds first, e.g. cron_expression: \"0 */15 9-23 * * ?\""
                        .into(),
                )),
            ),
            Some(Value::String(expr)) => {
                if let Err(e) = parse_cron(expr) {
                    problems.push(
                        Problem::at(
                            vec![key("schedule_config"), key("cron_expression")],
                            Part::Value,
                            format!("invalid cron_expression `{expr}`: {e}"),
                        )
                        .hint(Some("Quartz style with seconds first: SEC MIN HOUR DAY MONTH WEEKDAY [YEAR], e.g. \"0 0 2 * * ?\"".into())),
                    );
                }
            }
            Some(_) => {} // reported as a type problem above
        }
    }
}

/// Parses a Quartz-style cron expression (seconds first, optional year, `?` allowed).
/// Results are cached per thread: repos repeat a few expressions many times, and
/// parsing one costs more than loading the rest of a manifest.
pub fn parse_cron(expr: &str) -> Result<(), String> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Result<(), String>>> = Default::default();
    }
    if let Some(hit) = CACHE.with(|c| c.borrow().get(expr).cloned()) {
        return hit;
    }
    let result = parse_cron_uncached(expr);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 4096 {
            c.clear();
        }
        c.insert(expr.to_string(), result.clone());
    });
    result
}

fn parse_cron_uncached(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "expected 6 or 7 fields (seconds first), found {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Optional)
        .alternative_weekdays(true)
        .sloppy_ranges(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| e.to_string())
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
        v["schedule_config"]["job_id"] = json!(4_000_000_000u64);
        let m = messages(&v);
        assert!(m.contains(&"`name` must not be empty".to_string()));
        assert!(m.iter().any(|s| s.contains("out of 32-bit range")));
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
