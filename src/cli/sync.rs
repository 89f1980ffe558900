//! `taskform reconcile --listen ADDR [--env NAME] [--wait]`: asks a running watcher
//! to fetch and reconcile now (`POST /reconcile`, with the secret of
//! `TASKFORM_WEBHOOK_SECRET`), and with `--wait` waits for that reconcile on `/status`
//! and reports its result (exit 1 when it failed).

use super::{Env, block_on};
use crate::error::{Error, Exit};
use crate::render::escape;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Options of `taskform reconcile`.
#[derive(Debug, Clone)]
pub struct SyncArgs {
    /// The watcher's `--listen` address (`HOST:PORT`) or URL.
    pub listen: String,
    pub environment: Option<String>,
    pub wait: bool,
    pub timeout: Duration,
}

/// `taskform reconcile`.
pub fn sync(args: SyncArgs, env: Env) -> Exit {
    block_on(run(args, env))
}

fn base_url(listen: &str) -> String {
    let url = match listen.contains("://") {
        true => listen.to_string(),
        false => format!("http://{listen}"),
    };
    url.trim_end_matches('/').to_string()
}

async fn run(args: SyncArgs, env: Env<'_>) -> Result<Exit, Error> {
    let Some(secret) = env("TASKFORM_WEBHOOK_SECRET").filter(|s| !s.is_empty()) else {
        return Err(Error::Command(
            "set TASKFORM_WEBHOOK_SECRET to the watcher's secret: POST /reconcile needs it".into(),
        ));
    };
    crate::remote::client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("taskform/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Command(format!("cannot build the HTTP client: {e}")))?;
    let base = base_url(&args.listen);
    let mut url = format!("{base}/reconcile");
    if let Some(e) = &args.environment {
        url.push_str("?environment=");
        url.push_str(
            &percent_encoding::utf8_percent_encode(e, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
    }
    let shown = escape(&base).into_owned();
    // The reconciles so far, for a request that is queued (no number yet).
    let before = status(&http, &base).await;
    let answer = http
        .post(&url)
        .bearer_auth(&secret)
        .send()
        .await
        .map_err(|e| Error::Command(format!("cannot reach the watcher at {shown}: {e}")))?;
    let code = answer.status();
    let body = answer.text().await.unwrap_or_default();
    if code.as_u16() != 202 {
        return Err(Error::Command(format!(
            "the watcher at {shown} answered {code}: {}",
            escape(body.trim())
        )));
    }
    let doc: Value = serde_json::from_str(&body).map_err(|e| {
        Error::Command(format!("the watcher at {shown} answered with no JSON: {e}"))
    })?;
    let envs = doc["environments"].as_object().cloned().unwrap_or_default();
    // Each environment with the first reconcile number that answers the request.
    let mut waiting: Vec<(String, u64)> = Vec::new();
    let mut refused = false;
    for (name, a) in &envs {
        let key = name.clone();
        let name = escape(name).into_owned();
        match (a["accepted"].as_bool(), a["reconcile"].as_u64()) {
            (Some(true), Some(n)) => {
                let rev = a["revision"]
                    .as_str()
                    .map(|r| format!(" of revision {}", escape(r)))
                    .unwrap_or_default();
                println!("{name}: reconcile #{n}{rev} requested");
                waiting.push((key, n));
            }
            (Some(true), None) => {
                let last = before
                    .as_ref()
                    .and_then(|s| {
                        s["environments"][key.as_str()]["last_reconcile"]["number"].as_u64()
                    })
                    .unwrap_or(0);
                println!(
                    "{name}: requested; the watcher is busy and reconciles after the running reconcile"
                );
                // The running reconcile, then the requested one.
                waiting.push((key, last + 2));
            }
            _ => {
                refused = true;
                println!(
                    "{name}: not requested: {}",
                    escape(a["why"].as_str().unwrap_or("refused"))
                );
            }
        }
    }
    if refused && args.wait {
        return Err(Error::Command(format!(
            "not every environment took the request; see {shown}/status"
        )));
    }
    if !args.wait {
        return Ok(Exit::Ok);
    }
    let deadline = Instant::now() + args.timeout;
    let mut failed = false;
    while !waiting.is_empty() {
        if Instant::now() >= deadline {
            return Err(Error::Command(format!(
                "no result within {} s for {}; see {shown}/status",
                args.timeout.as_secs(),
                waiting
                    .iter()
                    .map(|(n, _)| escape(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(status) = status(&http, &base).await else {
            continue;
        };
        waiting.retain(|(key, n)| {
            let name = escape(key);
            let section = &status["environments"][key.as_str()];
            let last = &section["last_reconcile"];
            if last["number"].as_u64().is_none_or(|got| got < *n) {
                return true;
            }
            let sent = &last["sent"];
            match last["result"].as_str() {
                Some("success") => println!(
                    "{name}: reconcile #{} succeeded: created {}, updated {}, deleted {}{}",
                    last["number"],
                    sent["created"],
                    sent["updated"],
                    sent["deleted"],
                    match last["suspended"].as_bool() {
                        Some(true) => " (suspended: planned, nothing sent)",
                        _ => "",
                    }
                ),
                _ => {
                    failed = true;
                    println!(
                        "{name}: reconcile #{} failed: {}",
                        last["number"],
                        escape(
                            section["last_error"]["error"]
                                .as_str()
                                .unwrap_or("see /status")
                        )
                    );
                }
            }
            false
        });
    }
    Ok(if failed { Exit::Error } else { Exit::Ok })
}

/// The watcher's `/status`, if it answers.
async fn status(http: &reqwest::Client, base: &str) -> Option<Value> {
    let r = http.get(format!("{base}/status")).send().await.ok()?;
    serde_json::from_str(&r.text().await.ok()?).ok()
}
