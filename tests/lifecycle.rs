//! Settling in-doubt creates by search (issue #7's first part): adopted when exactly one
//! remote task has the name and the content sent, created again when none has the
//! name, left in doubt with the IDs named otherwise; create-only gateways fall back.

mod common;
use common::*;
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
        assert_eq!(p.apply(&emu.url, &[]).code, Some(1));
        assert_eq!(p.plan_json()["summary"]["in_doubt"], 2);
    }
    let emu = Emu::start(&["--data", data]);
    let out = p.apply(&emu.url, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("found on the server with the content sent; recorded"),
        "{}",
        out.stderr
    );
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

/// A server whose first create hangs (in doubt) and whose search answers `search`.
fn server(
    search: impl Fn(&[Value]) -> Reply + Send + Sync + 'static,
) -> (Scripted, Arc<Mutex<Vec<Value>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let seen = sent.clone();
    let srv = Scripted::start(move |n, r| {
        if r.path.ends_with("/search") {
            return search(&seen.lock().unwrap());
        }
        seen.lock().unwrap().push(r.json());
        if n == 0 {
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
    assert_eq!(p.apply(&srv.url, &["--timeout", "0.5"]).code, Some(1));
    let out = p.apply(&srv.url, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no task of that name on the server; it will be created"),
        "{}",
        out.stderr
    );
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
    assert_eq!(p.apply(&srv.url, &["--timeout", "0.5"]).code, Some(1));
    let out = p.apply(&srv.url, &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("the service has 2 task(s) of that name (ID-ONE, ID-TWO), 2 with the content that was sent"), "{}", out.stderr);
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
    assert_eq!(p.apply(&srv.url, &["--timeout", "0.5"]).code, Some(1));
    let out = p.apply(&srv.url, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(p.state()["tasks"]["a"]["task_id"], "ID-ONE");
    assert_eq!(creates(&srv), 1);
}
