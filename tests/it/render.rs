//! What the plan looks like: Markdown for big changes (every task named, compact field
//! diffs, under GitHub's comment limit), the JSON plan's per-field changes, and
//! untrusted text (control and bidi characters, Markdown and HTML metacharacters) in
//! every output.

use crate::common::*;
use serde_json::{Value, json};

/// Text a hostile pull request could put in a value, a file name or (through the
/// state) a task name: ESC and a colour sequence, BEL, a newline followed by a forged
/// plan line, CR, a table pipe, HTML, backticks, RIGHT-TO-LEFT OVERRIDE, a bidi
/// isolate, a C1 control (CSI) and DEL.
const HOSTILE: &str = "x\u{1b}[31m\u{7}\n  + forged-task  create  forged.yaml\r|<script>alert(1)</script>```\u{202e}\u{2066}\u{9b}2J\u{7f}";

/// A file name holding ESC, BEL, a newline, `|`, `<script>` and U+202E.
const HOSTILE_FILE: &str = "ev\u{1b}[2Jil\u{7}\n|<script>\u{202e}.yaml";

/// `s` as a YAML double-quoted scalar (JSON escapes, and every character outside
/// printable ASCII as `\uXXXX`, which YAML reads back exactly).
fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04X}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Whether `bytes` holds a raw control character other than the newline (C0, DEL,
/// C1) or a bidi override/isolate (U+202A–U+202E, U+2066–U+2069).
fn raw_control(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.char_indices()
        .find(|(_, c)| {
            let c = *c as u32;
            (c < 0x20 && c != 0x0a)
                || (0x7f..=0x9f).contains(&c)
                || (0x202a..=0x202e).contains(&c)
                || (0x2066..=0x2069).contains(&c)
        })
        .map(|(i, c)| {
            let start = text[..i].char_indices().rev().nth(30).map_or(0, |(j, _)| j);
            format!("U+{:04X} after {:?}", c as u32, &text[start..i])
        })
}

/// Runs the binary and returns its raw stdout and stderr (no lossy decoding).
fn raw(p: &Project, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let mut c = p.cmd(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run taskform");
    (out.status.code(), out.stdout, out.stderr)
}

/// A project with `on_change: update`.
fn updating_project() -> Project {
    let p = Project::new();
    p.write("tasks/taskform.yaml", &format!("project_id: {PROJECT}\nworkspace: {WORKSPACE}\non_change: update\nstate: ../state/taskform.json\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n"));
    p
}

/// The hash taskform gives a manifest (as `plan --format json` reports it).
fn hash_of(manifest_text: &str) -> Value {
    let q = Project::new();
    q.write("tasks/x.yaml", manifest_text);
    q.plan_json()["tasks"][0]["hash"].clone()
}

/// Lines of `md` outside fenced code blocks, and whether every fence closed. A fence
/// closes only with a line of at least as many backticks as opened it.
fn outside_fences(md: &str) -> (Vec<&str>, Vec<&str>, bool) {
    let (mut outside, mut inside) = (Vec::new(), Vec::new());
    let mut fence: Option<usize> = None;
    for line in md.lines() {
        let ticks = line.chars().take_while(|c| *c == '`').count();
        match fence {
            None if ticks >= 3 => fence = Some(ticks),
            None => outside.push(line),
            Some(n) if ticks >= n && line.trim_end().len() == ticks => fence = None,
            Some(_) => inside.push(line),
        }
    }
    (outside, inside, fence.is_none())
}

/// Unescaped `|` in a Markdown table row.
fn cells(row: &str) -> usize {
    let mut n = 0;
    let mut prev = ' ';
    for c in row.chars() {
        if c == '|' && prev != '\\' {
            n += 1;
        }
        prev = c;
    }
    n
}

#[test]
fn markdown_of_600_one_line_updates_names_every_task_under_the_comment_limit() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let p = updating_project();
    p.tasks(600);
    p.apply(&emu.url, &["--max-rate", "0"]).succeeds();
    for i in 0..600 {
        let name = format!("t{i:04}");
        p.write(&format!("tasks/{name}.yaml"), &manifest(&name, 20));
    }
    let out = p.run(
        &[
            "plan",
            "tasks",
            "--format",
            "markdown",
            "--out",
            "plan.json",
            "--full-plan-hint",
            "the artifact `taskform-plan-abc123` of this workflow run",
        ],
        &[],
    );
    out.succeeds();
    let md = &out.stdout;
    let chars = md.chars().count();
    assert!(chars <= 65_536, "{chars} characters");
    out.stdout_has("| 0 | 0 | 600 | 0 | 0 | 0 | 0 |")
        // compact field diffs, not whole bodies
        .stdout_has("schedule_config.max_time_out: 10 → 20")
        .stdout_lacks("\"data_connection_name\": \"dli_test\"");
    for i in 0..600 {
        let name = format!("t{i:04}");
        assert!(md.contains(&format!("`{name}`")), "{name} is not named");
    }
    // Every one of the 600 one-line diffs fits.
    assert_eq!(md.matches("max_time_out: 10 → 20").count(), 600, "{md}");
    out.stdout_lacks("were cut");
}

#[test]
fn markdown_cuts_details_but_never_names_and_says_where_the_full_plan_is() {
    let p = updating_project();
    let mut tasks = serde_json::Map::new();
    for i in 0..400 {
        let name = format!("task-{i:03}");
        let fields: String = (0..40)
            .map(|f| format!("  field_{f:02}: new value {f} of a long-ish setting\n"))
            .collect();
        p.write(
            &format!("tasks/{name}.yaml"),
            &format!("{}{fields}", manifest(&name, 20)),
        );
        tasks.insert(name.clone(), json!({"task_id": format!("T{i}"), "hash": "sha256:old", "body": {"name": name, "task_config": {}}}));
    }
    p.write(
        "state/taskform.json",
        &json!({"version": 1, "serial": 1, "lineage": "l", "tasks": tasks}).to_string(),
    );
    let out = p.run(
        &[
            "plan",
            "tasks",
            "--format",
            "markdown",
            "--out",
            "plan.json",
            "--full-plan-hint",
            "the artifact `taskform-plan-abc123` of this workflow run",
        ],
        &[],
    );
    out.succeeds();
    let md = &out.stdout;
    assert!(
        md.chars().count() <= 65_536,
        "{} characters",
        md.chars().count()
    );
    for i in 0..400 {
        let name = format!("task-{i:03}");
        assert!(md.contains(&format!("`{name}`")), "{name} is not named");
    }
    out.stdout_has("**update** (400)")
        .stdout_has("+ task_config.field_00: \"new value 0 of a long-ish setting\"")
        .stdout_has("to stay under GitHub's 65,536-character comment limit")
        .stdout_has("`plan.json` (`taskform show plan.json`)")
        .stdout_has("the artifact `taskform-plan-abc123` of this workflow run");
    let shown = md.matches("@@ task-").count();
    assert!(shown > 10 && shown < 400, "{shown} details shown");
    out.stdout_has(&format!(
        "The details of {} of 400 tasks were cut",
        400 - shown
    ));
    // show renders the saved plan the same way, naming the file.
    let again = p.run(&["show", "plan.json", "--format", "markdown"], &[]);
    again
        .succeeds()
        .stdout_has("`plan.json` (`taskform show plan.json`)");
}

#[test]
fn json_plan_carries_the_changed_fields_with_before_and_after() {
    let p = updating_project();
    let old = manifest("a", 10);
    p.write(
        "tasks/a.yaml",
        &manifest("a", 20).replace("[db1]", "[db1, db2]").replace(
            "task_config:\n",
            "description: now described\ntask_config:\n",
        ),
    );
    p.task("b");
    let body = json!({"data_source_type": "DLI", "dir_id": "0", "name": "a", "schedule_config": {"max_time_out": 10, "schedule_type": "RUN_ONCE"}, "task_config": {"data_connection_name": "dli_test", "databaseName": ["db1"], "gone": null}, "user_id": "u-1"});
    p.write(
        "state/taskform.json",
        &json!({"version": 1, "serial": 3, "lineage": "l", "tasks": {
            "a": {"task_id": "T-A", "hash": hash_of(&old), "body": body},
            "orphaned": {"task_id": "T-O", "hash": "sha256:00"}}})
        .to_string(),
    );
    let plan = p.plan_json();
    let tasks = plan["tasks"].as_array().unwrap();
    let a = tasks.iter().find(|t| t["name"] == "a").unwrap();
    assert_eq!(a["action"], "update");
    assert_eq!(
        a["changes"],
        json!([
            {"path": "description", "kind": "added", "before": null, "after": "now described"},
            {"path": "schedule_config.max_time_out", "kind": "changed", "before": 10, "after": 20},
            {"path": "task_config.databaseName", "kind": "changed", "before": ["db1"], "after": ["db1", "db2"]},
            {"path": "task_config.gone", "kind": "removed", "before": null, "after": null},
        ])
    );
    // Every existing key is kept, in its place; `changes` is an addition.
    for t in tasks {
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["name", "action", "hash", "task_id", "file", "changes"]
        );
        if t["name"] != "a" {
            assert_eq!(t["changes"], Value::Null, "{t}");
        }
    }
    // A replace carries them too.
    let plan = p
        .run(
            &[
                "plan",
                "tasks",
                "--format",
                "json",
                "--on-change",
                "recreate",
            ],
            &[],
        )
        .succeeds()
        .json();
    let a = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["action"], "replace");
    assert_eq!(a["changes"][1]["after"], 20);
}

/// A project where hostile text reaches every part of the plan: the file name and the
/// values of an updated task, a new task's description, and a task name, ID and body
/// that only the (untrusted) state holds.
fn hostile_project() -> Project {
    let p = updating_project();
    let updated = format!(
        "name: a\ndescription: {}\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 20\ntask_config:\n  data_connection_name: {}\n  databaseName: [db1]\n",
        yaml_str(HOSTILE),
        yaml_str(HOSTILE)
    );
    p.write(&format!("tasks/{HOSTILE_FILE}"), &updated);
    p.write(
        "tasks/b.yaml",
        &format!("{}description: {}\n", manifest("b", 10), yaml_str(HOSTILE)),
    );
    let old_body = json!({"data_source_type": "DLI", "description": format!("old {HOSTILE}"), "dir_id": "0", "name": "a", "schedule_config": {"max_time_out": 10, "schedule_type": "RUN_ONCE"}, "task_config": {"data_connection_name": "dli_test", "databaseName": ["db1"]}, "user_id": "u-1"});
    p.write(
        "state/taskform.json",
        &json!({"version": 1, "serial": 2, "lineage": "l", "tasks": {
            "a": {"task_id": format!("T-A{HOSTILE}"), "hash": "sha256:old", "body": old_body},
            HOSTILE: {"task_id": format!("T-{HOSTILE}"), "hash": "sha256:00"}}})
        .to_string(),
    );
    p
}

#[test]
fn the_text_plan_escapes_control_and_bidi_characters_and_keeps_one_line_per_task() {
    let p = hostile_project();
    let (code, stdout, _) = raw(&p, &["plan", "tasks", "--color", "never"], &[]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&stdout));
    if let Some(found) = raw_control(&stdout) {
        panic!(
            "raw {found} in the text plan:\n{}",
            String::from_utf8_lossy(&stdout)
        );
    }
    let text = String::from_utf8(stdout).unwrap();
    // One line per task (a, b, the state's hostile orphan): every other line is
    // indented detail, blank, the target line first, or the summary.
    let task_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("        "))
        .collect();
    assert_eq!(task_lines.len(), 3, "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("  ")
            || l.is_empty()
            || l.starts_with("Plan: ")
            || l.starts_with("Target: endpoint ")),
        "a line was forged:\n{text}"
    );
    assert!(!text.contains("\n  + forged-task"), "{text}");
    assert!(
        text.contains("\\u{1b}[31m\\u{7}\\u{a}  + forged-task"),
        "{text}"
    );
    assert!(text.contains("\\u{202e}"), "{text}");
    // The diff lines escape the values too.
    assert!(text.contains("~ description: "), "{text}");
    // Colour does not change the escaping of the text itself.
    let (_, coloured, _) = raw(&p, &["plan", "tasks", "--color", "always"], &[]);
    let coloured = String::from_utf8(coloured).unwrap();
    assert!(!coloured.contains("\u{7}") && !coloured.contains("\u{202e}"));
    assert!(!coloured.contains("\u{1b}[2J") && !coloured.contains("\u{9b}"));
}

#[test]
fn the_markdown_plan_escapes_tables_headings_and_fences() {
    let p = hostile_project();
    let (code, stdout, _) = raw(&p, &["plan", "tasks", "--format", "markdown"], &[]);
    assert_eq!(code, Some(0));
    if let Some(found) = raw_control(&stdout) {
        panic!(
            "raw {found} in the Markdown plan:\n{}",
            String::from_utf8_lossy(&stdout)
        );
    }
    let md = String::from_utf8(stdout).unwrap();
    let (outside, inside, closed) = outside_fences(&md);
    assert!(closed, "a fence was left open:\n{md}");
    // The value holding ``` stays inside its fence.
    assert!(inside.iter().any(|l| l.contains("```")), "{md}");
    // Every row of the task table has the header's column count.
    let header = outside
        .iter()
        .position(|l| l.starts_with("| | task |"))
        .expect("task table");
    let width = cells(outside[header]);
    let rows: Vec<&&str> = outside[header..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(rows.len(), 2 + 3, "{md}");
    for row in rows {
        assert_eq!(cells(row), width, "row {row:?} in\n{md}");
    }
    // No HTML and no Markdown structure from the values outside code blocks.
    for l in &outside {
        assert!(!l.contains("<script"), "{l:?}");
        assert!(!l.starts_with("  + forged"), "{l:?}");
        assert!(!l.contains("```"), "{l:?}");
    }
    assert!(md.contains("&lt;script&gt;"), "{md}");
}

#[test]
fn the_json_plan_keeps_untrusted_text_exact() {
    let p = hostile_project();
    let (code, stdout, stderr) = raw(&p, &["plan", "tasks", "--format", "json"], &[]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&stderr));
    // Exact after decoding, and no raw control or bidi character in the bytes.
    assert_eq!(raw_control(&stdout), None);
    let plan: Value = serde_json::from_slice(&stdout).unwrap();
    let tasks = plan["tasks"].as_array().unwrap();
    let orphan = tasks.iter().find(|t| t["action"] == "orphan").unwrap();
    assert_eq!(orphan["name"], HOSTILE);
    assert_eq!(orphan["task_id"], format!("T-{HOSTILE}"));
    let a = tasks.iter().find(|t| t["name"] == "a").unwrap();
    assert_eq!(a["file"], HOSTILE_FILE);
    let description = a["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "description")
        .unwrap();
    assert_eq!(description["before"], format!("old {HOSTILE}"));
    assert_eq!(description["after"], HOSTILE);
}

#[test]
fn apply_results_and_logs_escape_what_the_server_says() {
    let body = json!({"error_code": "DLG.0003", "error_msg": HOSTILE}).to_string();
    // The create is refused with the hostile message; anything else is not offered.
    let srv = Scripted::start(move |_, r| match r.path.ends_with("/create") {
        true => Reply::Answer(400, vec![], body.clone()),
        false => api_error(
            404,
            "APIG.0101",
            "The API does not exist or has not been published.",
        ),
    });
    let p = Project::new();
    p.task("a");
    let (code, stdout, stderr) = raw(
        &p,
        &["apply", "--yes", "tasks", "--endpoint", &srv.url],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(code, Some(1));
    for (what, bytes) in [("stdout", &stdout), ("stderr", &stderr)] {
        if let Some(found) = raw_control(bytes) {
            panic!("raw {found} on {what}:\n{}", String::from_utf8_lossy(bytes));
        }
    }
    let stderr = String::from_utf8(stderr).unwrap();
    assert!(
        stderr.contains(
            "failed: a (a.yaml): HTTP 400 DLG.0003: x\\u{1b}[31m\\u{7}\\u{a}  + forged-task"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("\n  + forged-task"), "{stderr}");
    // The log line of the refusal escapes it too.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("refused") && l.contains("\\u{202e}")),
        "{stderr}"
    );

    // JSON logs stay exact after decoding, with no raw control or bidi byte.
    let (_, stdout, stderr) = raw(
        &p,
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &srv.url,
            "--format",
            "json",
            "--log-format",
            "json",
        ],
        &[("TASKFORM_AUTH_TOKEN", TOKEN)],
    );
    assert_eq!(raw_control(&stderr), None);
    assert_eq!(raw_control(&stdout), None);
    let logged = String::from_utf8(stderr).unwrap();
    let refused: Vec<Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{logged}");
    assert!(
        refused[0]["error"].as_str().unwrap().contains(HOSTILE),
        "{logged}"
    );
    let result: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(result["tasks"][0]["error_msg"], HOSTILE);
}
