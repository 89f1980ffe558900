//! Manifests from remote tasks, for `taskform export` (onboarding a workspace whose
//! tasks were made in the console): only the fields the create API takes, in the
//! canonical style of `taskform fmt`, one file per task named after it.
//!
//! Pure: nothing here reads the server or writes a file.

use crate::load::format;
use crate::load::schema::{FIELDS, SCHEDULE_FIELDS, SERVER_MANAGED, enabled_as_written};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The create body of a remote task: the fields the create API takes (server-managed
/// ones left out), in the order the API documents them; in `schedule_config` only the
/// scheduling fields (not the `job_id` the service assigns).
pub fn manifest_body(task: &Value) -> Value {
    let mut out = Map::new();
    for field in FIELDS.iter().filter(|f| !SERVER_MANAGED.contains(f)) {
        let Some(v) = task.get(*field).filter(|v| !v.is_null()) else {
            continue;
        };
        let v = match (*field, v) {
            ("schedule_config", Value::Object(sc)) => Value::Object(
                SCHEDULE_FIELDS
                    .iter()
                    .filter(|f| **f != "job_id")
                    .filter_map(|f| {
                        let v = sc.get(*f).filter(|v| !v.is_null())?;
                        // Read back as a state (3 scheduling, 5 paused): written as 1/0.
                        let v = match (*f, v.as_i64()) {
                            ("enabled", Some(state)) => Value::from(enabled_as_written(state)),
                            _ => v.clone(),
                        };
                        Some((f.to_string(), v))
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(field.to_string(), v);
    }
    Value::Object(out)
}

/// The task's file below the export folder: `<data_source_type>/<name>.yaml`, lower
/// case folder, the name made safe for any file system (letters, digits, `.`, `_`,
/// `-`), and made distinct from every file already `taken` (compared without case).
pub fn file_for(name: &str, data_source_type: Option<&str>, taken: &mut HashSet<String>) -> String {
    let folder = safe(&data_source_type.unwrap_or("other").to_lowercase(), "other");
    let mut stem = safe(name, "task");
    // `taskform.yaml` is a settings file: a folder holding one is another target.
    if stem.eq_ignore_ascii_case("taskform") {
        stem.push_str("-task");
    }
    let mut n = 1;
    loop {
        let rel = match n {
            1 => format!("{folder}/{stem}.yaml"),
            n => format!("{folder}/{stem}-{n}.yaml"),
        };
        if taken.insert(rel.to_lowercase()) {
            return rel;
        }
        n += 1;
    }
}

fn safe(s: &str, empty: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let c = if keep { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let out: String = out
        .trim_start_matches(['.', '_', '-'])
        .chars()
        .take(100)
        .collect();
    let out = out.trim_end_matches(['.', '_']).to_string();
    match out.is_empty() {
        true => empty.to_string(),
        false => out,
    }
}

/// Writes `${` as `$${` in every string, so that the loader reads the value back as
/// it is instead of interpolating it.
pub fn escape_references(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("${") => *s = s.replace("${", "$${"),
        Value::Array(items) => items.iter_mut().for_each(escape_references),
        Value::Object(m) => m.values_mut().for_each(escape_references),
        _ => {}
    }
}

/// A manifest's text in the canonical style, from its body (references escaped).
pub fn yaml_of(body: &Value) -> Result<String, String> {
    let mut body = body.clone();
    escape_references(&mut body);
    let text = serde_yaml::to_string(&body).map_err(|e| e.to_string())?;
    format::format_source(&text).map_err(|e| e.to_string())
}

/// The paths of values that look like secrets (a key holding `password`, `secret`,
/// `token`, `credential`, `private` or `sk`): written as the service returned them.
pub fn secret_looking(body: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                let p = match path.is_empty() {
                    true => k.clone(),
                    false => format!("{path}.{k}"),
                };
                let lower = k.to_lowercase();
                let looks = [
                    "password",
                    "passwd",
                    "secret",
                    "token",
                    "credential",
                    "private",
                ]
                .iter()
                .any(|w| lower.contains(w))
                    || lower == "sk";
                if looks && v.as_str().is_some_and(|s| !s.is_empty()) {
                    out.push(p.clone());
                }
                walk(v, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(body, "", &mut out);
    out
}

/// Lifts the top-level fields every body sets to the same value (but the name and
/// description) into `defaults`, taking them out of the bodies, when there are at
/// least two bodies: the files get shorter and the merged bodies stay the same.
pub fn lift_defaults(bodies: &mut [Value]) -> Map<String, Value> {
    let mut lifted = Map::new();
    if bodies.len() < 2 {
        return lifted;
    }
    let first = bodies[0].as_object().cloned().unwrap_or_default();
    for (k, v) in first {
        if matches!(k.as_str(), "name" | "description") {
            continue;
        }
        if bodies.iter().all(|b| b.get(&k) == Some(&v)) {
            lifted.insert(k, v);
        }
    }
    for b in bodies.iter_mut() {
        if let Value::Object(m) = b {
            for k in lifted.keys() {
                m.remove(k);
            }
        }
    }
    lifted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_keep_only_what_the_create_api_takes() {
        let task = json!({"id": "abc", "create_time": 1, "name": "n", "dir_id": "0",
            "schedule_config": {"schedule_type": "CRON", "job_id": "j", "enabled": 3},
            "task_config": {"x": 1}, "status": "RUNNING", "data_source_type": "DLI"});
        let b = manifest_body(&task);
        assert_eq!(
            b,
            json!({"name": "n", "dir_id": "0", "schedule_config": {"schedule_type": "CRON", "enabled": 1}, "data_source_type": "DLI", "task_config": {"x": 1}})
        );
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "name",
                "dir_id",
                "schedule_config",
                "data_source_type",
                "task_config"
            ]
        );
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let mut taken = HashSet::new();
        assert_eq!(
            file_for("dli-orders", Some("DLI"), &mut taken),
            "dli/dli-orders.yaml"
        );
        assert_eq!(
            file_for("DLI-Orders", Some("DLI"), &mut taken),
            "dli/DLI-Orders-2.yaml"
        );
        assert_eq!(
            file_for("../../etc/passwd", None, &mut taken),
            "other/etc_passwd.yaml"
        );
        assert_eq!(
            file_for("订单 任务", Some("a/b"), &mut taken),
            "a_b/task.yaml"
        );
    }

    #[test]
    fn yaml_reads_back_as_the_body_with_references_kept_literal() {
        let body = json!({"name": "n", "description": "costs ${PRICE} and $${x}", "dir_id": "0", "schedule_config": {"max_time_out": 10}});
        let text = yaml_of(&body).unwrap();
        assert!(text.contains("dir_id: \"0\""), "{text}");
        let docs = crate::load::yaml::parse_documents(&text).unwrap();
        let mut back = docs[0].value.clone();
        crate::load::interpolate::interpolate(&mut back, &|_| None, &|_| false);
        assert_eq!(back, body);
    }

    #[test]
    fn identical_fields_are_lifted() {
        let mut bodies = vec![
            json!({"name": "a", "user_id": "u", "dir_id": "0", "duty_person": "x"}),
            json!({"name": "b", "user_id": "u", "dir_id": "0", "duty_person": "y"}),
        ];
        let d = lift_defaults(&mut bodies);
        assert_eq!(Value::Object(d), json!({"user_id": "u", "dir_id": "0"}));
        assert_eq!(bodies[1], json!({"name": "b", "duty_person": "y"}));
    }
}
