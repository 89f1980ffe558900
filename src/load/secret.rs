//! Sensitive values: `${secret:NAME}` in a task's value reads the environment variable
//! NAME like `${NAME}`, and marks the value sensitive. A sensitive value is sent to the
//! service, and nowhere else: plans (text, Markdown, JSON, plan files), the state, the
//! journal and logs hold its *fingerprint* instead, `(sensitive:<hex>)`, an HMAC-SHA256
//! of the field's path and value keyed with `TASKFORM_SECRET_KEY`.
//!
//! The fingerprint stands in for the value in the content hash too, so a changed secret
//! still changes the task's hash (the plan shows the task, and the field as
//! `(sensitive)` changed), while no hash of the bare value is ever stored. A task
//! without sensitive values hashes exactly as before.
//!
//! Observing the server, a value at a path whose recorded content holds a fingerprint
//! is fingerprinted the same way before it is compared or recorded
//! ([`fingerprint_like`]), so refresh and adoption never write a secret either.
//!
//! Without `TASKFORM_SECRET_KEY`, a fixed key is used and a warning says that the
//! fingerprints of short or guessable secrets could then be tested offline by anyone
//! who reads a plan or the state: set it (the same long random value for every run of
//! a repo) wherever `${secret:...}` is used.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How a fingerprint starts.
pub const PREFIX: &str = "(sensitive:";

/// The environment variable holding the fingerprint key.
pub const KEY_VAR: &str = "TASKFORM_SECRET_KEY";

/// The key of fingerprints.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    bytes: Vec<u8>,
    /// From [`KEY_VAR`] (else the fixed key).
    pub explicit: bool,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ explicit: {} }}", self.explicit)
    }
}

impl Default for Key {
    fn default() -> Self {
        Key {
            bytes: b"taskform fingerprint key v1".to_vec(),
            explicit: false,
        }
    }
}

impl Key {
    /// [`KEY_VAR`] from the environment, else the fixed key.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Key {
        match env(KEY_VAR).filter(|k| !k.is_empty()) {
            Some(k) => Key {
                bytes: k.into_bytes(),
                explicit: true,
            },
            None => Key::default(),
        }
    }

    /// `(sensitive:<32 hex>)` for `value` at `path` (a dotted path such as
    /// `task_config.password`).
    pub fn fingerprint(&self, path: &str, value: &Value) -> String {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.bytes) else {
            return format!("{PREFIX}?)");
        };
        mac.update(path.as_bytes());
        mac.update(b"\0");
        mac.update(text.as_bytes());
        let hex = crate::hash::hex(&mac.finalize().into_bytes());
        format!("{PREFIX}{})", &hex[..32])
    }
}

/// Whether `s` is a fingerprint.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(')'))
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `body` with the value at each of `paths` replaced by its fingerprint.
pub fn fingerprint_paths(body: &Value, paths: &[String], key: &Key) -> Value {
    let mut out = body.clone();
    for p in paths {
        if let Some(v) = pointer_mut(&mut out, p) {
            let fp = key.fingerprint(p, v);
            *v = Value::String(fp);
        }
    }
    out
}

/// `remote` with each value fingerprinted where `template` (content taskform recorded)
/// holds a fingerprint at the same path: what the server holds, comparable with what
/// was recorded, and safe to record.
pub fn fingerprint_like(remote: &mut Value, template: &Value, key: &Key) {
    mask(remote, template, &mut String::new(), key);
}

/// [`fingerprint_like`] at `path`. A list whose length differs from the template's
/// cannot be matched entry by entry: if the template's holds a fingerprint, every
/// string in the remote list is fingerprinted (it differs anyway, and nothing it holds
/// can be told safe to record).
fn mask(remote: &mut Value, template: &Value, path: &mut String, key: &Key) {
    match (remote, template) {
        (r, Value::String(s)) if is_fingerprint(s) => {
            let fp = key.fingerprint(path, r);
            *r = Value::String(fp);
        }
        (Value::Object(r), Value::Object(t)) => {
            for (k, tv) in t {
                if let Some(rv) = r.get_mut(k) {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    mask(rv, tv, path, key);
                    path.truncate(len);
                }
            }
        }
        (Value::Array(r), Value::Array(t)) if r.len() == t.len() => {
            for (i, (rv, tv)) in r.iter_mut().zip(t).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                mask(rv, tv, path, key);
                path.truncate(len);
            }
        }
        (r @ Value::Array(_), t) if holds_fingerprint(t) => fingerprint_strings(r, path, key),
        _ => {}
    }
}

/// Every string below `v` replaced by its fingerprint.
fn fingerprint_strings(v: &mut Value, path: &mut String, key: &Key) {
    match v {
        Value::String(_) => {
            let fp = key.fingerprint(path, v);
            *v = Value::String(fp);
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                fingerprint_strings(item, path, key);
                path.truncate(len);
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                fingerprint_strings(item, path, key);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Whether `v` holds a sensitive value's fingerprint anywhere.
pub fn holds_fingerprint(v: &Value) -> bool {
    match v {
        Value::String(s) => is_fingerprint(s),
        Value::Array(a) => a.iter().any(holds_fingerprint),
        Value::Object(m) => m.values().any(holds_fingerprint),
        _ => false,
    }
}

/// The dotted paths of the strings in `body` that are exactly one of `values` (whole
/// values, never a part of a string): a secret's value written into a field as is.
pub fn paths_equal(body: &Value, values: &[String]) -> Vec<String> {
    fn walk(v: &Value, path: &mut String, values: &[String], out: &mut Vec<String>) {
        match v {
            Value::String(s) if values.iter().any(|x| s == x) => out.push(path.clone()),
            Value::Object(m) => {
                for (k, v) in m {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(v, path, values, out);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(v, path, values, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, &mut String::new(), values, &mut out);
    out
}

/// Removes the value at a dotted path, if there is one.
pub fn remove_at(v: &mut Value, path: &str) {
    let (parent, last) = match path.rfind(['.', '[']) {
        Some(i) => (&path[..i], &path[i..]),
        None => ("", path),
    };
    let target = match parent {
        "" => Some(v),
        p => pointer_mut(v, p),
    };
    match (target, last.strip_prefix('.'), last.strip_prefix('[')) {
        (Some(Value::Object(m)), Some(k), _) => {
            m.remove(k);
        }
        (Some(Value::Array(a)), _, Some(i)) => {
            if let Some(i) = i.strip_suffix(']').and_then(|i| i.parse::<usize>().ok())
                && i < a.len()
            {
                a.remove(i);
            }
        }
        (Some(Value::Object(m)), None, None) => {
            m.remove(last);
        }
        _ => {}
    }
}

/// The value at a dotted path (`a.b[2].c`), as [`crate::load::yaml::path_string`]
/// writes paths.
pub fn pointer_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = v;
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.as_object_mut()?.get_mut(key)?;
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let i: usize = r[..end].parse().ok()?;
            cur = cur.as_array_mut()?.get_mut(i)?;
            rest = &r[end + 1..];
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fingerprint of a value is fixed: a change of the HMAC (or of its crate)
    /// would make every sensitive field of every state look changed.
    #[test]
    fn fingerprints_are_fixed() {
        assert_eq!(
            Key::default().fingerprint("task_config.password", &json!("s3cret")),
            "(sensitive:8a4f2f54f6add7117620aad5051e8c1e)"
        );
    }

    #[test]
    fn fingerprints_are_keyed_recognised_and_follow_paths() {
        let k = Key::default();
        let other = Key::from_env(&|_| Some("another key".into()));
        let a = k.fingerprint("task_config.password", &json!("s3cret"));
        assert!(is_fingerprint(&a), "{a}");
        assert!(!a.contains("s3cret"));
        assert_ne!(
            a,
            other.fingerprint("task_config.password", &json!("s3cret"))
        );
        assert_ne!(a, k.fingerprint("task_config.other", &json!("s3cret")));
        assert_ne!(a, k.fingerprint("task_config.password", &json!("s3cret2")));
        let body = json!({"task_config": {"password": "s3cret", "list": [{"x": "y"}]}});
        let shown = fingerprint_paths(
            &body,
            &[
                "task_config.password".into(),
                "task_config.list[0].x".into(),
            ],
            &k,
        );
        assert_eq!(shown["task_config"]["password"], json!(a));
        assert!(is_fingerprint(
            shown["task_config"]["list"][0]["x"].as_str().unwrap()
        ));
        let mut remote =
            json!({"task_config": {"password": "s3cret", "list": [{"x": "y"}], "echo": 1}});
        fingerprint_like(&mut remote, &shown, &k);
        assert_eq!(
            remote["task_config"]["password"],
            shown["task_config"]["password"]
        );
        assert_eq!(remote["task_config"]["echo"], 1);
    }
}
