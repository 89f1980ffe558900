//! Alerts where teams look (`notify:`): local HTTP receivers of each type check the
//! body against the type's documented format and verify each signature with an
//! implementation of their own (HMAC-SHA256 written here from RFC 2104, over SHA-256
//! alone); a receiver answering 500 then 200 gets the event once; one that never
//! answers does not hold back a reconcile; identical failures are sent once per window
//! and a recovery always; drift checks and applies alert; the URL and the secrets
//! appear in no output, log, state or plan.

use crate::common::*;
use base64::Engine as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// HMAC-SHA256 from RFC 2104: H((K ^ opad) || H((K ^ ipad) || m)).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Percent-decoding of a query value.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 && i + 3 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn ok(body: &str) -> Reply {
    Reply::Answer(200, vec![], body.to_string())
}

const GENERIC_SECRET: &str = "generic-hmac-secret-7781";
const FEISHU_SECRET: &str = "feishu-sign-secret-5521";
const DINGTALK_SECRET: &str = "SECdingtalk-secret-9913";

/// Five receivers, one per type, and the environment that names their URLs (each
/// with a token in it, as real webhook URLs have) and secrets.
struct Receivers {
    generic: Scripted,
    slack: Scripted,
    feishu: Scripted,
    dingtalk: Scripted,
    wecom: Scripted,
}

impl Receivers {
    fn start() -> Receivers {
        Receivers {
            generic: Scripted::start(|_, _| ok("")),
            slack: Scripted::start(|_, _| ok("ok")),
            feishu: Scripted::start(|_, _| ok(r#"{"code":0,"msg":"success","data":{}}"#)),
            dingtalk: Scripted::start(|_, _| ok(r#"{"errcode":0,"errmsg":"ok"}"#)),
            wecom: Scripted::start(|_, _| ok(r#"{"errcode":0,"errmsg":"ok"}"#)),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "GENERIC_URL".into(),
                format!("{}/hooks/generic-url-token-1111", self.generic.url),
            ),
            ("GENERIC_SECRET".into(), GENERIC_SECRET.into()),
            (
                "SLACK_URL".into(),
                format!("{}/services/T000/B000/slack-url-token-2222", self.slack.url),
            ),
            (
                "FEISHU_URL".into(),
                format!(
                    "{}/open-apis/bot/v2/hook/feishu-url-token-3333",
                    self.feishu.url
                ),
            ),
            ("FEISHU_SECRET".into(), FEISHU_SECRET.into()),
            (
                "DINGTALK_URL".into(),
                format!(
                    "{}/robot/send?access_token=dingtalk-url-token-4444",
                    self.dingtalk.url
                ),
            ),
            ("DINGTALK_SECRET".into(), DINGTALK_SECRET.into()),
            (
                "WECOM_URL".into(),
                format!(
                    "{}/cgi-bin/webhook/send?key=wecom-url-token-5555",
                    self.wecom.url
                ),
            ),
        ]
    }
}

/// Every secret of [`Receivers::env`]: none may appear anywhere.
const SECRETS: [&str; 8] = [
    "generic-url-token-1111",
    "slack-url-token-2222",
    "feishu-url-token-3333",
    "dingtalk-url-token-4444",
    "wecom-url-token-5555",
    GENERIC_SECRET,
    FEISHU_SECRET,
    DINGTALK_SECRET,
];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a secret ({s}):\n{text}");
    }
}

const NOTIFY_ALL: &str = "notify:
  - type: generic
    url_from: GENERIC_URL
    secret_from: GENERIC_SECRET
  - type: slack
    url_from: SLACK_URL
  - name: data-team
    type: lark
    url_from: FEISHU_URL
    secret_from: FEISHU_SECRET
  - type: dingtalk
    url_from: DINGTALK_URL
    secret_from: DINGTALK_SECRET
  - type: wecom
    url_from: WECOM_URL
";

fn project_with(notify: &str) -> Project {
    let p = Project::new();
    let settings = std::fs::read_to_string(p.path("tasks/taskform.yaml")).unwrap();
    p.write("tasks/taskform.yaml", &format!("{settings}{notify}"));
    p
}

fn run_with(p: &Project, args: &[&str], env: &[(String, String)]) -> Output {
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    p.run(args, &refs)
}

#[test]
fn every_receiver_gets_its_format_signed_as_its_service_documents() {
    let r = Receivers::start();
    let p = project_with(NOTIFY_ALL);
    let before = now_secs();
    let out = run_with(&p, &["notify", "test", "tasks"], &r.env());
    out.succeeds()
        .stdout_has("generic (generic): delivered (HTTP 200")
        .stdout_has("slack (slack): delivered (HTTP 200: ok)")
        .stdout_has("data-team (feishu): delivered")
        .stdout_has("dingtalk (dingtalk): delivered")
        .stdout_has("wecom (wecom): delivered");
    assert_no_secret(
        "notify test's output",
        &format!("{}{}", out.stdout, out.stderr),
    );

    // generic: Flux's generic provider, X-Signature: sha256=<hex HMAC of the body>.
    let g = &r.generic.requests()[0];
    assert_eq!(g.method, "POST");
    assert_eq!(g.path, "/hooks/generic-url-token-1111");
    let body = g.json();
    assert_eq!(body["involvedObject"]["kind"], "Environment");
    assert_eq!(body["severity"], "info");
    assert_eq!(body["reason"], "Test");
    assert_eq!(body["reportingController"], "taskform");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(body["message"].as_str().unwrap().contains("test alert"));
    assert!(body["metadata"]["summary"].is_string());
    let expected: String = hmac_sha256(GENERIC_SECRET.as_bytes(), &g.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        g.header("x-signature"),
        Some(format!("sha256={expected}").as_str())
    );
    assert!(
        g.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );

    // slack: text and an attachment in mrkdwn.
    let s = r.slack.requests()[0].json();
    assert!(s["text"].as_str().unwrap().contains("taskform"));
    assert_eq!(s["attachments"][0]["color"], "good");
    assert!(
        s["attachments"][0]["text"]
            .as_str()
            .unwrap()
            .contains("test alert")
    );

    // feishu: a text message; timestamp (seconds) and sign = base64(HMAC keyed with
    // "timestamp\nsecret" over nothing).
    let f = r.feishu.requests()[0].json();
    assert_eq!(f["msg_type"], "text");
    assert!(
        f["content"]["text"]
            .as_str()
            .unwrap()
            .contains("test alert")
    );
    let ts: u64 = f["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(ts >= before && ts <= now_secs() + 1);
    let key = format!("{ts}\n{FEISHU_SECRET}");
    assert_eq!(f["sign"], b64(&hmac_sha256(key.as_bytes(), b"")));

    // dingtalk: markdown; timestamp (ms) and sign in the query = urlencoded base64 of
    // HMAC keyed with the secret over "timestamp\nsecret".
    let d = &r.dingtalk.requests()[0];
    let query = d.path.split_once('?').unwrap().1;
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    assert_eq!(param("access_token"), "dingtalk-url-token-4444");
    let ts_ms: u64 = param("timestamp").parse().unwrap();
    assert!(ts_ms / 1000 >= before);
    let text = format!("{ts_ms}\n{DINGTALK_SECRET}");
    assert_eq!(
        unescape(&param("sign")),
        b64(&hmac_sha256(DINGTALK_SECRET.as_bytes(), text.as_bytes()))
    );
    let dj = d.json();
    assert_eq!(dj["msgtype"], "markdown");
    assert!(dj["markdown"]["title"].is_string() && dj["markdown"]["text"].is_string());

    // wecom: markdown content within 4,096 bytes; the key stays in the URL.
    let w = &r.wecom.requests()[0];
    assert!(w.path.ends_with("key=wecom-url-token-5555"));
    let wj = w.json();
    assert_eq!(wj["msgtype"], "markdown");
    assert!(wj["markdown"]["content"].as_str().unwrap().len() <= 4096);
}

#[test]
fn a_refusal_is_reported_with_the_services_own_words_and_never_the_url() {
    let feishu = Scripted::start(|_, _| {
        ok(
            r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
        )
    });
    let slack = Scripted::start(|_, _| Reply::Answer(403, vec![], "invalid_token".into()));
    let p = project_with(
        "notify:\n  - type: feishu\n    url_from: FEISHU_URL\n    secret_from: FEISHU_SECRET\n  - type: slack\n    url_from: SLACK_URL\n",
    );
    let env = vec![
        (
            "FEISHU_URL".to_string(),
            format!("{}/hook/feishu-url-token-3333", feishu.url),
        ),
        ("FEISHU_SECRET".to_string(), FEISHU_SECRET.to_string()),
        (
            "SLACK_URL".to_string(),
            format!("{}/services/slack-url-token-2222", slack.url),
        ),
    ];
    let out = run_with(&p, &["notify", "test", "tasks"], &env);
    out.fails_with(1)
        .stdout_has("feishu (feishu): failed: HTTP 200, code 19021: ")
        .stdout_has("sign match fail")
        .stdout_has("slack (slack): failed: HTTP 403: invalid_token");
    assert_no_secret("the refusal", &format!("{}{}", out.stdout, out.stderr));
    // A receiver whose variable is not set: named, with no value.
    run_with(&p, &["notify", "test", "tasks"], &env[..1])
        .fails_with(1)
        .stderr_has("SLACK_URL (the webhook URL of receiver slack)");
    // A URL written in taskform.yaml is refused without being quoted.
    let bad = project_with(
        "notify:\n  - type: slack\n    url: https://hooks.slack.com/services/T/B/slack-url-token-2222\n",
    );
    let out = bad.run(&["validate", "tasks"], &[]);
    out.fails_with(1).stderr_has("are secrets");
    assert_no_secret("validate", &format!("{}{}", out.stdout, out.stderr));
}

fn watch(p: &Project, emu: &Emu, env: &[(String, String)], log: &str) -> std::process::Child {
    let mut c = p.cmd(&[
        "watch",
        "tasks",
        "--endpoint",
        &emu.url,
        "--debounce-ms",
        "100",
        "-vv",
        "--log-format",
        "json",
    ]);
    c.env("TASKFORM_AUTH_TOKEN", TOKEN);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(p.path(log)).unwrap())
        .spawn()
        .unwrap()
}

fn reasons(s: &Scripted) -> Vec<String> {
    s.requests()
        .iter()
        .map(|r| r.json()["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn failures_are_sent_once_per_window_retried_past_a_500_and_a_recovery_always() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    // 500 to the first request, 200 after.
    let generic = Scripted::start(|n, _| match n {
        0 => Reply::Answer(500, vec![], "busy".into()),
        _ => ok(""),
    });
    // Never answers.
    let hanging = Scripted::start(|_, _| Reply::Hang(Duration::from_secs(120)));
    // Errors only: gets the failure, and (whatever its severity) the recovery.
    let oncall = Scripted::start(|_, _| ok(""));
    let p = project_with(
        "notify:\n  - type: generic\n    url_from: GENERIC_URL\n    secret_from: GENERIC_SECRET\n    severity: info\n  - name: down\n    type: slack\n    url_from: SLACK_URL\n  - name: oncall\n    type: generic\n    url_from: ONCALL_URL\n    severity: error\n",
    );
    p.task("a");
    let env = vec![
        (
            "GENERIC_URL".to_string(),
            format!("{}/hooks/generic-url-token-1111", generic.url),
        ),
        ("GENERIC_SECRET".to_string(), GENERIC_SECRET.to_string()),
        (
            "SLACK_URL".to_string(),
            format!("{}/services/slack-url-token-2222", hanging.url),
        ),
        (
            "ONCALL_URL".to_string(),
            format!("{}/hooks/generic-url-token-1111", oncall.url),
        ),
    ];
    let mut w = watch(&p, &emu, &env, "watch.log");
    assert!(wait_until(Duration::from_secs(20), || emu.tasks().len() == 1));

    // A broken manifest, and the same break four more times: one alert.
    let broken = "name: b\nschedule_config: {schedule_type: cron}\n";
    p.write("tasks/b.yaml", broken);
    // The first delivery gets a 500: the event comes again after a backoff, once.
    assert!(
        wait_until(Duration::from_secs(20), || generic.requests().len() == 2),
        "{:?}",
        reasons(&generic)
    );
    assert_eq!(reasons(&generic), ["RevisionInvalid", "RevisionInvalid"]);
    assert_eq!(generic.requests()[0].body, generic.requests()[1].body);
    let invalid = generic.requests()[1].json();
    assert_eq!(invalid["severity"], "error");
    assert!(
        invalid["metadata"]["details"]
            .as_str()
            .unwrap()
            .contains("tasks/b.yaml:")
    );
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        p.write("tasks/b.yaml", &format!("{broken}# touched {i}\n"));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        reasons(&generic)
            .iter()
            .filter(|r| *r == "RevisionInvalid")
            .count(),
        2,
        "identical failures within the window: one alert (and its retry past the 500)"
    );

    // Fixed: the recovery is sent, and the receiver that never answers held nothing
    // back (the task is created at once).
    let fixed_at = Instant::now();
    p.write("tasks/b.yaml", &manifest("b", 10));
    assert!(wait_until(Duration::from_secs(10), || emu.tasks().len() == 2));
    assert!(
        fixed_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        fixed_at.elapsed()
    );
    assert!(wait_until(Duration::from_secs(10), || reasons(&generic)
        .contains(&"Recovered".to_string())));
    assert!(
        wait_until(Duration::from_secs(10), || reasons(&oncall)
            == ["RevisionInvalid", "Recovered"]),
        "{:?}",
        reasons(&oncall)
    );
    // After a recovery the same break is news again.
    p.write("tasks/b.yaml", broken);
    assert!(wait_until(Duration::from_secs(20), || reasons(&generic)
        .iter()
        .filter(|r| *r == "RevisionInvalid")
        .count()
        == 3));
    sigterm(&w);
    let _ = w.wait();
    let log = std::fs::read_to_string(p.path("watch.log")).unwrap();
    assert!(
        log.contains("alerts go to the receivers of notify:"),
        "{log}"
    );
    assert_no_secret("the watcher's log (-vv)", &log);
    assert_no_secret("the state", &p.state_folder_text());
}

#[test]
fn a_drift_check_alerts_only_when_something_differs_and_apply_reports_its_outcome() {
    let emu = Emu::start(&["--rate-limit", "0"]);
    let generic = Scripted::start(|_, _| ok(""));
    let p = project_with("notify:\n  - type: generic\n    url_from: GENERIC_URL\n");
    p.task("a");
    let env = vec![
        (
            "GENERIC_URL".to_string(),
            format!("{}/hooks/generic-url-token-1111", generic.url),
        ),
        ("TASKFORM_AUTH_TOKEN".to_string(), TOKEN.to_string()),
    ];
    // Applied with --notify: the outcome.
    run_with(
        &p,
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            &emu.url,
            "--notify",
        ],
        &env,
    )
    .succeeds();
    let applied = generic.requests()[0].json();
    assert_eq!(applied["reason"], "Applied");
    assert_eq!(applied["severity"], "info");
    assert!(
        applied["message"].as_str().unwrap().contains("created 1"),
        "{applied}"
    );
    // Nothing differs: a drift check sends nothing.
    run_with(
        &p,
        &[
            "plan",
            "--refresh",
            "--detailed-exitcode",
            "--notify",
            "tasks",
            "--endpoint",
            &emu.url,
        ],
        &env,
    )
    .succeeds();
    assert_eq!(generic.requests().len(), 1);
    // Changed in the console: the drift check alerts, with the task and its fields.
    let mut changed = emu.tasks()[0].clone();
    let id = changed["id"].as_str().unwrap().to_string();
    changed["schedule_config"]["max_time_out"] = 45.into();
    assert_eq!(
        emu.call("PUT", &format!("/{id}"), &changed.to_string()).0,
        200
    );
    run_with(
        &p,
        &[
            "plan",
            "--refresh",
            "--detailed-exitcode",
            "--notify",
            "tasks",
            "--endpoint",
            &emu.url,
            "--out",
            "plan.json",
        ],
        &env,
    )
    .fails_with(2);
    let drift = generic.requests()[1].json();
    assert_eq!(drift["reason"], "DriftCheck");
    assert_eq!(drift["severity"], "error");
    let details = drift["metadata"]["details"].as_str().unwrap();
    assert!(details.starts_with("a: update"), "{drift}");
    assert!(details.contains("max_time_out"), "{drift}");
    let plan = std::fs::read_to_string(p.path("plan.json")).unwrap();
    assert_no_secret("the plan file", &plan);
}
