//! `${VAR}` interpolation of string values from the environment.
//!
//! `${NAME}` is replaced by the environment variable NAME; `${secret:NAME}` too, and
//! the value is then sensitive (see [`crate::load::secret`]); `$${` writes a literal
//! `${`; a `$` not followed by `{` is kept. Only string values are interpolated, never
//! keys, so a task's structure cannot change with the environment.
//!
//! Typed where the schema is: a value that is exactly one `${NAME}` in a field the
//! schema wants an integer becomes an integer (`enabled: ${ENABLED}`).
//!
//! `${var:NAME}` reads NAME from the `variables:` of taskform.yaml (an environment's
//! first): the lookup is asked for the key `var:NAME` (see
//! `load::environment::Scope`), so that variables and environment variables go
//! through one function. Typed the same way.

use crate::load::yaml::Seg;
use serde_json::Value;

/// A problem with one interpolation, at a path in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub path: Vec<Seg>,
    pub message: String,
    pub hint: Option<String>,
}

/// Variables holding taskform's own credentials and keys: never interpolated, so that a
/// manifest (a pull request) cannot print them into a plan.
pub const CREDENTIALS: &[&str] = &[
    "TASKFORM_AUTH_TOKEN",
    "HW_ACCESS_KEY",
    "HW_SECRET_KEY",
    "HW_SECURITY_TOKEN",
    "HW_PASSWORD",
    "TASKFORM_SECRET_KEY",
    "TASKFORM_EMULATOR_TOKEN",
    "TASKFORM_EMULATOR_SECRET_KEY",
    "PGPASSWORD",
    "TASKFORM_WEBHOOK_SECRET",
];

/// The variables a string references as `${secret:NAME}`.
pub fn secret_names(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${secret:") {
        rest = &rest[i + "${secret:".len()..];
        if let Some(end) = rest.find('}') {
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

/// A value read from a `${secret:...}`: where, and the string as written (with its
/// references unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sensitive {
    pub path: Vec<Seg>,
    pub template: String,
}

/// The environment variables a string references (`${NAME}` and `${secret:NAME}`;
/// not `$${`, a literal, nor `${var:NAME}`, a variable of taskform.yaml).
pub fn referenced_names(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else { break };
            let reference = &tail[..end];
            let name = reference.strip_prefix("secret:").unwrap_or(reference);
            if is_var_name(name) {
                out.push(name);
            }
            rest = &tail[end..];
        } else {
            rest = &after[1..];
        }
    }
    out
}

/// A string that read environment variables: where, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub path: Vec<Seg>,
    pub names: Vec<String>,
}

/// What interpolating a document found.
#[derive(Debug, Default)]
pub struct Interpolated {
    pub errors: Vec<InterpolationError>,
    pub sensitive: Vec<Sensitive>,
    /// Every string that read an environment variable.
    pub reads: Vec<Read>,
}

/// Interpolates every string in `value` in place. `integer_at` says where the schema
/// wants an integer (a whole `${NAME}` there becomes one).
pub fn interpolate(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    integer_at: &dyn Fn(&[Seg]) -> bool,
) -> Interpolated {
    let mut out = Interpolated::default();
    let mut path = Vec::new();
    walk(value, env, integer_at, &mut path, &mut out);
    out
}

fn walk(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    integer_at: &dyn Fn(&[Seg]) -> bool,
    path: &mut Vec<Seg>,
    out: &mut Interpolated,
) {
    match value {
        Value::String(s) if s.contains('$') => {
            let template = s.clone();
            match expand_marked(s, env) {
                Ok((expanded, secret)) => {
                    let names = referenced_names(&template);
                    if !names.is_empty() {
                        out.reads.push(Read {
                            path: path.clone(),
                            names: names.into_iter().map(str::to_string).collect(),
                        });
                    }
                    if secret {
                        out.sensitive.push(Sensitive {
                            path: path.clone(),
                            template: template.clone(),
                        });
                    }
                    match whole_reference(&template) {
                        Some(name) if integer_at(path) => {
                            match expanded.trim().parse::<i64>() {
                                Ok(n) => *value = Value::from(n),
                                Err(_) => out.errors.push(InterpolationError {
                                    path: path.clone(),
                                    message: format!(
                                        "`{template}` must give a whole number for this integer field, but {name} is {:?}",
                                        if secret { "(sensitive)".to_string() } else { expanded }
                                    ),
                                    hint: Some(format!("set {name} to a whole number, e.g. {name}=1")),
                                }),
                            }
                        }
                        _ => *s = expanded,
                    }
                }
                Err((message, hint)) => out.errors.push(InterpolationError {
                    path: path.clone(),
                    message,
                    hint,
                }),
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                walk(item, env, integer_at, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(Seg::Key(k.clone()));
                walk(v, env, integer_at, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The variable of a string that is exactly one reference (`${NAME}` or
/// `${secret:NAME}`).
fn whole_reference(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("${")?.strip_suffix('}')?;
    let name = inner
        .strip_prefix("secret:")
        .or_else(|| inner.strip_prefix("var:"))
        .unwrap_or(inner);
    (is_var_name(name) && !name.contains('}')).then_some(name)
}

/// The key under which the lookup answers `${var:NAME}`.
pub fn var_key(name: &str) -> String {
    format!("{VAR_PREFIX}{name}")
}

/// The prefix of [`var_key`].
pub const VAR_PREFIX: &str = "var:";

/// Expands one string; a `${secret:NAME}` is refused (outside task values, a secret
/// could not be kept out of output).
pub fn expand(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
    match expand_marked(s, env)? {
        (_, true) => Err((
            "`${secret:...}` is only for task values".into(),
            Some("use `${NAME}` here, or move the value into a manifest or `defaults`".into()),
        )),
        (v, false) => Ok(v),
    }
}

/// Expands one string; the flag says whether a `${secret:...}` was part of it.
pub fn expand_marked(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), (String, Option<String>)> {
    let mut secret = false;
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err((
                    "unterminated `${` in string".into(),
                    Some("close it with `}`, or write `$${` for a literal `${`".into()),
                ));
            };
            let reference = &tail[..end];
            if let Some(name) = reference.strip_prefix(VAR_PREFIX) {
                if !is_var_name(name) {
                    return Err((
                        format!("`${{{reference}}}` is not a valid variable reference"),
                        Some(
                            "variable names are letters, digits and `_`, not starting with a digit"
                                .into(),
                        ),
                    ));
                }
                match env(&var_key(name)) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err((
                            format!("variable `{name}` is not defined"),
                            Some(format!(
                                "define it under `variables:` in taskform.yaml (for every environment) or under the environment's `variables:`: {name}: ..."
                            )),
                        ));
                    }
                }
                rest = &tail[end + 1..];
                continue;
            }
            let name = match reference.strip_prefix("secret:") {
                Some(n) => {
                    secret = true;
                    n
                }
                None => reference,
            };
            if !is_var_name(name) {
                return Err((
                    format!("`${{{name}}}` is not a valid variable reference"),
                    Some("variable names are letters, digits and `_`, not starting with a digit; write `$${` for a literal `${`".into()),
                ));
            }
            if CREDENTIALS.contains(&name)
                || env(&format!(
                    "{}{name}",
                    crate::load::environment::CREDENTIAL_PREFIX
                ))
                .is_some()
            {
                return Err((
                    format!(
                        "`${{{reference}}}` names a credential taskform uses itself; it is never interpolated into a task"
                    ),
                    Some(
                        "give the value its own variable and reference that with `${secret:NAME}`"
                            .into(),
                    ),
                ));
            }
            match env(name).filter(|_| !name.starts_with(VAR_PREFIX)) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err((
                        format!("environment variable `{name}` is not set"),
                        Some(format!(
                            "export {name}=... before running taskform, or write `$${{{name}}}` for a literal"
                        )),
                    ));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok((out, secret))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "CONN" => Some("dli_prod".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_escapes_and_keeps_lone_dollars() {
        assert_eq!(expand("a-${CONN}-b", &env).unwrap(), "a-dli_prod-b");
        assert_eq!(expand("$${CONN}", &env).unwrap(), "${CONN}");
        assert_eq!(expand("cost $5 ${EMPTY}x", &env).unwrap(), "cost $5 x");
        assert_eq!(expand("$", &env).unwrap(), "$");
    }

    #[test]
    fn reports_undefined_and_malformed() {
        assert!(
            expand("${NOPE}", &env)
                .unwrap_err()
                .0
                .contains("`NOPE` is not set")
        );
        assert!(
            expand("${CONN", &env)
                .unwrap_err()
                .0
                .contains("unterminated")
        );
        assert!(expand("${1X}", &env).unwrap_err().0.contains("not a valid"));
    }

    #[test]
    fn walks_nested_values_and_reports_paths() {
        let mut v = serde_json::json!({"a": ["${CONN}", {"b": "${NOPE}"}], "k${CONN}": 1});
        let errs = interpolate(&mut v, &env, &|_| false).errors;
        assert_eq!(v["a"][0], "dli_prod");
        assert!(v.get("k${CONN}").is_some(), "keys are not interpolated");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].path,
            vec![Seg::Key("a".into()), Seg::Index(1), Seg::Key("b".into())]
        );
    }

    #[test]
    fn secrets_are_marked_and_whole_references_are_typed() {
        let env = |n: &str| match n {
            "PW" => Some("s3cret".to_string()),
            "ENABLED" => Some(" 1 ".to_string()),
            "WORD" => Some("yes".to_string()),
            _ => None,
        };
        let mut v = serde_json::json!({"tc": {"password": "${secret:PW}", "dsn": "db;pw=${secret:PW}"}, "sc": {"enabled": "${ENABLED}", "max_time_out": "${WORD}"}, "d": "${ENABLED}"});
        let integer_at = |p: &[Seg]| {
            p.last() == Some(&Seg::Key("enabled".into()))
                || p.last() == Some(&Seg::Key("max_time_out".into()))
        };
        let r = interpolate(&mut v, &env, &integer_at);
        assert_eq!(v["tc"]["password"], "s3cret");
        assert_eq!(v["sc"]["enabled"], 1, "an integer field gets an integer");
        assert_eq!(v["d"], " 1 ", "a string field keeps the string");
        assert_eq!(r.sensitive.len(), 2);
        assert_eq!(r.sensitive[1].template, "db;pw=${secret:PW}");
        assert_eq!(r.errors.len(), 1);
        assert!(
            r.errors[0].message.contains("whole number"),
            "{:?}",
            r.errors
        );
        assert!(
            expand("${secret:PW}", &env).is_err(),
            "not outside task values"
        );
    }
}
