//! Request and response shapes of the DataArts Catalog collection-task API, shared by
//! the client and the emulator.

use serde::{Deserialize, Serialize};

/// `POST /v3/{project_id}/metadata/tasks/create`.
pub fn create_path(project_id: &str) -> String {
    format!("/v3/{project_id}/metadata/tasks/create")
}

/// `POST /v3/{project_id}/metadata/tasks/search`.
pub fn search_path(project_id: &str) -> String {
    format!("/v3/{project_id}/metadata/tasks/search")
}

/// `GET|PUT|DELETE /v3/{project_id}/metadata/tasks/{task_id}`.
pub fn task_path(project_id: &str, task_id: &str) -> String {
    format!("/v3/{project_id}/metadata/tasks/{task_id}")
}

/// `POST /v3/{project_id}/metadata/tasks/{task_id}/action?action=run|runimmediate|stop`.
pub fn action_path(project_id: &str, task_id: &str, action: &str) -> String {
    format!("/v3/{project_id}/metadata/tasks/{task_id}/action?action={action}")
}

/// The ID of a task as search and show return it (`id`; `task_id` accepted too).
pub fn remote_task_id(task: &serde_json::Value) -> String {
    task.get("id")
        .or_else(|| task.get("task_id"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?")
        .to_string()
}

/// The create answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateResponse {
    pub task_id: String,
}

/// An error answer: `{"error_code", "error_msg"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error_code: String,
    pub error_msg: String,
}

/// Error codes that mean "throttled, try again later", whatever the status.
pub const THROTTLE_CODES: &[&str] = &["APIGW.0308", "APIG.0308"];

/// Reads an error body in the flat form or the wrapped `{"errors": [...]}` form.
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    #[derive(Deserialize)]
    struct Wrapped {
        errors: Vec<ApiError>,
    }
    if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        return Some(e);
    }
    serde_json::from_slice::<Wrapped>(body)
        .ok()
        .and_then(|w| w.errors.into_iter().next())
}

/// A search request's filters (those of the SDK's `QueryTaskRequest` that the emulator
/// reads; the client sends `name`, `limit` and `offset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_type: Option<String>,
    /// The task's `dir_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The `data_connection_id` in the task's `task_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// A search answer. Huawei's SDK marks every field optional, and `total_records`
/// counts the tasks of the whole project, not those matching the filter: a reader pages
/// until a page holds fewer than `limit` tasks, and a missing or null field is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub total_records: Option<u64>,
    #[serde(default)]
    pub max_records: Option<u64>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub resources: Vec<serde_json::Value>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_parse() {
        let flat = parse_error(br#"{"error_code":"DLG.0001","error_msg":"bad"}"#).unwrap();
        let wrapped =
            parse_error(br#"{"errors":[{"error_code":"DLG.0001","error_msg":"bad"}]}"#).unwrap();
        assert_eq!(flat, wrapped);
        assert_eq!(parse_error(b"<html>"), None);
    }

    #[test]
    fn search_answers_with_missing_or_null_fields_parse() {
        let r: SearchResponse = serde_json::from_str(r#"{"resources": null}"#).unwrap();
        assert!(r.resources.is_empty());
        let r: SearchResponse = serde_json::from_str("{}").unwrap();
        assert_eq!((r.count, r.total_records), (None, None));
        let r: SearchResponse =
            serde_json::from_str(r#"{"count": 1, "total_records": 9, "resources": [{"id": "a"}]}"#)
                .unwrap();
        assert_eq!(r.resources.len(), 1);
    }
}
