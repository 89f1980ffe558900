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
/// `-`; a name in another script transliterated, `订单 任务` as `ding-dan-ren-wu`), and
/// made distinct from every file already `taken` (compared without case) by a short
/// suffix of the task's ID, so that the same task gets the same file in every export.
pub fn file_for(
    name: &str,
    task_id: &str,
    data_source_type: Option<&str>,
    taken: &mut HashSet<String>,
) -> String {
    let folder = safe(&data_source_type.unwrap_or("other").to_lowercase(), "other");
    let mut stem = match name.is_ascii() {
        true => safe(name, ""),
        false => slug(&deunicode::deunicode_with_tofu(name, "-")),
    };
    // `taskform.yaml` is a settings file: a folder holding one is another target.
    if stem.eq_ignore_ascii_case("taskform") {
        stem.push_str("-task");
    }
    let id: String = task_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_lowercase();
    let candidates = [
        (!stem.is_empty()).then(|| stem.clone()),
        Some(match stem.is_empty() {
            true => format!("task-{id}"),
            false => format!("{stem}-{id}"),
        }),
    ];
    for c in candidates.into_iter().flatten() {
        let rel = format!("{folder}/{c}.yaml");
        if taken.insert(rel.to_lowercase()) {
            return rel;
        }
    }
    // Two IDs alike in their first 8 letters and digits: numbered.
    let mut n = 2;
    loop {
        let rel = format!("{folder}/{stem}-{id}-{n}.yaml");
        if taken.insert(rel.to_lowercase()) {
            return rel;
        }
        n += 1;
    }
}

/// A transliterated name as a file stem: lower case, words joined by `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c.is_ascii_alphanumeric() {
            true => out.push(c.to_ascii_lowercase()),
            false if !out.is_empty() && !out.ends_with('-') => out.push('-'),
            false => {}
        }
    }
    out.trim_end_matches('-').chars().take(100).collect()
}

/// Leaves out of a remote task's body what the service fills in rather than the user
/// sets: the project (the target's), the caller's `user_name`, the folder's `path`
/// (from `dir_id`), a `duty_person` equal to the caller's `user_name` (the service's
/// default), and each `parameter_config` entry's `task_id`. A field the folder's
/// `defaults` set stays: leaving it out would give the task the default instead.
pub fn strip_echoed(body: &mut Value, user_name: Option<&str>, defaults: &Map<String, Value>) {
    let Value::Object(m) = body else { return };
    for k in ["project_id", "user_name", "path"] {
        if !defaults.contains_key(k) {
            m.remove(k);
        }
    }
    if user_name.is_some()
        && m.get("duty_person").and_then(Value::as_str) == user_name
        && !defaults.contains_key("duty_person")
    {
        m.remove("duty_person");
    }
    if let Some(Value::Array(params)) = m.get_mut("parameter_config") {
        for p in params.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("task_id");
        }
    }
}

/// Leaves out of `body` every value `defaults` set to the same (at any depth of
/// objects): the file then says only what differs, and reads back the same.
pub fn strip_defaulted(body: &mut Value, defaults: &Map<String, Value>) {
    let Value::Object(m) = body else { return };
    for (k, d) in defaults {
        if matches!(k.as_str(), "name") {
            continue;
        }
        match (m.get_mut(k), d) {
            (Some(v), d) if v == d => {
                m.remove(k);
            }
            (Some(v @ Value::Object(_)), Value::Object(dm)) => {
                strip_defaulted(v, dm);
                if v.as_object().is_some_and(Map::is_empty) {
                    m.remove(k);
                }
            }
            _ => {}
        }
    }
}

/// Which keys hold secrets: a key whose name (lower case, without `_`, `-` and `.`)
/// contains one of the patterns, or is one of the exact short ones.
#[derive(Debug, Clone)]
pub struct SecretKeys {
    patterns: Vec<String>,
    exact: Vec<String>,
}

impl Default for SecretKeys {
    fn default() -> Self {
        SecretKeys {
            patterns: [
                "password",
                "passwd",
                "secret",
                "token",
                "accesskey",
                "secretkey",
                "credential",
                "privatekey",
                "private",
            ]
            .map(str::to_string)
            .to_vec(),
            exact: ["sk", "ak", "pwd"].map(str::to_string).to_vec(),
        }
    }
}

impl SecretKeys {
    /// The keys `--secret-keys` names (comma-separated; each matched like the
    /// defaults: as a part of a key's name, or, for one of three letters or fewer
    /// such as `sk`, as the whole name).
    pub fn from_list(list: &[String]) -> SecretKeys {
        let all: Vec<String> = list
            .iter()
            .flat_map(|s| s.split(','))
            .map(normalize_key)
            .filter(|s| !s.is_empty())
            .collect();
        let (exact, patterns) = all.into_iter().partition(|k| k.chars().count() <= 3);
        SecretKeys { patterns, exact }
    }

    /// Whether `key` names a secret outright: it is one of the exact names, or ends
    /// with a pattern (`db_password`, not `token_ttl`).
    pub fn names_secret(&self, key: &str) -> bool {
        let k = normalize_key(key);
        self.exact.contains(&k) || self.patterns.iter().any(|p| k.ends_with(p.as_str()))
    }

    pub fn matches(&self, key: &str) -> bool {
        let k = normalize_key(key);
        self.exact.contains(&k) || self.patterns.iter().any(|p| k.contains(p.as_str()))
    }
}

fn normalize_key(k: &str) -> String {
    k.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The values of `body` held by a secret-looking key (and everything below one): the
/// paths (`task_config.password`, `a.tokens[0]`) of the non-empty strings, which
/// export writes as `${secret:NAME}`, and the paths of the values it cannot write so
/// (a number, a boolean, or a key holding `.`, `[` or `]`, which a path cannot
/// name): export refuses those rather than write them in plain text.
pub fn secret_paths(body: &Value, keys: &SecretKeys) -> (Vec<String>, Vec<String>) {
    /// `under`: below a secret-looking key; `named`: every key so far is nameable.
    fn walk(
        v: &Value,
        path: &str,
        under: bool,
        named: bool,
        keys: &SecretKeys,
        out: &mut (Vec<String>, Vec<String>),
    ) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = match path.is_empty() {
                        true => k.clone(),
                        false => format!("{path}.{k}"),
                    };
                    let nameable = named && !k.contains(['.', '[', ']']) && !k.is_empty();
                    walk(v, &p, under || keys.matches(k), nameable, keys, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), under, named, keys, out);
                }
            }
            Value::String(s) if under && !s.is_empty() => match named {
                true => out.0.push(path.to_string()),
                false => out.1.push(path.to_string()),
            },
            // A number under a key that names a secret (`password: 123456`) cannot be
            // written as a placeholder (it would read back as a string); one under a
            // key that only contains a secret word (`token_ttl: 3600`) is no secret,
            // nor is a boolean (`is_private: false`).
            Value::Number(_) if under && keys.names_secret(last_key(path)) => {
                out.1.push(path.to_string())
            }
            _ => {}
        }
    }
    let mut out = (Vec::new(), Vec::new());
    // The name is never a secret: it identifies the task.
    if let Value::Object(m) = body {
        for (k, v) in m.iter().filter(|(k, _)| k.as_str() != "name") {
            let mut one = Map::new();
            one.insert(k.clone(), v.clone());
            walk(&Value::Object(one), "", false, true, keys, &mut out);
        }
    }
    out.0.sort();
    out.1.sort();
    out
}

/// The last key of a path (`password` of `task_config.db.password`, `tokens` of
/// `a.tokens[0]`).
fn last_key(path: &str) -> &str {
    let key = path.rsplit('.').next().unwrap_or(path);
    key.split('[').next().unwrap_or(key)
}

/// The environment variable a secret of task `task` at `path` is read from:
/// `MYSQL_CRM_028_PASSWORD` (the task's name and the key, upper case), with the
/// key's parents (`..._OBS_ACCESS_KEY`) when the short form is `taken` already.
pub fn secret_variable(task: &str, path: &str, taken: &mut HashSet<String>) -> String {
    let up = |s: &str| -> String {
        let mut out = String::new();
        for c in deunicode::deunicode(s).chars() {
            match c.is_ascii_alphanumeric() {
                true => out.push(c.to_ascii_uppercase()),
                false if !out.is_empty() && !out.ends_with('_') => out.push('_'),
                false => {}
            }
        }
        out.trim_end_matches('_').to_string()
    };
    let task = match up(task) {
        t if t.is_empty() || t.starts_with(|c: char| c.is_ascii_digit()) => format!("TASK_{t}"),
        t => t,
    };
    let parts: Vec<String> = path
        .split(['.', '['])
        .map(|p| up(p.trim_end_matches(']')))
        .filter(|p| !p.is_empty() && p != "TASK_CONFIG")
        .collect();
    for n in 1..=parts.len() {
        let name = format!("{task}_{}", parts[parts.len() - n..].join("_"));
        if taken.insert(name.clone()) {
            return name;
        }
    }
    let mut n = 2;
    loop {
        let name = format!("{task}_{}_{n}", parts.join("_"));
        if taken.insert(name.clone()) {
            return name;
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
    yaml_of_escaped(&body)
}

/// A manifest's text in the canonical style, from a body whose references are escaped
/// already (and whose `${secret:...}` placeholders are meant).
pub fn yaml_of_escaped(body: &Value) -> Result<String, String> {
    let text = serde_yaml::to_string(body).map_err(|e| e.to_string())?;
    format::format_source(&text).map_err(|e| e.to_string())
}

/// How one task name that every environment has is written by `export --all-envs`.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// A shared manifest (`base`) and, for each environment that differs, a merge
    /// patch (by the environment's index) that turns the base into its body.
    Shared {
        base: Value,
        patches: Vec<(usize, Value)>,
    },
    /// Too different to share (another `data_source_type`, or most fields differ):
    /// a plain manifest in each environment's overlay.
    Apart(&'static str),
}

/// Splits the bodies one task has in each environment into a shared manifest and
/// patches: each value of the base is the one most environments have (ties: the first
/// environment's), a field no value of which most environments share is left to the
/// patches; a secret's placeholder is shared only when every environment reads the
/// same variable.
pub fn split_shared(bodies: &[&Value]) -> Layout {
    let dst = |b: &Value| b.get("data_source_type").cloned();
    if bodies.iter().any(|b| dst(b) != dst(bodies[0])) {
        return Layout::Apart("another data_source_type");
    }
    let candidates: Vec<Option<&Value>> = bodies.iter().map(|b| Some(*b)).collect();
    let base = majority(&candidates).unwrap_or(Value::Object(Map::new()));
    let leaves = bodies.iter().map(|b| count_leaves(b)).max().unwrap_or(0);
    let mut patches = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        if let Some(p) = merge_diff(&base, b) {
            if count_leaves(&p) * 2 > leaves {
                return Layout::Apart("most fields differ");
            }
            patches.push((i, p));
        }
    }
    Layout::Shared { base, patches }
}

fn is_placeholder(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with("${secret:"))
}

/// The value most of `values` hold (`None`: absent), objects merged key by key.
fn majority(values: &[Option<&Value>]) -> Option<Value> {
    if values.iter().all(|v| matches!(v, Some(Value::Object(_)))) {
        let mut keys: Vec<&String> = Vec::new();
        for v in values.iter().flatten() {
            for k in v.as_object().into_iter().flat_map(Map::keys) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let mut out = Map::new();
        for k in keys {
            let of_key: Vec<Option<&Value>> =
                values.iter().map(|v| v.and_then(|v| v.get(k))).collect();
            if let Some(v) = majority(&of_key) {
                out.insert(k.clone(), v);
            }
        }
        return Some(Value::Object(out));
    }
    let all_same = values.iter().all(|v| *v == values[0]);
    if all_same {
        return values[0].cloned();
    }
    let mut best: Option<(Option<&Value>, usize)> = None;
    for v in values {
        if v.is_some_and(is_placeholder) {
            continue;
        }
        let n = values.iter().filter(|w| *w == v).count();
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((*v, n));
        }
    }
    // Nothing most of them share: left to each environment's patch.
    match best {
        Some((v, n)) if n * 2 > values.len() || values.len() == 2 => v.cloned(),
        _ => None,
    }
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`; `None` when equal.
pub fn merge_diff(from: &Value, to: &Value) -> Option<Value> {
    if from == to {
        return None;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (k, bv) in b {
                match a.get(k) {
                    Some(av) => {
                        if let Some(d) = merge_diff(av, bv) {
                            out.insert(k.clone(), d);
                        }
                    }
                    None => {
                        out.insert(k.clone(), bv.clone());
                    }
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Some(Value::Object(out))
        }
        _ => Some(to.clone()),
    }
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(count_leaves).sum(),
        _ => 1,
    }
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
            file_for("dli-orders", "id-1", Some("DLI"), &mut taken),
            "dli/dli-orders.yaml"
        );
        assert_eq!(
            file_for("DLI-Orders", "0a1B2c3d4e5f", Some("DLI"), &mut taken),
            "dli/DLI-Orders-0a1b2c3d.yaml"
        );
        assert_eq!(
            file_for("../../etc/passwd", "x", None, &mut taken),
            "other/etc_passwd.yaml"
        );
        assert_eq!(
            file_for("订单 任务", "x", Some("a/b"), &mut taken),
            "a_b/ding-dan-ren-wu.yaml"
        );
        assert_eq!(
            file_for("订单-任务", "f00d", Some("a/b"), &mut taken),
            "a_b/ding-dan-ren-wu-f00d.yaml"
        );
        assert_eq!(
            file_for("🚀", "beef", Some("a/b"), &mut taken),
            "a_b/rocket.yaml"
        );
        assert_eq!(
            file_for("\u{e000}", "beef", Some("a/b"), &mut taken),
            "a_b/task-beef.yaml"
        );
    }

    #[test]
    fn secrets_get_stable_variables_and_echoes_go() {
        let keys = SecretKeys::default();
        let body = json!({"name": "token-task", "task_config": {"password": "p", "obs": {"access_key": "a", "secret_key": ""}, "queue": "q", "list": [{"token": "t"}]}});
        assert_eq!(
            secret_paths(&body, &keys).0,
            [
                "task_config.list[0].token",
                "task_config.obs.access_key",
                "task_config.password"
            ]
        );
        let odd = json!({"name": "n", "task_config": {"spark.secret.key": "v", "password": 123456, "tokens": ["a", "b"], "credentials": {"user": "u"}, "token_ttl": 3600, "is_private": false}});
        assert_eq!(
            secret_paths(&odd, &keys),
            (
                vec![
                    "task_config.credentials.user".to_string(),
                    "task_config.tokens[0]".into(),
                    "task_config.tokens[1]".into()
                ],
                vec![
                    "task_config.password".to_string(),
                    "task_config.spark.secret.key".into()
                ]
            )
        );
        let sk = SecretKeys::from_list(&["sk".into()]);
        assert!(sk.matches("SK") && !sk.matches("task"));
        let mut taken = HashSet::new();
        assert_eq!(
            secret_variable("mysql-crm-028", "task_config.password", &mut taken),
            "MYSQL_CRM_028_PASSWORD"
        );
        assert_eq!(
            secret_variable("mysql-crm-028", "task_config.b.password", &mut taken),
            "MYSQL_CRM_028_B_PASSWORD"
        );
        assert_eq!(
            secret_variable("9 lives", "task_config.list[0].token", &mut taken),
            "TASK_9_LIVES_TOKEN"
        );
        let custom = SecretKeys::from_list(&["queue".into()]);
        assert_eq!(secret_paths(&body, &custom).0, ["task_config.queue"]);
        let mut b = json!({"project_id": "p", "user_name": "u", "path": "/", "duty_person": "u", "parameter_config": [{"task_id": "1", "k": "v"}], "dir_id": "0"});
        strip_echoed(&mut b, Some("u"), &Map::new());
        assert_eq!(b, json!({"parameter_config": [{"k": "v"}], "dir_id": "0"}));
        let mut b = json!({"user_id": "u", "dir_id": "1", "schedule_config": {"max_time_out": 10, "enabled": 1}});
        let d = json!({"user_id": "u", "dir_id": "0", "schedule_config": {"max_time_out": 10}});
        strip_defaulted(&mut b, d.as_object().unwrap());
        assert_eq!(b, json!({"dir_id": "1", "schedule_config": {"enabled": 1}}));
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
    fn bodies_split_into_a_shared_base_and_patches() {
        let dev = json!({"name": "a", "data_source_type": "DLI", "task_config": {"db": "dev", "q": "x", "pw": "${secret:DEV_A_PW}"}, "schedule_config": {"max_time_out": 10}, "description": "same"});
        let staging = json!({"name": "a", "data_source_type": "DLI", "task_config": {"db": "stg", "q": "x", "pw": "${secret:STAGING_A_PW}"}, "schedule_config": {"max_time_out": 10}, "description": "same"});
        let prod = json!({"name": "a", "data_source_type": "DLI", "task_config": {"db": "stg", "q": "x", "pw": "${secret:PROD_A_PW}"}, "schedule_config": {"max_time_out": 60, "enabled": 1}, "description": "same"});
        let Layout::Shared { base, patches } = split_shared(&[&dev, &staging, &prod]) else {
            panic!("shared")
        };
        assert_eq!(
            base,
            json!({"name": "a", "data_source_type": "DLI", "task_config": {"db": "stg", "q": "x"}, "schedule_config": {"max_time_out": 10}, "description": "same"})
        );
        assert_eq!(
            patches,
            vec![
                (
                    0,
                    json!({"task_config": {"db": "dev", "pw": "${secret:DEV_A_PW}"}})
                ),
                (1, json!({"task_config": {"pw": "${secret:STAGING_A_PW}"}})),
                (
                    2,
                    json!({"task_config": {"pw": "${secret:PROD_A_PW}"}, "schedule_config": {"max_time_out": 60, "enabled": 1}})
                ),
            ]
        );
        for (i, b) in [&dev, &staging, &prod].iter().enumerate() {
            let mut merged = base.clone();
            if let Some((_, p)) = patches.iter().find(|(j, _)| *j == i) {
                crate::load::environment::merge_patch(&mut merged, p);
            }
            assert_eq!(&merged, *b);
        }
        let other = json!({"name": "a", "data_source_type": "HIVE"});
        assert_eq!(
            split_shared(&[&dev, &other]),
            Layout::Apart("another data_source_type")
        );
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
