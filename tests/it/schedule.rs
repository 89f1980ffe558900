//! Schedules converge (issue #15, point 6): after an update or an `apply --refresh`, a
//! CRON task whose manifest says `enabled: 1` ends scheduling (read back `enabled: 3`)
//! and one that says `0` ends stopped, with the fewest requests: a task the state
//! records as scheduling is stopped before its PUT (not after a refused one), and `run`
//! follows the PUT when the manifest enables the schedule.
//!
//! The real binary runs against the emulator, started in this process with the mode in
//! which a PUT leaves a paused task paused (as the real service may: the documentation
//! does not say), [`Modes::put_keeps_paused`]. A run killed between its stop and its
//! PUT is set up as the state and the server it leaves: the state records the old
//! content, the server holds it paused.

use crate::common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use taskform::emulator::{self, Modes};

/// The emulator, serving from a runtime of its own until dropped.
struct Service {
    addr: String,
    url: String,
    _emu: emulator::Emulator,
    _rt: tokio::runtime::Runtime,
}

impl Service {
    fn start(modes: Modes) -> Service {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let cfg = emulator::Config {
            rate_limit: 0,
            ..emulator::Config::default()
        };
        let emu = rt
            .block_on(emulator::start_with(cfg, modes))
            .expect("emulator");
        Service {
            addr: emu.addr.to_string(),
            url: emu.url(),
            _emu: emu,
            _rt: rt,
        }
    }

    /// A task as the server holds it.
    fn task(&self, id: &str) -> Value {
        get_json(&self.addr, "/_emulator/tasks")["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no task {id} on the server"))
    }

    fn enabled(&self, id: &str) -> Value {
        self.task(id)["schedule_config"]["enabled"].clone()
    }

    /// The API requests received so far, as `METHOD path status` (path after the
    /// tasks prefix).
    fn calls(&self) -> Vec<String> {
        let prefix = format!("/v3/{PROJECT}/metadata/tasks");
        get_json(&self.addr, "/_emulator/requests")["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let path = r["path"].as_str().unwrap_or_default();
                format!(
                    "{} {} {}",
                    r["method"].as_str().unwrap_or_default(),
                    path.strip_prefix(&prefix).unwrap_or(path),
                    r["status"]
                )
            })
            .collect()
    }

    /// The requests after the first `skip`.
    fn since(&self, skip: usize) -> Vec<String> {
        self.calls().into_iter().skip(skip).collect()
    }

    /// A request made outside taskform (an operator in the console); the status.
    fn console(&self, method: &str, path: &str) -> u16 {
        let path = format!("/v3/{PROJECT}/metadata/tasks{path}");
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nX-Auth-Token: {TOKEN}\r\nworkspace: {WORKSPACE}\r\nContent-Length: 0\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

fn cron(name: &str, timeout: i64, enabled: i64) -> String {
    format!(
        "name: {name}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: CRON\n  cron_expression: \"0 0 * * * ?\"\n  enabled: {enabled}\n  max_time_out: {timeout}\ntask_config:\n  data_connection_name: dli_test\n  databaseName: [db1]\n"
    )
}

fn id_of(p: &Project, name: &str) -> String {
    p.state()["tasks"][name]["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} not recorded"))
        .to_string()
}

/// A project with the scheduled task `a` created on `svc`.
fn scheduled(svc: &Service) -> (Project, String) {
    let p = Project::new();
    p.write("tasks/a.yaml", &cron("a", 10, 1));
    p.apply(&svc.url, &[]).succeeds();
    let id = id_of(&p, "a");
    assert_eq!(svc.enabled(&id), 3, "scheduling");
    (p, id)
}

#[test]
fn a_run_killed_between_stop_and_put_ends_scheduling_at_the_next_apply() {
    let svc = Service::start(Modes {
        put_keeps_paused: true,
    });
    let (p, id) = scheduled(&svc);
    p.write("tasks/a.yaml", &cron("a", 30, 1));
    // The killed run: its stop reached the server, its PUT did not, nothing recorded.
    assert_eq!(
        svc.console("POST", &format!("/{id}/action?action=stop")),
        200
    );
    assert_eq!(svc.enabled(&id), 5, "paused");

    let before = svc.calls().len();
    p.apply(&svc.url, &["--on-change", "update"]).succeeds();
    assert_eq!(
        svc.since(before),
        vec![
            format!("POST /{id}/action?action=stop 200"),
            format!("PUT /{id} 200"),
            format!("POST /{id}/action?action=run 200"),
        ]
    );
    let t = svc.task(&id);
    assert_eq!(t["schedule_config"]["max_time_out"], 30);
    assert_eq!(t["schedule_config"]["enabled"], 3, "scheduling again");

    // Converged: apply --refresh reads it and sends nothing.
    let before = svc.calls().len();
    p.apply(&svc.url, &["--on-change", "update", "--refresh"])
        .succeeds()
        .stdout_has("No changes");
    // The search lists the workspace for duplicates.
    assert_eq!(
        svc.since(before),
        vec![format!("GET /{id} 200"), "POST /search 200".to_string()]
    );
}

#[test]
fn a_task_paused_in_the_console_is_started_again_by_apply_refresh_once() {
    let svc = Service::start(Modes {
        put_keeps_paused: true,
    });
    let (p, id) = scheduled(&svc);
    assert_eq!(
        svc.console("POST", &format!("/{id}/action?action=stop")),
        200
    );

    let before = svc.calls().len();
    p.apply(&svc.url, &["--on-change", "update", "--refresh"])
        .succeeds()
        .stdout_has("drift");
    // Read back paused: no stop, the PUT, and the run that the PUT does not replace.
    assert_eq!(
        svc.since(before),
        vec![
            format!("GET /{id} 200"),
            "POST /search 200".to_string(),
            format!("PUT /{id} 200"),
            format!("POST /{id}/action?action=run 200"),
        ]
    );
    assert_eq!(svc.enabled(&id), 3);

    let before = svc.calls().len();
    p.apply(&svc.url, &["--on-change", "update", "--refresh"])
        .succeeds()
        .stdout_has("No changes");
    // The search lists the workspace for duplicates.
    assert_eq!(
        svc.since(before),
        vec![format!("GET /{id} 200"), "POST /search 200".to_string()]
    );
}

#[test]
fn a_manifest_that_turns_the_schedule_off_leaves_the_task_stopped() {
    let svc = Service::start(Modes {
        put_keeps_paused: true,
    });
    let (p, id) = scheduled(&svc);
    p.write("tasks/a.yaml", &cron("a", 10, 0));
    let before = svc.calls().len();
    p.apply(&svc.url, &["--on-change", "update"]).succeeds();
    assert_eq!(
        svc.since(before),
        vec![
            format!("POST /{id}/action?action=stop 200"),
            format!("PUT /{id} 200"),
        ]
    );
    assert_ne!(svc.enabled(&id), 3, "not scheduling");
    p.online(&["refresh", "tasks"], &svc.url)
        .succeeds()
        .stdout_has("no drift");
}

#[test]
fn by_default_the_update_of_a_scheduled_task_costs_a_stop_the_put_and_a_run() {
    // The emulator's default: a PUT of an enabled CRON body schedules the task.
    let svc = Service::start(Modes::default());
    let (p, id) = scheduled(&svc);
    p.write("tasks/a.yaml", &cron("a", 30, 1));
    let before = svc.calls().len();
    let v = p
        .apply(&svc.url, &["--on-change", "update", "--format", "json"])
        .succeeds()
        .json();
    assert_eq!(v["tasks"][0]["outcome"], "updated");
    assert_eq!(v["tasks"][0]["attempts"], 3);
    assert_eq!(
        svc.since(before),
        vec![
            format!("POST /{id}/action?action=stop 200"),
            format!("PUT /{id} 200"),
            format!("POST /{id}/action?action=run 200"),
        ]
    );
    assert_eq!(svc.task(&id)["schedule_config"]["enabled"], json!(3));
}

/// `taskform emulator --put-keeps-paused` is the same mode, for tests that run the
/// emulator as a process (the chaos test): a PUT of an enabled body leaves a paused
/// task paused; without the flag it schedules it.
#[test]
fn the_emulator_binary_takes_put_keeps_paused() {
    for (flag, after_put) in [(true, 5), (false, 3)] {
        let mut args = vec!["--rate-limit", "0"];
        if flag {
            args.push("--put-keeps-paused");
        }
        let emu = Emu::start(&args);
        let p = Project::new();
        p.write("tasks/a.yaml", &cron("a", 10, 1));
        p.apply(&emu.url, &[]).succeeds();
        let id = id_of(&p, "a");
        let body = p.state()["tasks"]["a"]["body"].to_string();
        let enabled = |emu: &Emu| {
            emu.tasks().iter().find(|t| t["id"] == id.as_str()).unwrap()["schedule_config"]
                ["enabled"]
                .clone()
        };
        assert_eq!(enabled(&emu), 3);
        assert_eq!(
            emu.call("POST", &format!("/{id}/action?action=stop"), "").0,
            200
        );
        assert_eq!(enabled(&emu), 5);
        let (status, answer) = emu.call("PUT", &format!("/{id}"), &body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(enabled(&emu), after_put, "--put-keeps-paused {flag}");
    }
}
