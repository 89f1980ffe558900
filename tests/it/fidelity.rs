//! Fidelity to the real service (issue #15, points 1, 2, 4, 7 and 8), against the
//! emulator in the modes that model what Huawei's SDK, API definitions and Terraform
//! provider show (docs/API-EVIDENCE.md):
//!
//! 1. `DLG.0818` for a task ID means the task is gone (refresh, prune, update), also
//!    when a delete refused with `DLG.2206` is followed by a stop that finds nothing;
//! 2. HTTP 404 carrying a DLG not-found code means the task is gone, not that the
//!    endpoint is missing;
//! 4. a `task_config` the answer omits, or echoes reordered with extra keys, is no
//!    drift, and import and in-doubt settlement still match;
//! 7. AK/SK-signed requests carry a signed `X-Project-Id`;
//! 8. `require_user_id: false` in taskform.yaml lets tasks leave out `user_id`.

use crate::common::*;
use serde_json::{Value, json};
use taskform::emulator::{self, Config};
use taskform::remote::signer;

fn id_of(state: &Value, name: &str) -> String {
    state["tasks"][name]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} not recorded: {state}"))
        .to_string()
}

/// The apply result of task `name` (and `action`), from `apply --format json`.
fn result<'a>(apply: &'a Value, name: &str, action: &str) -> &'a Value {
    apply["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name && t["action"] == action)
        .unwrap_or_else(|| panic!("no {action} of {name} in {apply}"))
}

fn cron(name: &str, timeout: i64) -> String {
    format!(
        "name: {name}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: CRON\n  cron_expression: \"0 0 * * * ?\"\n  enabled: 1\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n  databaseName: [db1]\n"
    )
}

// ---- 1. DLG.0818 ----

#[test]
fn dlg_0818_for_a_task_id_means_the_task_is_gone() {
    let emu = Emu::start(&["--unknown-task", "0818"]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    let state = p.state();
    let (a, b, c) = (id_of(&state, "a"), id_of(&state, "b"), id_of(&state, "c"));

    // Prune: c was deleted in the console; its DELETE is answered 400 DLG.0818.
    assert_eq!(emu.call("DELETE", &format!("/{c}"), "").0, 200);
    std::fs::remove_file(p.path("tasks/c.yaml")).unwrap();
    let v = p
        .apply(&emu.url, &["--prune", "--format", "json"])
        .succeeds()
        .json();
    assert_eq!(result(&v, "c", "delete")["outcome"], "deleted");
    assert!(emu.calls().contains(&format!("DELETE /{c} 400")));
    assert!(p.state()["tasks"].get("c").is_none());

    // Refresh: a was deleted in the console; its show is answered 400 DLG.0818.
    assert_eq!(emu.call("DELETE", &format!("/{a}"), "").0, 200);
    p.online(&["refresh", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!("deleted outside taskform: a (task {a})"));
    assert!(p.state()["tasks"].get("a").is_none());
    p.apply(&emu.url, &[]).succeeds();

    // Update: b was deleted in the console; its PUT is answered 400 DLG.0818.
    assert_eq!(emu.call("DELETE", &format!("/{b}"), "").0, 200);
    p.write("tasks/b.yaml", &manifest("b", 20));
    let v = p
        .apply(&emu.url, &["--on-change", "update", "--format", "json"])
        .succeeds()
        .json();
    assert_eq!(result(&v, "b", "update")["outcome"], "created");
    assert_ne!(id_of(&p.state(), "b"), b);
    assert_eq!(p.plan_json()["summary"]["unchanged"], 2);
}

#[test]
fn a_delete_refused_as_scheduling_whose_stop_finds_no_task_is_deleted() {
    let srv = Scripted::start(|n, r| {
        if r.path.ends_with("/search") {
            return Reply::Answer(
                200,
                vec![],
                json!({"count": 0, "resources": []}).to_string(),
            );
        }
        match (r.method.as_str(), r.path.contains("action=stop")) {
            ("POST", false) => created(n),
            ("DELETE", _) => api_error(
                400,
                "DLG.2206",
                "Deletion is not supported for instances in a scheduling state",
            ),
            ("POST", true) => api_error(
                400,
                "DLG.0818",
                "The workspace or metadata task does not exist",
            ),
            _ => api_error(500, "DLG.0500", "unexpected"),
        }
    });
    let p = Project::new();
    p.write("tasks/a.yaml", &cron("a", 10))
        .write("tasks/b.yaml", &cron("b", 10));
    p.apply(&srv.url, &[]).succeeds();
    let b = id_of(&p.state(), "b");
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    let v = p
        .apply(&srv.url, &["--prune", "--format", "json"])
        .succeeds()
        .json();
    assert_eq!(result(&v, "b", "delete")["outcome"], "deleted");
    assert!(p.state()["tasks"].get("b").is_none());
    let sent: Vec<String> = srv
        .requests()
        .iter()
        .filter(|r| r.path.contains(&b))
        .map(|r| format!("{} {}", r.method, r.path.rsplit('/').next().unwrap()))
        .collect();
    assert!(
        sent.contains(&"POST action?action=stop".to_string()),
        "{sent:?}"
    );
}

// ---- 2. HTTP 404 ----

#[test]
fn http_404_with_a_dlg_code_means_the_task_is_gone_not_an_unsupported_endpoint() {
    let emu = Emu::start(&["--unknown-task", "404"]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    let state = p.state();
    let (a, b, c) = (id_of(&state, "a"), id_of(&state, "b"), id_of(&state, "c"));

    // Update: a was deleted in the console; its PUT is answered 404 DLG.2253.
    assert_eq!(emu.call("DELETE", &format!("/{a}"), "").0, 200);
    p.write("tasks/a.yaml", &manifest("a", 20));
    let out = p.apply(&emu.url, &["--on-change", "update", "--format", "json"]);
    out.succeeds()
        .stderr_has("no longer exists on the server")
        .stderr_lacks("create-only");
    assert_eq!(result(&out.json(), "a", "update")["outcome"], "created");
    assert!(emu.calls().contains(&format!("PUT /{a} 404")));
    let state = p.state();
    assert_ne!(id_of(&state, "a"), a);
    assert!(
        state["tasks"]["a"]
            .get("superseded")
            .is_none_or(|s| s.as_array().is_some_and(|s| s.is_empty())),
        "the task that is gone is not kept as superseded: {state}"
    );

    // Refresh: b was deleted in the console; its show is answered 404 DLG.2253.
    assert_eq!(emu.call("DELETE", &format!("/{b}"), "").0, 200);
    p.online(&["refresh", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!("deleted outside taskform: b (task {b})"));
    assert!(p.state()["tasks"].get("b").is_none());

    // Prune: c was deleted in the console; its DELETE is answered 404 DLG.2208.
    assert_eq!(emu.call("DELETE", &format!("/{c}"), "").0, 200);
    std::fs::remove_file(p.path("tasks/c.yaml")).unwrap();
    let v = p
        .apply(&emu.url, &["--prune", "--format", "json"])
        .succeeds()
        .json();
    assert_eq!(result(&v, "c", "delete")["outcome"], "deleted");
    assert_eq!(v["summary"]["unsupported"], 0);
    assert!(p.state()["tasks"].get("c").is_none());
    assert_eq!(p.plan_json()["summary"]["unchanged"], 2);
}

// ---- 4. Echoed fields ----

/// A task with a `parameter_config`, whose entries the service echoes with a `task_id`.
fn with_parameters(name: &str) -> String {
    format!(
        "{}parameter_config:\n  - {{description: Owning team, type: string}}\n",
        manifest(name, 10)
    )
}

fn echo_mode_keeps_refresh_import_and_settlement_working(mode: &str) {
    let emu = Emu::start(&["--task-config-echo", mode]);
    let shown = {
        let p = Project::new();
        p.task("probe");
        p.apply(&emu.url, &[]).succeeds();
        let id = id_of(&p.state(), "probe");
        let (s, body) = emu.call("GET", &format!("/{id}"), "");
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    match mode {
        "omitted" => assert!(shown.get("task_config").is_none(), "{shown}"),
        _ => assert_eq!(
            shown["task_config"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            [
                "queue",
                "data_connection_id",
                "databaseName",
                "data_connection_name"
            ],
            "{shown}"
        ),
    }

    // Refresh: no drift, although the answers do not echo task_config as sent.
    let p = Project::new();
    p.task("a").write("tasks/b.yaml", &with_parameters("b"));
    p.apply(&emu.url, &[]).succeeds();
    p.online(&["refresh", "tasks"], &emu.url)
        .succeeds()
        .stdout_has("Refresh complete: no drift in 2 task(s).");
    p.online(&["plan", "tasks", "--refresh"], &emu.url)
        .succeeds()
        .stdout_has("No changes.");
    // A field the answers do carry is still compared.
    let a = id_of(&p.state(), "a");
    let mut changed = emu
        .tasks()
        .into_iter()
        .find(|t| t["id"] == a.as_str())
        .unwrap();
    changed["schedule_config"]["max_time_out"] = json!(99);
    assert_eq!(
        emu.call("PUT", &format!("/{a}"), &changed.to_string()).0,
        200
    );
    p.online(&["plan", "tasks", "--refresh"], &emu.url)
        .succeeds()
        .stdout_has("~ schedule_config.max_time_out: 99 -> 10")
        .stdout_lacks("task_config");

    // Import: a second checkout without a state records both as they are.
    let q = Project::new();
    q.task("a").write("tasks/b.yaml", &with_parameters("b"));
    q.online(&["import", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!(
            "imported b: task {} (same content)",
            id_of(&p.state(), "b")
        ))
        .stdout_has("imported a: task")
        .stdout_has("content differs");
    assert_eq!(q.plan_json()["summary"]["unchanged"], 1);

    // In-doubt settlement: creates whose answers were lost are found and recorded.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emu.json");
    let data = data.to_str().unwrap();
    let r = Project::new();
    r.task("x").write("tasks/y.yaml", &with_parameters("y"));
    {
        let emu = Emu::start(&["--data", data, "--drop-rate", "1"]);
        r.apply(&emu.url, &[]).fails_with(1);
        assert_eq!(r.plan_json()["summary"]["in_doubt"], 2);
    }
    let emu = Emu::start(&["--data", data, "--task-config-echo", mode]);
    r.apply(&emu.url, &[])
        .succeeds()
        .stderr_has("found on the server with the content sent; recorded");
    assert_eq!(emu.creates(), 0, "nothing created again");
    assert_eq!(r.plan_json()["summary"]["unchanged"], 2);
}

#[test]
fn task_config_left_out_of_answers_is_unknown_not_drift() {
    echo_mode_keeps_refresh_import_and_settlement_working("omitted");
}

#[test]
fn task_config_echoed_reordered_with_extra_keys_is_no_drift() {
    echo_mode_keeps_refresh_import_and_settlement_working("reordered");
}

// ---- 7. X-Project-Id ----

#[test]
fn aksk_requests_carry_a_signed_project_header_the_emulator_requires() {
    let emu = Emu::start(&["--access-key", "AKTEST", "--secret-key", "SKSECRET-123"]);
    let p = Project::new();
    p.task("a").task("b");
    let aksk = [
        ("HW_ACCESS_KEY", "AKTEST"),
        ("HW_SECRET_KEY", "SKSECRET-123"),
    ];
    p.run(&["apply", "--yes", "tasks", "--endpoint", &emu.url], &aksk)
        .succeeds();
    assert_eq!(emu.tasks().len(), 2);
    p.write("tasks/a.yaml", &manifest("a", 20));
    p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--on-change",
            "update",
            "--refresh",
        ],
        &aksk,
    )
    .succeeds();

    // What is sent: the header, among the signed ones; a token sends none.
    let srv = Scripted::start(|n, r| {
        if r.path.ends_with("/search") {
            return Reply::Answer(200, vec![], json!({"resources": []}).to_string());
        }
        created(n)
    });
    let q = Project::new();
    q.task("a");
    q.run(
        &["apply", "--yes", "tasks", "--endpoint", &srv.url],
        &[("HW_ACCESS_KEY", "AK"), ("HW_SECRET_KEY", "SK")],
    )
    .succeeds();
    let reqs = srv.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r.header("X-Project-Id"), Some(PROJECT), "{:?}", r.headers);
        let auth = r.header("Authorization").unwrap();
        let signed = auth
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap();
        assert!(signed.split(';').any(|h| h == "x-project-id"), "{signed}");
    }
}

#[tokio::test]
async fn the_emulator_refuses_signed_requests_without_a_matching_signed_project_header() {
    taskform::remote::client::install_crypto_provider();
    let (ak, sk) = ("AKTEST", "SKSECRET-123");
    let emu = emulator::start(Config {
        access_key: Some(ak.into()),
        secret_key: Some(sk.into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url: reqwest::Url = format!("{}/v3/{PROJECT}/metadata/tasks/search", emu.url())
        .parse()
        .unwrap();
    let host = taskform::endpoint::host_header(&url);
    let body = b"{}";
    // (X-Project-Id sent, whether it is signed) -> status
    let cases: [(Option<&str>, bool, u16); 4] = [
        (Some(PROJECT), true, 200),
        (None, false, 401),
        (Some(PROJECT), false, 401),
        (Some("0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"), true, 401),
    ];
    for (project, signed, want) in cases {
        let date = signer::sdk_date_now();
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("host".to_string(), host.clone()),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        if let (Some(p), true) = (project, signed) {
            headers.push(("x-project-id".to_string(), p.to_string()));
        }
        let req = signer::Request {
            method: "POST",
            path: url.path(),
            query: None,
            headers: &headers,
            body,
        };
        let mut r = http
            .post(url.clone())
            .header("Content-Type", "application/json")
            .header("workspace", WORKSPACE)
            .header("X-Sdk-Date", &date)
            .header("Authorization", signer::authorization(ak, sk, &req, &date))
            .body(body.to_vec());
        if let Some(p) = project {
            r = r.header("X-Project-Id", p);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, want, "{project:?} signed={signed}: {text}");
        if want == 401 {
            assert!(
                text.contains("APIGW.0301") && text.contains("X-Project-Id"),
                "{text}"
            );
        }
    }
}

// ---- 8. user_id ----

#[test]
fn user_id_is_required_unless_the_settings_make_it_optional() {
    let p = Project::new();
    let settings = format!(
        "project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: ../state/taskform.json\ndefaults:\n  dir_id: \"0\"\n"
    );
    p.write("tasks/taskform.yaml", &settings).task("a");
    // Required by default (the create page and the SDK say so), with the way out named.
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("missing mandatory field `user_id`")
        .stderr_has("require_user_id: false");

    p.write(
        "tasks/taskform.yaml",
        &format!("{settings}require_user_id: false\n"),
    );
    p.run(&["validate", "tasks"], &[]).succeeds();
    // A service that accepts it, as the Terraform provider's acceptance tests show.
    let emu = Emu::start(&["--user-id-optional"]);
    p.apply(&emu.url, &[]).succeeds();
    let tasks = emu.tasks();
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].get("user_id").is_none(), "{}", tasks[0]);
    // A service that holds to the create page refuses it, and says so.
    let strict = Emu::start(&[]);
    let q = Project::new();
    q.write(
        "tasks/taskform.yaml",
        &format!("{settings}require_user_id: false\n"),
    )
    .task("a");
    q.apply(&strict.url, &[])
        .fails_with(1)
        .stderr_has("DLG.0002")
        .stderr_has("user_id");
    // A user_id that is set is still checked.
    p.write(
        "tasks/b.yaml",
        &format!("{}user_id: 7\n", manifest("b", 10)),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("`user_id` must be a string");

    p.write(
        "tasks/taskform.yaml",
        &format!("{settings}require_user_id: maybe\n"),
    );
    p.run(&["validate", "tasks"], &[])
        .fails_with(1)
        .stderr_has("`require_user_id` must be true or false");
}
