//! Contract tests of the emulator: the documented answers, error paths, lifecycle,
//! persistence, throttling and fault injection. In-process, on ephemeral ports.

use serde_json::Value;
use std::time::Duration;
use taskform::emulator::{self, Config, DEMO_PROJECT_ID as P, DEMO_TOKEN, DEMO_WORKSPACE as W};
use taskform::remote::signer;

const EXAMPLE: &str = r#"{
"id" : null, "data_source_type" : "DLI", "description" : "", "name" : "Test collection 110",
"user_id" : "0833a573fe80d5401f6dc010a775569a", "dir_id" : "0",
"task_config" : { "data_connection_name" : "dli_test", "data_connection_id" : "14bb947454e64de784eadaab759081e8",
  "databaseName" : [ "ygy1" ], "tableName" : [ "ygy1.ygy" ], "alive_object_policy" : "3", "deleted_object_policy" : "3",
  "enableDataProfile" : false, "enableDataClassification" : false, "enable_table_filter_by_regex" : false },
"schedule_config" : { "schedule_type" : "RUN_ONCE", "max_time_out" : 10 } }"#;

struct Api {
    _emu: emulator::Emulator,
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn start(cfg: Config) -> Api {
        taskform::remote::client::install_crypto_provider();
        let emu = emulator::start(cfg).await.unwrap();
        Api {
            base: emu.url(),
            _emu: emu,
            http: reqwest::Client::new(),
        }
    }
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            h,
        )
    }
    async fn ok(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (s, v, _) = self
            .call(
                method,
                path,
                body,
                &[("X-Auth-Token", DEMO_TOKEN), ("workspace", W)],
            )
            .await;
        (s, v)
    }
}

fn path(rest: &str) -> String {
    format!("/v3/{P}/metadata/tasks/{rest}")
}

#[tokio::test]
async fn the_reference_example_is_created() {
    let api = Api::start(Config::default()).await;
    let (s, v) = api.ok("POST", &path("create"), Some(EXAMPLE)).await;
    assert_eq!(s, 200, "{v}");
    let id = v["task_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let (s, shown) = api.ok("GET", &path(id), None).await;
    assert_eq!(s, 200);
    assert_eq!(shown["name"], "Test collection 110");
    assert_eq!(shown["id"], id);
    assert!(shown["create_time"].is_string());
}

#[tokio::test]
async fn documented_error_paths() {
    let api = Api::start(Config::default()).await;
    let create = path("create");
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("workspace", W)],
            create.clone(),
            EXAMPLE,
            401,
            "APIGW.0301",
        ),
        (
            vec![("X-Auth-Token", "wrong"), ("workspace", W)],
            create.clone(),
            EXAMPLE,
            401,
            "APIGW.0301",
        ),
        (
            vec![("X-Auth-Token", DEMO_TOKEN)],
            create.clone(),
            EXAMPLE,
            400,
            "DLG.0818",
        ),
        (
            vec![("X-Auth-Token", DEMO_TOKEN), ("workspace", "other")],
            create.clone(),
            EXAMPLE,
            403,
            "DLG.0818",
        ),
        (
            vec![("X-Auth-Token", DEMO_TOKEN), ("workspace", W)],
            "/v3/unknown/metadata/tasks/create".into(),
            EXAMPLE,
            400,
            "DLG.0818",
        ),
        (
            vec![("X-Auth-Token", DEMO_TOKEN), ("workspace", W)],
            format!("/v3/{P}/metadata/nothing"),
            EXAMPLE,
            404,
            "APIG.0101",
        ),
    ];
    for (headers, p, body, status, code) in cases {
        let (s, v, _) = api.call("POST", &p, Some(body), &headers).await;
        assert_eq!(
            (s, v["error_code"].as_str()),
            (status, Some(code)),
            "{headers:?} {p}: {v}"
        );
        assert!(v["error_msg"].is_string());
    }
    for (field, code) in [
        ("\"dir_id\" : \"0\",", "DLG.0002"),
        ("\"name\" : \"Test collection 110\",", "DLG.0002"),
    ] {
        let (s, v) = api
            .ok("POST", &create, Some(&EXAMPLE.replace(field, "")))
            .await;
        assert_eq!((s, v["error_code"].as_str().unwrap()), (400, code), "{v}");
    }
    let (s, v) = api
        .ok(
            "POST",
            &create,
            Some(&EXAMPLE.replace("\"max_time_out\" : 10", "\"max_time_out\" : \"10\"")),
        )
        .await;
    assert_eq!((s, v["error_code"].as_str().unwrap()), (400, "DLG.0003"));
    assert!(
        v["error_msg"]
            .as_str()
            .unwrap()
            .contains("schedule_config.max_time_out")
    );
    let (s, v) = api.ok("POST", &create, Some("{not json")).await;
    assert_eq!((s, v["error_code"].as_str().unwrap()), (400, "DLG.0001"));
    let (s, v) = api
        .ok("GET", &path("0123456789abcdef0123456789abcdef"), None)
        .await;
    assert_eq!((s, v["error_code"].as_str().unwrap()), (400, "DLG.2253"));
    let (s, v) = api
        .ok("DELETE", &path("0123456789abcdef0123456789abcdef"), None)
        .await;
    assert_eq!((s, v["error_code"].as_str().unwrap()), (400, "DLG.2208"));
    assert!(api.requests_logged_without_credentials().await);
}

impl Api {
    async fn requests_logged_without_credentials(&self) -> bool {
        let (_, v, _) = self.call("GET", "/_emulator/requests", None, &[]).await;
        let text = v.to_string();
        !text.contains(DEMO_TOKEN) && v["requests"].as_array().is_some_and(|r| !r.is_empty())
    }
}

#[tokio::test]
async fn search_show_update_delete_round_trip() {
    let api = Api::start(Config::default()).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let body = EXAMPLE.replace("Test collection 110", &format!("orders-{i:02}"));
        ids.push(
            api.ok("POST", &path("create"), Some(&body)).await.1["task_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    api.ok(
        "POST",
        &path("create"),
        Some(&EXAMPLE.replace("Test collection 110", "other")),
    )
    .await;
    let (s, v) = api
        .ok(
            "POST",
            &path("search"),
            Some(r#"{"name": "orders", "limit": 5, "offset": 10}"#),
        )
        .await;
    assert_eq!(s, 200);
    // As the service: `total_records` counts every task of the project (13), not the
    // 12 matching the name.
    assert_eq!(
        (v["count"].as_u64(), v["total_records"].as_u64()),
        (Some(2), Some(13))
    );
    assert_eq!(v["resources"][0]["name"], "orders-10");
    let (_, v) = api
        .ok("POST", &path("search"), Some(r#"{"name": "orders-03"}"#))
        .await;
    assert_eq!(v["resources"][0]["id"], ids[3]);

    let changed = EXAMPLE
        .replace("Test collection 110", "orders-03")
        .replace("\"max_time_out\" : 10", "\"max_time_out\" : 99");
    let (s, _) = api.ok("PUT", &path(&ids[3]), Some(&changed)).await;
    assert_eq!(s, 200);
    let (_, v) = api.ok("GET", &path(&ids[3]), None).await;
    assert_eq!(v["schedule_config"]["max_time_out"], 99);
    assert_eq!(v["id"], ids[3], "update keeps the ID");
    let (s, _) = api.ok("DELETE", &path(&ids[3]), None).await;
    assert_eq!(s, 200);
    let (s, v) = api.ok("GET", &path(&ids[3]), None).await;
    assert_eq!((s, v["error_code"].as_str()), (400, Some("DLG.2253")));
}

#[tokio::test]
async fn scheduled_tasks_must_be_stopped_before_update_or_delete() {
    let api = Api::start(Config::default()).await;
    let cron = EXAMPLE.replace(
        r#""schedule_type" : "RUN_ONCE", "max_time_out" : 10"#,
        r#""schedule_type" : "CRON", "cron_expression": "0 0 2 * * ?", "enabled": 1"#,
    );
    let id = api.ok("POST", &path("create"), Some(&cron)).await.1["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = api.ok("GET", &path(&id), None).await;
    assert_eq!(
        v["schedule_config"]["enabled"], 3,
        "read back as scheduling"
    );
    let (s, v) = api.ok("DELETE", &path(&id), None).await;
    assert_eq!((s, v["error_code"].as_str()), (400, Some("DLG.2206")));
    let (s, v) = api.ok("PUT", &path(&id), Some(&cron)).await;
    assert_eq!((s, v["error_code"].as_str()), (400, Some("DLG.2206")));
    let (s, _) = api
        .ok("POST", &format!("{}/action?action=stop", path(&id)), None)
        .await;
    assert_eq!(s, 200);
    let (_, v) = api.ok("GET", &path(&id), None).await;
    assert_eq!(v["schedule_config"]["enabled"], 5, "read back as paused");
    assert_eq!(api.ok("DELETE", &path(&id), None).await.0, 200);
}

#[tokio::test]
async fn tasks_persist_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emu.json");
    let id = {
        let api = Api::start(Config {
            data: Some(data.clone()),
            ..Config::default()
        })
        .await;
        api.ok("POST", &path("create"), Some(EXAMPLE)).await.1["task_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let api = Api::start(Config {
        data: Some(data),
        ..Config::default()
    })
    .await;
    let (s, v) = api.ok("GET", &path(&id), None).await;
    assert_eq!(s, 200);
    assert_eq!(v["name"], "Test collection 110");
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let api = Api::start(Config {
        rate_limit: 3,
        ..Config::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (s, v, h) = api
            .call(
                "POST",
                &path("search"),
                Some("{}"),
                &[("X-Auth-Token", DEMO_TOKEN), ("workspace", W)],
            )
            .await;
        statuses.push(s);
        if s == 429 {
            assert_eq!(v["error_code"], "APIGW.0308");
            retry_after = h
                .get("Retry-After")
                .map(|v| v.to_str().unwrap().to_string());
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api.ok("POST", &path("search"), Some("{}")).await.0,
        200,
        "a new window admits again"
    );
}

#[tokio::test]
async fn fault_injection_does_what_it_says() {
    let api = Api::start(Config {
        fail_rate: 1.0,
        ..Config::default()
    })
    .await;
    let (s, v) = api.ok("POST", &path("create"), Some(EXAMPLE)).await;
    assert_eq!(s, 500, "{v}");
    let (_, tasks, _) = api.call("GET", "/_emulator/tasks", None, &[]).await;
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        0,
        "a 500 creates nothing"
    );

    let api = Api::start(Config {
        drop_rate: 1.0,
        ..Config::default()
    })
    .await;
    let r = api
        .http
        .post(format!("{}{}", api.base, path("create")))
        .header("X-Auth-Token", DEMO_TOKEN)
        .header("workspace", W)
        .body(EXAMPLE)
        .send()
        .await;
    assert!(r.is_err(), "the connection is closed without an answer");
    let (_, tasks, _) = api.call("GET", "/_emulator/tasks", None, &[]).await;
    assert_eq!(
        tasks["tasks"].as_array().unwrap().len(),
        1,
        "but the task was created"
    );

    let api = Api::start(Config {
        throttle_rate: 1.0,
        ..Config::default()
    })
    .await;
    assert_eq!(api.ok("POST", &path("create"), Some(EXAMPLE)).await.0, 429);

    let api = Api::start(Config {
        latency: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let t = std::time::Instant::now();
    api.ok("POST", &path("search"), Some("{}")).await;
    assert!(t.elapsed() >= Duration::from_millis(200));

    // Same seed, same draws.
    let mut runs = Vec::new();
    for _ in 0..2 {
        let api = Api::start(Config {
            fail_rate: 0.5,
            seed: Some(42),
            rate_limit: 0,
            ..Config::default()
        })
        .await;
        let mut s = Vec::new();
        for _ in 0..20 {
            s.push(api.ok("POST", &path("search"), Some("{}")).await.0);
        }
        runs.push(s);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&500) && runs[0].contains(&200));
}

#[tokio::test]
async fn aksk_signatures_are_verified() {
    let (ak, sk) = (
        "QTWAOYTTINDUT2QVKYUC",
        "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
    );
    let api = Api::start(Config {
        access_key: Some(ak.into()),
        secret_key: Some(sk.into()),
        ..Config::default()
    })
    .await;
    let url: reqwest::Url = format!("{}{}", api.base, path("create")).parse().unwrap();
    let host = taskform::endpoint::host_header(&url);
    let date = signer::sdk_date_now();
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), host),
        ("x-project-id".to_string(), P.to_string()),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    let req = signer::Request {
        method: "POST",
        path: url.path(),
        query: None,
        headers: &headers,
        body: EXAMPLE.as_bytes(),
    };
    let good = signer::authorization(ak, sk, &req, &date);
    let (s, v, _) = api
        .call(
            "POST",
            url.path(),
            Some(EXAMPLE),
            &[
                ("workspace", W),
                ("X-Project-Id", P),
                ("X-Sdk-Date", &date),
                ("Authorization", &good),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let bad = signer::authorization(ak, "wrong-secret", &req, &date);
    let (s, v, _) = api
        .call(
            "POST",
            url.path(),
            Some(EXAMPLE),
            &[
                ("workspace", W),
                ("X-Project-Id", P),
                ("X-Sdk-Date", &date),
                ("Authorization", &bad),
            ],
        )
        .await;
    assert_eq!((s, v["error_code"].as_str()), (401, Some("APIGW.0301")));
    let old = "20191115T033655Z";
    let stale = signer::authorization(ak, sk, &req, old);
    let (s, v, _) = api
        .call(
            "POST",
            url.path(),
            Some(EXAMPLE),
            &[
                ("workspace", W),
                ("X-Project-Id", P),
                ("X-Sdk-Date", old),
                ("Authorization", &stale),
            ],
        )
        .await;
    assert_eq!((s, v["error_code"].as_str()), (401, Some("APIGW.0303")));
}

#[tokio::test]
async fn paths_and_query_values_are_percent_decoded() {
    let api = Api::start(Config::default()).await;
    let (s, v) = api.ok("GET", &path("no%20such%20id"), None).await;
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("DLG.2253")),
        "{v}"
    );
    assert_eq!(v["error_msg"], "The task no such id does not exist.");
    // Huawei's SDK sends an ID holding `/` as `a%2Fb`: one ID, not two segments.
    let (s, v) = api.ok("DELETE", &path("a%2Fb"), None).await;
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("DLG.2208")),
        "{v}"
    );
    assert_eq!(v["error_msg"], "The task a/b to delete does not exist.");
    let cron = EXAMPLE.replace(
        r#""schedule_type" : "RUN_ONCE""#,
        r#""schedule_type" : "CRON", "cron_expression" : "0 0 2 * * ?", "enabled" : 1"#,
    );
    let (_, v) = api.ok("POST", &path("create"), Some(&cron)).await;
    let id = v["task_id"].as_str().unwrap().to_string();
    let (s, v) = api
        .ok("POST", &path(&format!("{id}/action?action=st%6Fp")), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.ok("GET", &path(&id), None).await;
    assert_eq!(v["schedule_config"]["enabled"], 5);
}

/// The fields of the SDK's task model (`MetadataCollectionTask`) that the service
/// fills in: the schedule's `job_id` (kept across updates), `user_name`, `path`,
/// `duty_person`, `next_run_time` while scheduling, and each `parameter_config` entry's
/// `task_id`, whatever `--task-config-echo` says.
#[tokio::test]
async fn answers_carry_the_fields_the_service_fills_in() {
    for echo in [
        emulator::Echo::Exact,
        emulator::Echo::Omitted,
        emulator::Echo::Reordered,
    ] {
        let api = Api::start(Config {
            task_config_echo: echo,
            ..Config::default()
        })
        .await;
        let body = EXAMPLE
            .replace(
                r#""schedule_type" : "RUN_ONCE""#,
                r#""schedule_type" : "CRON", "cron_expression" : "0 0 2 * * ?", "enabled" : 1"#,
            )
            .replace(
                r#""dir_id" : "0","#,
                r#""dir_id" : "0", "parameter_config" : [{"description" : "owner", "type" : "string"}],"#,
            );
        let (_, v) = api.ok("POST", &path("create"), Some(&body)).await;
        let id = v["task_id"].as_str().unwrap().to_string();
        let (_, shown) = api.ok("GET", &path(&id), None).await;
        let job = shown["schedule_config"]["job_id"].as_i64();
        assert!(job.is_some(), "{echo:?}: {shown}");
        for f in ["user_name", "path", "duty_person", "next_run_time"] {
            assert!(shown[f].is_string(), "{echo:?}: {f} in {shown}");
        }
        assert_eq!(shown["parameter_config"][0]["task_id"], id, "{echo:?}");
        api.ok("POST", &path(&format!("{id}/action?action=stop")), None)
            .await;
        let (s, _) = api.ok("PUT", &path(&id), Some(&body)).await;
        assert_eq!(s, 200);
        let (_, shown) = api.ok("GET", &path(&id), None).await;
        assert_eq!(shown["schedule_config"]["job_id"].as_i64(), job, "kept");
    }
}

#[tokio::test]
async fn search_filters_by_directory_and_user_name() {
    let api = Api::start(Config::default()).await;
    let a = EXAMPLE.replace("Test collection 110", "a");
    let b = EXAMPLE.replace("Test collection 110", "b").replace(
        r#""dir_id" : "0""#,
        r#""dir_id" : "d7", "user_name" : "bob""#,
    );
    api.ok("POST", &path("create"), Some(&a)).await;
    api.ok("POST", &path("create"), Some(&b)).await;
    let names = |v: &Value| -> Vec<String> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (filter, expected) in [
        (r#"{"directory_id": "d7"}"#, vec!["b"]),
        (r#"{"directory_id": "0"}"#, vec!["a"]),
        (r#"{"user_name": "bob"}"#, vec!["b"]),
        (r#"{"user_name": "nobody"}"#, vec![]),
        (
            r#"{"data_connection_id": "14bb947454e64de784eadaab759081e8"}"#,
            vec!["a", "b"],
        ),
        ("{}", vec!["a", "b"]),
    ] {
        let (s, v) = api.ok("POST", &path("search"), Some(filter)).await;
        assert_eq!(s, 200);
        assert_eq!(names(&v), expected, "{filter}");
    }
}
