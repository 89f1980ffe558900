//! `${VAR}` interpolation of string values from the environment.
//!
//! `${NAME}` is replaced by the environment variable NAME; `$${` writes a literal `${`;
//! a `$` not followed by `{` is kept. Only string values are interpolated, never keys,
//! so a task's structure cannot change with the environment.

use crate::load::yaml::Seg;
use serde_json::Value;

/// A problem with one interpolation, at a path in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub path: Vec<Seg>,
    pub message: String,
    pub hint: Option<String>,
}

/// Interpolates every string in `value` in place; returns every problem found.
pub fn interpolate(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<InterpolationError> {
    let mut errors = Vec::new();
    let mut path = Vec::new();
    walk(value, env, &mut path, &mut errors);
    errors
}

fn walk(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<Seg>,
    errors: &mut Vec<InterpolationError>,
) {
    match value {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err((message, hint)) => errors.push(InterpolationError {
                path: path.clone(),
                message,
                hint,
            }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                walk(item, env, path, errors);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(Seg::Key(k.clone()));
                walk(v, env, path, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Expands one string.
pub fn expand(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
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
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err((
                    format!("`${{{name}}}` is not a valid variable reference"),
                    Some("variable names are letters, digits and `_`, not starting with a digit; write `$${` for a literal `${`".into()),
                ));
            }
            match env(name) {
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
    Ok(out)
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
        let errs = interpolate(&mut v, &env);
        assert_eq!(v["a"][0], "dli_prod");
        assert!(v.get("k${CONN}").is_some(), "keys are not interpolated");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].path,
            vec![Seg::Key("a".into()), Seg::Index(1), Seg::Key("b".into())]
        );
    }
}
