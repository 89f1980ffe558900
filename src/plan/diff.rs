//! Field-level differences between two request bodies, for showing what a replace changes.

use serde_json::Value;

/// One changed field.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added {
        path: String,
        new: Value,
    },
    Removed {
        path: String,
        old: Value,
    },
    Changed {
        path: String,
        old: Value,
        new: Value,
    },
}

/// Differences from `old` to `new`, sorted by path. Mappings are compared key by key;
/// lists and scalars as whole values.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a
                .keys()
                .chain(b.keys().filter(|k| !a.contains_key(*k)))
                .collect();
            keys.sort();
            for k in keys {
                let path = join(prefix, k);
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => walk(&path, x, y, out),
                    (Some(x), None) => out.push(Change::Removed {
                        path,
                        old: x.clone(),
                    }),
                    (None, Some(y)) => out.push(Change::Added {
                        path,
                        new: y.clone(),
                    }),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(Change::Changed {
            path: prefix.to_string(),
            old: a.clone(),
            new: b.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_changes_by_path() {
        let old = json!({"name": "a", "schedule_config": {"max_time_out": 10, "x": 1}, "task_config": {"t": [1]}});
        let new = json!({"name": "a", "schedule_config": {"max_time_out": 20}, "task_config": {"t": [1, 2]}, "description": "d"});
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::Added {
                    path: "description".into(),
                    new: json!("d")
                },
                Change::Changed {
                    path: "schedule_config.max_time_out".into(),
                    old: json!(10),
                    new: json!(20)
                },
                Change::Removed {
                    path: "schedule_config.x".into(),
                    old: json!(1)
                },
                Change::Changed {
                    path: "task_config.t".into(),
                    old: json!([1]),
                    new: json!([1, 2])
                },
            ]
        );
    }
}
