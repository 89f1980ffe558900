//! Settling in-doubt creates by search (issue #7's first part): adopted when exactly one
//! remote task has the name and the content sent, created again when none has the
//! name, left in doubt with the IDs named otherwise; create-only gateways fall back.

use crate::common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

fn creates(srv: &Scripted) -> usize {
    srv.requests()
        .iter()
        .filter(|r| r.path.ends_with("/create"))
        .count()
}

#[test]
fn a_create_that_did_happen_is_adopted_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("emu.json");
    let data = data.to_str().unwrap();
    let p = Project::new();
    p.task("a").task("b");
    {
        let emu = Emu::start(&["--data", data, "--drop-rate", "1"]);
        p.apply(&emu.url, &[]).fails_with(1);
        assert_eq!(p.plan_json()["summary"]["in_doubt"], 2);
    }
    let emu = Emu::start(&["--data", data]);
    p.apply(&emu.url, &[])
        .succeeds()
        .stderr_has("found on the server with the content sent; recorded");
    assert_eq!(emu.creates(), 0, "nothing created again");
    let state = p.state();
    assert!(state.get("in_doubt").is_none());
    let ids: Vec<String> = emu
        .tasks()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&state["tasks"]["a"]["task_id"].as_str().unwrap().to_string()));
    assert_eq!(p.plan_json()["summary"]["unchanged"], 2);
}

/// A server whose first create hangs (in doubt) and whose search answers `search`
/// (with the bodies created so far). Before the first create, a search answers none:
/// that is the search taskform makes before creating into an empty state.
fn server(
    search: impl Fn(&[Value]) -> Reply + Send + Sync + 'static,
) -> (Scripted, Arc<Mutex<Vec<Value>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let seen = sent.clone();
    let srv = Scripted::start(move |n, r| {
        if r.path.ends_with("/search") {
            let sent = seen.lock().unwrap();
            return match sent.is_empty() {
                true => search_result(vec![]),
                false => search(&sent),
            };
        }
        let mut sent = seen.lock().unwrap();
        sent.push(r.json());
        if sent.len() == 1 {
            Reply::Hang(std::time::Duration::from_secs(2))
        } else {
            created(n)
        }
    });
    (srv, sent)
}

fn search_result(tasks: Vec<Value>) -> Reply {
    Reply::Answer(
        200,
        vec![],
        json!({"count": tasks.len(), "total_records": tasks.len(), "resources": tasks}).to_string(),
    )
}

#[test]
fn a_create_that_did_not_happen_is_sent_again() {
    let (srv, _) = server(|_| search_result(vec![json!({"id": "X", "name": "a-longer-name"})]));
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--timeout", "0.5"]).fails_with(1);
    p.apply(&srv.url, &[])
        .succeeds()
        .stderr_has("no task of that name on the server besides those the state records: the create did not happen");
    assert_eq!(creates(&srv), 2);
    assert!(p.state().get("in_doubt").is_none());
}

#[test]
fn several_remote_tasks_leave_it_in_doubt_with_their_ids() {
    let (srv, _) = server(|sent| {
        let mut one = sent[0].clone();
        one["id"] = json!("ID-ONE");
        one["create_time"] = json!("t");
        let mut two = sent[0].clone();
        two["id"] = json!("ID-TWO");
        search_result(vec![one, two])
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--timeout", "0.5"]).fails_with(1);
    p.apply(&srv.url, &[]).fails_with(1).stderr_has(
        "the service has 2 task(s) of that name that the state does not record (ID-ONE, ID-TWO), 2 with the content that was sent",
    );
    assert_eq!(creates(&srv), 1);
    assert_eq!(p.plan_json()["tasks"][0]["action"], "in_doubt");
}

#[test]
fn exactly_one_echoed_task_is_adopted_even_with_extra_fields() {
    let (srv, _) = server(|sent| {
        let mut one = sent[0].clone();
        one["id"] = json!("ID-ONE");
        one["task_config"]["echoed_by_service"] = json!(true);
        one["schedule_config"]["enabled"] = json!(3);
        search_result(vec![one])
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &["--timeout", "0.5"]).fails_with(1);
    p.apply(&srv.url, &[]).succeeds();
    assert_eq!(p.state()["tasks"]["a"]["task_id"], "ID-ONE");
    assert_eq!(creates(&srv), 1);
}

// ---- update in place, prune, adoption, refresh, create-only fallback ----

fn cron(name: &str, timeout: i64) -> String {
    format!(
        "name: {name}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: CRON\n  cron_expression: \"0 0 * * * ?\"\n  enabled: 1\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n  databaseName: [db1]\n"
    )
}

fn id_of(state: &Value, name: &str) -> String {
    state["tasks"][name]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} not recorded: {state}"))
        .to_string()
}

fn remote<'a>(tasks: &'a [Value], id: &str) -> Option<&'a Value> {
    tasks.iter().find(|t| t["id"] == id)
}

/// The requests after the first `skip`, without searches and shows.
fn writes(emu: &Emu, skip: usize) -> Vec<String> {
    emu.calls()
        .into_iter()
        .skip(skip)
        .filter(|c| !c.contains("/search") && !c.starts_with("GET "))
        .collect()
}

#[test]
fn update_in_place_keeps_the_task_id() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a");
    p.apply(&emu.url, &[]).succeeds();
    let id = id_of(&p.state(), "a");
    p.write("tasks/a.yaml", &manifest("a", 20));

    p.run(&["plan", "tasks", "--on-change", "update"], &[])
        .stdout_has("~ a  update")
        .stdout_has("~ schedule_config.max_time_out: 10 -> 20")
        .stdout_has("1 to update");

    let before = emu.requests().len();
    // The setting in taskform.yaml, not a flag.
    p.write(
        "tasks/taskform.yaml",
        &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: ../state/taskform.json\non_change: update\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"),
    );
    let v = p.apply(&emu.url, &["--format", "json"]).succeeds().json();
    assert_eq!(v["summary"]["updated"], 1);
    assert_eq!(v["tasks"][0]["outcome"], "updated");
    assert_eq!(writes(&emu, before), vec![format!("PUT /{id} 200")]);
    let tasks = emu.tasks();
    assert_eq!(tasks.len(), 1, "no new task");
    assert_eq!(
        remote(&tasks, &id).unwrap()["schedule_config"]["max_time_out"],
        20
    );
    let state = p.state();
    assert_eq!(id_of(&state, "a"), id);
    assert!(state["tasks"]["a"].get("superseded").is_none());
    assert_eq!(p.plan_json()["summary"]["unchanged"], 1);
}

#[test]
fn a_scheduled_task_is_stopped_around_update_and_delete() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.write("tasks/a.yaml", &cron("a", 10));
    p.apply(&emu.url, &[]).succeeds();
    let id = id_of(&p.state(), "a");
    assert_eq!(
        emu.tasks()[0]["schedule_config"]["enabled"],
        3,
        "scheduling"
    );

    p.write("tasks/a.yaml", &cron("a", 30));
    let before = emu.requests().len();
    p.apply(&emu.url, &["--on-change", "update"]).succeeds();
    assert_eq!(
        writes(&emu, before),
        vec![
            format!("POST /{id}/action?action=stop 200"),
            format!("PUT /{id} 200"),
            format!("POST /{id}/action?action=run 200"),
        ]
    );
    let t = &emu.tasks()[0];
    assert_eq!(t["schedule_config"]["max_time_out"], 30);
    assert_eq!(t["schedule_config"]["enabled"], 3, "scheduled again");
    // Refreshing reads `enabled: 3` back as the 1 that was sent: no drift.
    p.online(&["refresh", "tasks"], &emu.url)
        .stdout_has("no drift");

    std::fs::remove_file(p.path("tasks/a.yaml")).unwrap();
    let before = emu.requests().len();
    p.apply(&emu.url, &["--prune", "--force-prune"]).succeeds();
    assert_eq!(
        writes(&emu, before),
        vec![
            format!("POST /{id}/action?action=stop 200"),
            format!("DELETE /{id} 200"),
        ]
    );
    assert!(emu.tasks().is_empty());
    assert_eq!(p.state()["tasks"], json!({}));
}

#[test]
fn prune_deletes_exactly_orphans_and_superseded_tasks() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    let old = p.state();
    p.write("tasks/a.yaml", &manifest("a", 20));
    std::fs::remove_file(p.path("tasks/c.yaml")).unwrap();
    // Without --prune: a replace, an orphan, nothing deleted.
    p.apply(&emu.url, &["--on-change", "recreate"]).succeeds();
    assert_eq!(emu.tasks().len(), 4);
    let state = p.state();
    assert_eq!(
        state["tasks"]["a"]["superseded"][0]["task_id"],
        old["tasks"]["a"]["task_id"]
    );

    let out = p.run(&["plan", "tasks", "--prune"], &[]);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(
        lines[0].contains("- a") && lines[0].contains("delete"),
        "deletes first:\n{}",
        out.stdout
    );
    out.stdout_has("superseded by task")
        .stdout_has("2 to delete");

    let before = emu.requests().len();
    p.apply(&emu.url, &["--prune"]).succeeds();
    let mut deleted = writes(&emu, before);
    deleted.sort();
    let mut expected = vec![
        format!("DELETE /{} 200", id_of(&old, "a")),
        format!("DELETE /{} 200", id_of(&old, "c")),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
    let state = p.state();
    let mut ids: Vec<String> = emu
        .tasks()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut kept = vec![id_of(&state, "a"), id_of(&state, "b")];
    kept.sort();
    assert_eq!(ids, kept, "exactly the declared tasks remain");
    assert!(state["tasks"].get("c").is_none());
    assert!(state["tasks"]["a"].get("superseded").is_none());
    assert!(
        !p.plan_json()["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["action"] != "unchanged")
    );
    // A task already deleted on the server counts as deleted.
    p.write("tasks/a.yaml", &manifest("a", 30));
    p.apply(&emu.url, &["--on-change", "recreate"]).succeeds();
    let superseded = p.state()["tasks"]["a"]["superseded"][0]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(emu.call("DELETE", &format!("/{superseded}"), "").0, 200);
    p.apply(&emu.url, &["--prune"])
        .succeeds()
        .stderr_has("already gone");
    assert!(p.state()["tasks"]["a"].get("superseded").is_none());
}

#[test]
fn the_delete_guard_refuses_mass_deletes_unless_forced() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    std::fs::remove_file(p.path("tasks/c.yaml")).unwrap();
    let before = emu.requests().len();
    p.apply(&emu.url, &["--prune", "--max-deletes", "1"])
        .fails_with(1)
        .stderr_has("refusing to prune: the plan deletes 2 remote tasks, more than --max-deletes 1")
        .stderr_has("- b (task ");
    assert_eq!(writes(&emu, before), Vec::<String>::new(), "nothing sent");
    // `plan` shows the plan and warns.
    p.run(&["plan", "tasks", "--prune", "--max-deletes", "1"], &[])
        .succeeds()
        .stderr_has("apply would refuse this plan");

    // Every recorded task (an emptied folder) is refused even under the limit.
    std::fs::remove_file(p.path("tasks/a.yaml")).unwrap();
    p.apply(&emu.url, &["--prune"])
        .fails_with(1)
        .stderr_has("every task the state records (3)");
    assert_eq!(emu.tasks().len(), 3);
    p.apply(&emu.url, &["--prune", "--force-prune"]).succeeds();
    assert!(emu.tasks().is_empty());
    assert_eq!(p.state()["tasks"], json!({}));
}

#[test]
fn existing_remote_tasks_are_adopted_not_duplicated() {
    let emu = Emu::start(&[]);
    let first = Project::new();
    first.task("a").task("b");
    first.apply(&emu.url, &[]).succeeds();
    let ids = first.state();

    // Another checkout with no state: a is the same, b changed, c new.
    let p = Project::new();
    p.task("a").task("c");
    p.write("tasks/b.yaml", &manifest("b", 20));
    let plan = p
        .online(&["plan", "tasks", "--adopt", "--format", "json"], &emu.url)
        .succeeds()
        .json();
    let actions: Vec<(&str, &str)> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![("a", "unchanged"), ("b", "update"), ("c", "create")]
    );
    assert!(
        !p.path("state/taskform.json").exists(),
        "plan writes no state"
    );

    p.online(&["import", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!(
            "imported a: task {} (same content)",
            id_of(&ids, "a")
        ))
        .stdout_has("imported b")
        .stdout_has("1 not on the server");
    let state = p.state();
    assert_eq!(id_of(&state, "a"), id_of(&ids, "a"));
    assert_eq!(id_of(&state, "b"), id_of(&ids, "b"));
    p.run(&["plan", "tasks", "--on-change", "update"], &[])
        .stdout_has("~ schedule_config.max_time_out: 10 -> 20");
    let creates = emu.creates();
    p.apply(&emu.url, &["--on-change", "update"]).succeeds();
    assert_eq!(emu.creates(), creates + 1, "only c is created");
    assert_eq!(emu.tasks().len(), 3);

    // Two remote tasks of one name cannot be told apart.
    let q = Project::new();
    q.task("dup");
    let body = |n: i64| {
        json!({"name": "dup", "data_source_type": "DLI", "user_id": "u", "dir_id": "0", "schedule_config": {"schedule_type": "RUN_ONCE", "max_time_out": n}, "task_config": {"data_connection_name": "x"}}).to_string()
    };
    let (s1, b1) = emu.call("POST", "/create", &body(1));
    let (s2, b2) = emu.call("POST", "/create", &body(2));
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    let out = q.online(&["import", "tasks"], &emu.url);
    out.fails_with(1);
    let id1 = serde_json::from_str::<Value>(&b1).unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    out.stderr_has("several remote tasks share a manifest's name")
        .stderr_has(&id1);
    assert!(!q.path("state/taskform.json").exists());
}

#[test]
fn refresh_finds_tasks_deleted_or_changed_outside_taskform() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    let state = p.state();
    let (a, b) = (id_of(&state, "a"), id_of(&state, "b"));
    // An operator deletes a and changes b in the console; c is untouched.
    assert_eq!(emu.call("DELETE", &format!("/{a}"), "").0, 200);
    let mut changed = remote(&emu.tasks(), &b).unwrap().clone();
    changed["schedule_config"]["max_time_out"] = json!(99);
    changed["description"] = json!("added in the console");
    assert_eq!(
        emu.call("PUT", &format!("/{b}"), &changed.to_string()).0,
        200
    );

    // Offline, plan sees no drift.
    p.run(&["plan", "tasks"], &[]).stdout_lacks("create");
    p.online(&["plan", "tasks", "--refresh"], &emu.url)
        .succeeds()
        .stdout_has("+ a  create")
        .stdout_has(&format!(
            "drift: task {a} was deleted on the server outside taskform"
        ))
        .stdout_has("~ b  update")
        .stdout_has(&format!(
            "drift: task {b} was changed on the server outside taskform"
        ))
        .stdout_has("~ schedule_config.max_time_out: 99 -> 10")
        // Fields taskform did not send are not drift.
        .stdout_lacks("description");
    assert_eq!(p.state(), state, "plan --refresh writes no state");

    p.online(&["refresh", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!("deleted outside taskform: a (task {a})"))
        .stdout_has(&format!("changed outside taskform: b (task {b})"));
    assert!(p.state()["tasks"].get("a").is_none());

    p.apply(&emu.url, &["--on-change", "update", "--refresh"])
        .succeeds();
    let tasks = emu.tasks();
    assert_eq!(tasks.len(), 3);
    assert_eq!(
        remote(&tasks, &b).unwrap()["schedule_config"]["max_time_out"],
        10
    );
    assert_eq!(p.plan_json()["summary"]["unchanged"], 3);
}

#[test]
fn a_create_only_endpoint_falls_back_with_warnings() {
    let emu = Emu::start(&["--create-only"]);
    let p = Project::new();
    p.task("a").task("b");
    p.apply(&emu.url, &[]).succeeds();
    let first = id_of(&p.state(), "a");
    p.write("tasks/a.yaml", &manifest("a", 20));
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    p.apply(
        &emu.url,
        &["--on-change", "update", "--prune", "--refresh", "--adopt"],
    )
    .succeeds()
    .stderr_has("offers no show")
    .stderr_has("offers no update; replacing the task instead")
    .stderr_has("offers no delete")
    // Reported as the replace it became, not as a create (#14.13).
    .stdout_has("0 created, 1 replaced");
    let state = p.state();
    assert_ne!(id_of(&state, "a"), first, "replaced");
    assert_eq!(
        state["tasks"]["a"]["superseded"][0]["task_id"],
        first.as_str()
    );
    assert!(
        state["tasks"].get("b").is_some(),
        "kept: it could not be deleted"
    );
    assert_eq!(emu.tasks().len(), 3);
    p.task("c");
    p.online(&["import", "tasks"], &emu.url)
        .fails_with(1)
        .stderr_has("offers no search");
}

#[test]
fn an_update_whose_answer_was_lost_is_sent_again() {
    let srv = Scripted::without_search(|n, r| match (r.method.as_str(), n) {
        ("POST", _) => created(n),
        // The first PUT is closed without an answer: it may or may not have happened,
        // but a PUT of the full body can safely be sent again.
        (_, 1) => Reply::Close,
        _ => Reply::Answer(200, vec![], String::new()),
    });
    let p = Project::new();
    p.task("a");
    p.apply(&srv.url, &[]).succeeds();
    let id = id_of(&p.state(), "a");
    p.write("tasks/a.yaml", &manifest("a", 20));
    let v = p
        .apply(&srv.url, &["--on-change", "update", "--format", "json"])
        .succeeds()
        .json();
    assert_eq!(v["tasks"][0]["outcome"], "updated");
    assert_eq!(v["tasks"][0]["attempts"], 2);
    let puts: Vec<String> = srv
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(puts.len(), 2);
    assert!(puts[0].ends_with(&format!("/metadata/tasks/{id}")));
    let state = p.state();
    assert_eq!(id_of(&state, "a"), id);
    assert_eq!(
        state["tasks"]["a"]["body"]["schedule_config"]["max_time_out"],
        20
    );
}

#[test]
fn a_saved_plan_prunes_as_it_was_made_and_the_guard_still_applies() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    std::fs::remove_file(p.path("tasks/c.yaml")).unwrap();
    p.run(&["plan", "tasks", "--prune", "--out", "plan.json"], &[])
        .succeeds();
    p.apply_file("plan.json", &emu.url, &["--max-deletes", "1"])
        .fails_with(1)
        .stderr_has("refusing to prune");
    assert_eq!(emu.tasks().len(), 3);
    // No --prune here: the plan file says it.
    p.apply_file("plan.json", &emu.url, &[]).succeeds();
    assert_eq!(emu.tasks().len(), 1);
    assert_eq!(
        p.state()["tasks"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn garbage_from_search_show_update_and_delete_is_an_error_never_a_panic() {
    // A recorded task `a` (so refresh shows it), an orphan `b` (so prune deletes it),
    // a new `c` (so adopt searches for it).
    let srv = Scripted::start(|n, r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", p) if p.ends_with("/create") => created(n),
        (_, p) if p.ends_with("/search") => Reply::Answer(200, vec![], "<html>".into()),
        ("GET", _) => Reply::Answer(200, vec![], "{\"id\": [1, 2".into()),
        ("PUT", _) => api_error(
            400,
            "DLG.0003",
            "The parameter task_config must be a Object.",
        ),
        // Never answered: a DELETE is retried (idempotent), then given up.
        ("DELETE", _) => Reply::Answer(502, vec![], "bad gateway".into()),
        _ => Reply::Close,
    });
    let p = Project::new();
    p.task("a").task("b");
    // Its search answers garbage, so the check for duplicate names before creating
    // into an empty state cannot be made: allowed explicitly for this setup.
    p.apply(&srv.url, &["--allow-duplicate-names"]).succeeds();
    std::fs::remove_file(p.path("tasks/b.yaml")).unwrap();
    p.task("c");

    p.apply(&srv.url, &["--refresh"])
        .fails_with(1)
        .stderr_has("show answered something that is not a task");
    p.apply(&srv.url, &["--adopt"])
        .fails_with(1)
        .stderr_has("search answered something that is not a search result");

    p.write("tasks/a.yaml", &manifest("a", 20));
    p.apply(
        &srv.url,
        &["--on-change", "update", "--prune", "--max-attempts", "2"],
    )
    .fails_with(1)
    .stderr_lacks("panicked")
    .stderr_has("failed (update): a (a.yaml): HTTP 400 DLG.0003: The parameter task_config must be a Object.")
    .stderr_has("failed (delete): b")
    .stderr_has("gave up after 2 attempts");
    let deletes = srv
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 2, "a lost delete answer is retried");
    // Nothing changed in the state: both are still recorded as they were.
    let state = p.state();
    assert!(state["tasks"].get("b").is_some());
    assert_eq!(
        state["tasks"]["a"]["body"]["schedule_config"]["max_time_out"],
        10
    );
}

#[test]
fn a_saved_plan_made_with_adopt_records_the_adopted_tasks_when_applied() {
    let emu = Emu::start(&[]);
    let first = Project::new();
    first.task("a");
    first.apply(&emu.url, &[]).succeeds();
    let p = Project::new();
    p.task("a").task("b");
    p.online(
        &[
            "plan",
            "tasks",
            "--adopt",
            "--show-unchanged",
            "--out",
            "plan.json",
        ],
        &emu.url,
    )
    .succeeds()
    .stdout_has("a  unchanged");
    p.apply_file("plan.json", &emu.url, &[]).succeeds();
    assert_eq!(emu.creates(), 2, "only b was created");
    let state = p.state();
    assert_eq!(id_of(&state, "a"), id_of(&first.state(), "a"));
    assert!(state["tasks"]["b"]["task_id"].is_string());
    assert_eq!(p.plan_json()["summary"]["unchanged"], 2);
}

#[test]
fn many_manifests_are_adopted_from_one_listing() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let first = Project::new();
    first.tasks(150);
    first.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    let p = Project::new();
    p.tasks(160);
    let before = emu.requests().len();
    p.online(&["import", "tasks"], &emu.url)
        .succeeds()
        .stdout_has("Import complete: 150 imported, 10 not on the server");
    let searches = emu.calls()[before..]
        .iter()
        .filter(|c| c.contains("/search"))
        .count();
    assert_eq!(searches, 2, "two pages of 100, not a search per name");
    assert_eq!(
        p.state()["tasks"]["t0149"]["task_id"],
        first.state()["tasks"]["t0149"]["task_id"]
    );
}

/// The leases issue: a remote task of a managed name that no state records is never
/// invisible. `plan --refresh` and `refresh` find it through one listing (the state
/// is small, so it is shown task by task, and listed once for this), list it as a
/// `duplicate` with both task IDs (text, JSON, Markdown, `--detailed-exitcode` 2),
/// keep listing it until it is gone, and `apply --prune` deletes one whose content is
/// exactly what taskform sends (a lost create of its own), never another.
#[test]
fn duplicates_are_listed_until_gone_and_pruned_only_when_they_are_taskforms_own() {
    let emu = Emu::start(&[]);
    let p = Project::new();
    p.task("a").task("b").task("c");
    p.apply(&emu.url, &[]).succeeds();
    let state = p.state();
    let (a, b) = (id_of(&state, "a"), id_of(&state, "b"));
    // A lost create of taskform's own: exactly the body it sends for a.
    let body_a = state["tasks"]["a"]["body"].to_string();
    let (status, made) = emu.call("POST", "/create", &body_a);
    assert_eq!(status, 200, "{made}");
    let own = serde_json::from_str::<Value>(&made).unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Someone else's task named b, with other content.
    let mut other = state["tasks"]["b"]["body"].clone();
    other["schedule_config"]["max_time_out"] = json!(77);
    let (status, made) = emu.call("POST", "/create", &other.to_string());
    assert_eq!(status, 200, "{made}");
    let foreign = serde_json::from_str::<Value>(&made).unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A plan without a refresh cannot know.
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes");
    let out = p.online(
        &["plan", "tasks", "--refresh", "--detailed-exitcode"],
        &emu.url,
    );
    out.fails_with(2)
        .stdout_lacks("No changes")
        .stdout_has("duplicate")
        .stdout_has(&format!("task {own}"))
        .stdout_has(&format!("the state records task {a} for this name"))
        .stdout_has(&format!("the state records task {b} for this name"))
        .stdout_has(&format!("task {foreign}"))
        .stdout_has("2 duplicate(s) on the server")
        .stdout_has("--prune deletes it")
        .stdout_has(&format!("`taskform state import b {foreign}`"));
    let json = p
        .online(
            &["plan", "tasks", "--refresh", "--format", "json"],
            &emu.url,
        )
        .succeeds()
        .json();
    let dups: Vec<(&str, &str)> = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["action"] == "duplicate")
        .map(|t| (t["name"].as_str().unwrap(), t["task_id"].as_str().unwrap()))
        .collect();
    assert_eq!(dups, vec![("a", own.as_str()), ("b", foreign.as_str())]);
    assert_eq!(json["summary"]["duplicate"], 2);
    p.online(
        &["plan", "tasks", "--refresh", "--format", "markdown"],
        &emu.url,
    )
    .succeeds()
    .stdout_has("duplicate");
    // `refresh` records them: every later plan lists them, without reading the server.
    p.online(&["refresh", "tasks"], &emu.url)
        .succeeds()
        .stdout_has(&format!("duplicate: a (task {own})"))
        .stdout_has("2 duplicate(s)");
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_lacks("No changes")
        .stdout_has(&format!("task {own}"));
    // A finding of an earlier refresh is never deleted on its own strength.
    let before = emu.tasks().len();
    p.apply(&emu.url, &["--prune"]).succeeds();
    assert_eq!(emu.tasks().len(), before, "no refresh, no delete");
    // --prune --refresh deletes taskform's own duplicate, and only that one, even
    // when the name's manifest forbids destroying its task (the duplicate is not it).
    p.write(
        "tasks/a.yaml",
        &format!("{}taskform:\n  prevent_destroy: true\n", manifest("a", 10)),
    );
    p.apply(&emu.url, &["--prune", "--refresh"]).succeeds();
    let ids: Vec<String> = emu
        .tasks()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.contains(&own), "the lost create was pruned");
    assert!(ids.contains(&foreign), "another's task is left alone");
    assert!(ids.contains(&a) && ids.contains(&b));
    let out = p.run(&["plan", "tasks"], &[]);
    out.succeeds()
        .stdout_has(&format!("task {foreign}"))
        .stdout_lacks(&format!("task {own}"));
    // Deleted in the console: the next refresh forgets it.
    assert_eq!(emu.call("DELETE", &format!("/{foreign}"), "").0, 200);
    p.online(&["refresh", "tasks"], &emu.url).succeeds();
    p.run(&["plan", "tasks"], &[])
        .succeeds()
        .stdout_has("No changes");
}
