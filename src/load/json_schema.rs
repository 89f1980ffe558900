//! The JSON Schema (draft 2020-12) of a task manifest, for editors: with the
//! `# yaml-language-server: $schema=...` modeline, an editor completes keys, shows the
//! API reference's descriptions and marks mistakes while typing.
//!
//! It is made from the same tables as the validator ([`schema`]): the create body's
//! fields and no others (`additionalProperties: false`; the fields the service sets
//! are left out), their types, 32-bit integers, the `schedule_type` and `enabled`
//! enums, task names free of control and bidirectional characters, and
//! `cron_expression` required for a `CRON` schedule. A whole `${VAR}` is accepted
//! where an integer or an enum value is expected, as the loader interpolates it.
//!
//! A manifest may leave fields to `defaults` in `taskform.yaml`: [`manifest_schema`]
//! requires only the mandatory fields the given defaults do not set.
//!
//! What only `taskform validate` checks: the Quartz syntax of a cron expression field
//! by field (the schema checks it has 6 or 7 fields), names used twice, whether the
//! `${VAR}`s are set, and a number written with a decimal point in an integer field
//! (`10.0` is the integer 10 to a JSON Schema).

use crate::load::schema::{self, KNOWN_DATA_SOURCE_TYPES, MANDATORY, SCHEDULE_TYPES};
use serde_json::{Map, Value, json};

/// The create API reference's description of each body field accepted in a manifest,
/// with what taskform adds.
const FIELD_DOCS: &[(&str, &str)] = &[
    (
        "name",
        "Task name. taskform's identity of the task: unique across the manifest folder; no control or bidirectional-override characters.",
    ),
    ("description", "Task description."),
    ("user_id", "User ID."),
    ("project_id", "Product ID."),
    (
        "dir_id",
        "Directory ID. A string: quote it, an unquoted 0 is a YAML integer.",
    ),
    ("schedule_config", "Scheduling information (SchedulerInfo)."),
    (
        "parameter_config",
        "User-defined metadata information: a list of CustomMetadata mappings.",
    ),
    ("user_name", "User name."),
    ("path", "Path"),
    ("start_time", "Start time"),
    ("end_time", "End time"),
    ("duty_person", "Owner"),
    ("update_type", "Modification type"),
    ("data_source_type", "Data source type"),
    (
        "task_config",
        "Task information, which is Map(String, Object). The key is the attribute name, and value is the attribute value.",
    ),
    (
        "data_source_workspace_id",
        "Workspace ID of the data source",
    ),
];

/// The same for `schedule_config` (SchedulerInfo); `job_id` is the service's.
const SCHEDULE_DOCS: &[(&str, &str)] = &[
    (
        "cron_expression",
        "Expression: Quartz style, seconds first, 6 or 7 fields (\"0 30 2 * * ?\"). Needed when schedule_type is CRON. Quote it.",
    ),
    ("end_time", "End time"),
    (
        "max_time_out",
        "Maximum timeout interval (a 32-bit integer).",
    ),
    ("interval", "Interval"),
    ("schedule_type", "Scheduling type: RUN_ONCE or CRON."),
    ("start_time", "Start time"),
    (
        "enabled",
        "Enabled: 1 schedules the task, 0 leaves it stopped.",
    ),
];

/// A whole `${VAR}` or `${secret:VAR}`, which the loader replaces.
const VARIABLE: &str = r"^\$\{(secret:)?[A-Za-z_][A-Za-z0-9_]*\}$";

fn doc<'a>(table: &'a [(&str, &'a str)], key: &str) -> &'a str {
    table.iter().find(|(k, _)| *k == key).map_or("", |(_, d)| d)
}

fn int32() -> Value {
    json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX})
}

/// `schema`, or a whole `${VAR}` standing for a value of it.
fn or_variable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"$ref": "#/$defs/variable"}]})
}

fn described(mut schema: Value, description: &str) -> Value {
    if let Value::Object(m) = &mut schema {
        m.insert("description".into(), description.into());
    }
    schema
}

/// The schema of one manifest document. Fields that `defaults` (of the folder's
/// `taskform.yaml`) set are not required.
pub fn manifest_schema(defaults: &Map<String, Value>) -> Value {
    let mut schedule_props = Map::new();
    for key in schema::SCHEDULE_FIELDS {
        let s = match *key {
            "job_id" => continue, // assigned by the service
            "max_time_out" => or_variable(int32()),
            "enabled" => or_variable(json!({"type": "integer", "enum": [0, 1]})),
            "schedule_type" => or_variable(json!({"type": "string", "enum": SCHEDULE_TYPES})),
            "cron_expression" => json!({
                "type": "string",
                "anyOf": [
                    {"pattern": r"^\s*$"},
                    {"pattern": r"^\s*\S+(\s+\S+){5,6}\s*$"},
                    {"$ref": "#/$defs/variable"}
                ]
            }),
            _ => json!({"type": "string"}),
        };
        schedule_props.insert(key.to_string(), described(s, doc(SCHEDULE_DOCS, key)));
    }
    let mut schedule = json!({
        "type": "object",
        "properties": schedule_props,
        "additionalProperties": false,
    });
    let default_cron = defaults
        .get("schedule_config")
        .and_then(|s| s.get("cron_expression"))
        .is_some();
    if !default_cron {
        schedule["if"] = json!({
            "properties": {"schedule_type": {"const": "CRON"}},
            "required": ["schedule_type"]
        });
        schedule["then"] = json!({
            "required": ["cron_expression"],
            "properties": {"cron_expression": {"not": {"pattern": r"^\s*$"}}}
        });
    }

    let mut props = Map::new();
    for key in schema::FIELDS {
        if schema::SERVER_MANAGED.contains(key) {
            continue;
        }
        let s = match *key {
            "name" => json!({
                "type": "string",
                "pattern": r"\S",
                "not": {"pattern": "[\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069]"}
            }),
            "schedule_config" => schedule.clone(),
            "parameter_config" => json!({"type": "array", "items": {"type": "object"}}),
            "task_config" => json!({"type": "object"}),
            "data_source_type" => json!({"type": "string", "examples": KNOWN_DATA_SOURCE_TYPES}),
            _ => json!({"type": "string"}),
        };
        props.insert(key.to_string(), described(s, doc(FIELD_DOCS, key)));
    }
    props.insert(
        "taskform".to_string(),
        json!({
            "type": "object",
            "description": "taskform's per-task rules; never sent to the service, never part of the content hash.",
            "properties": {
                "prevent_destroy": {"type": "boolean", "description": "A plan that would replace the task (or --destroy delete it) is an error."},
                "ignore_changes": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Field paths (e.g. schedule_config.enabled) left out of the content hash and of drift."},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "For selection with --label key=value."}
            },
            "additionalProperties": false
        }),
    );
    let required: Vec<&str> = MANDATORY
        .iter()
        .copied()
        .filter(|k| !defaults.contains_key(*k))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "taskform task manifest",
        "description": "One DataArts Catalog metadata collection task: the body of the create request (POST /v3/{project_id}/metadata/tasks/create). Generated by `taskform schema`.",
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
        "$defs": {
            "variable": {
                "type": "string",
                "pattern": VARIABLE,
                "description": "An environment variable, replaced when the manifest is loaded."
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_field_is_described_and_service_fields_are_left_out() {
        let s = manifest_schema(&Map::new());
        let props = s["properties"].as_object().unwrap();
        for f in schema::FIELDS {
            assert_eq!(
                props.contains_key(*f),
                !schema::SERVER_MANAGED.contains(f),
                "{f}"
            );
        }
        for (k, v) in props {
            assert!(!v["description"].as_str().unwrap().is_empty(), "{k}");
        }
        let sched = s["properties"]["schedule_config"]["properties"]
            .as_object()
            .unwrap();
        assert!(!sched.contains_key("job_id"));
        assert_eq!(sched.len(), schema::SCHEDULE_FIELDS.len() - 1);
        assert_eq!(s["required"], json!(MANDATORY));
    }

    #[test]
    fn fields_the_defaults_set_are_not_required() {
        let defaults = json!({"user_id": "u", "dir_id": "0", "schedule_config": {"cron_expression": "0 0 2 * * ?"}});
        let s = manifest_schema(defaults.as_object().unwrap());
        assert_eq!(
            s["required"],
            json!(["name", "data_source_type", "task_config"])
        );
        assert!(s["properties"]["schedule_config"].get("then").is_none());
    }
}
