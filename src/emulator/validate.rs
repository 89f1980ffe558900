//! What the service checks of a task body (create and update), per the reference page.

use serde_json::{Map, Value};

/// A refused body: (error_code, error_msg), answered with HTTP 400.
pub type Refusal = (&'static str, String);

const MANDATORY_STRINGS: &[&str] = &["name", "user_id", "dir_id", "data_source_type"];
const OPTIONAL_STRINGS: &[&str] = &[
    "id",
    "user_id",
    "description",
    "create_time",
    "project_id",
    "update_time",
    "user_name",
    "path",
    "last_run_time",
    "start_time",
    "end_time",
    "next_run_time",
    "duty_person",
    "update_type",
    "data_source_workspace_id",
];
const SCHEDULE_INTEGERS: &[&str] = &["max_time_out", "job_id", "enabled"];
const SCHEDULE_STRINGS: &[&str] = &[
    "cron_expression",
    "end_time",
    "interval",
    "schedule_type",
    "start_time",
];

/// Checks a body; returns the parsed object. With `user_id_optional`, a body without
/// `user_id` passes (the Terraform provider never sends it, and its acceptance tests
/// pass); a `user_id` that is there must still be a string.
pub fn task_body(bytes: &[u8], user_id_optional: bool) -> Result<Map<String, Value>, Refusal> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            "DLG.0001",
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(("DLG.0001", "The request body must be a JSON object.".into()));
    };
    for f in MANDATORY_STRINGS {
        if user_id_optional && *f == "user_id" {
            continue;
        }
        match map.get(*f) {
            None | Some(Value::Null) => {
                return Err(("DLG.0002", format!("The parameter {f} is mandatory.")));
            }
            Some(Value::String(s)) if s.is_empty() && *f == "name" => {
                return Err(("DLG.0002", "The parameter name must not be empty.".into()));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(("DLG.0003", format!("The parameter {f} must be a String."))),
        }
    }
    for f in OPTIONAL_STRINGS {
        if let Some(v) = map.get(*f)
            && !(v.is_string() || v.is_null())
        {
            return Err(("DLG.0003", format!("The parameter {f} must be a String.")));
        }
    }
    match map.get("task_config") {
        Some(Value::Object(_)) => {}
        None | Some(Value::Null) => {
            return Err(("DLG.0002", "The parameter task_config is mandatory.".into()));
        }
        Some(_) => {
            return Err((
                "DLG.0003",
                "The parameter task_config must be an Object.".into(),
            ));
        }
    }
    if let Some(v) = map.get("parameter_config")
        && !(v.is_array() || v.is_null())
    {
        return Err((
            "DLG.0003",
            "The parameter parameter_config must be an Array.".into(),
        ));
    }
    let sc = match map.get("schedule_config") {
        Some(Value::Object(sc)) => sc,
        None | Some(Value::Null) => {
            return Err((
                "DLG.0002",
                "The parameter schedule_config is mandatory.".into(),
            ));
        }
        Some(_) => {
            return Err((
                "DLG.0003",
                "The parameter schedule_config must be an Object.".into(),
            ));
        }
    };
    for (k, v) in sc {
        if v.is_null() {
            continue;
        }
        if SCHEDULE_INTEGERS.contains(&k.as_str())
            && v.as_i64().is_none_or(|n| i32::try_from(n).is_err())
        {
            return Err((
                "DLG.0003",
                format!("The parameter schedule_config.{k} must be an Integer."),
            ));
        }
        if SCHEDULE_STRINGS.contains(&k.as_str()) && !v.is_string() {
            return Err((
                "DLG.0003",
                format!("The parameter schedule_config.{k} must be a String."),
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"id": null, "data_source_type": "DLI", "description": "", "name": "Test collection 110",
        "user_id": "0833a573fe80d5401f6dc010a775569a", "dir_id": "0",
        "task_config": {"data_connection_name": "dli_test", "databaseName": ["ygy1"], "enableDataProfile": false},
        "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": 10}}"#;

    #[test]
    fn the_reference_example_passes_and_mistakes_do_not() {
        assert!(task_body(EXAMPLE.as_bytes(), false).is_ok());
        let bad = EXAMPLE.replace("\"max_time_out\": 10", "\"max_time_out\": \"10\"");
        assert_eq!(task_body(bad.as_bytes(), false).unwrap_err().0, "DLG.0003");
        let missing = EXAMPLE.replace("\"dir_id\": \"0\",", "");
        assert_eq!(
            task_body(missing.as_bytes(), false).unwrap_err(),
            ("DLG.0002", "The parameter dir_id is mandatory.".to_string())
        );
        assert_eq!(task_body(b"[1]", false).unwrap_err().0, "DLG.0001");
    }

    #[test]
    fn user_id_is_mandatory_unless_the_service_is_modelled_as_the_provider_sees_it() {
        let without = EXAMPLE.replace("\"user_id\": \"0833a573fe80d5401f6dc010a775569a\",", "");
        assert_ne!(without, EXAMPLE);
        assert_eq!(
            task_body(without.as_bytes(), false).unwrap_err(),
            (
                "DLG.0002",
                "The parameter user_id is mandatory.".to_string()
            )
        );
        assert!(task_body(without.as_bytes(), true).is_ok());
        let wrong = EXAMPLE.replace("\"0833a573fe80d5401f6dc010a775569a\"", "7");
        assert_eq!(task_body(wrong.as_bytes(), true).unwrap_err().0, "DLG.0003");
    }
}
