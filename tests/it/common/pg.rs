//! The PostgreSQL server the tests use: `TASKFORM_TEST_POSTGRES` names it (a URL
//! without the password; the password in `PGPASSWORD`). `.ci/run` starts a throwaway
//! server with `pg_virtualenv` and sets both, with `TASKFORM_REQUIRE_POSTGRES=1`: then
//! a test that finds no server fails. Without a server and outside CI (a fresh machine
//! with only Rust), PostgreSQL tests say loudly that they were skipped.
//!
//! Each test works in a schema of its own, so tests run in parallel on one server.

use super::{PROJECT, Project, WORKSPACE};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Pg {
    /// `postgres://user@host:port/db` (no password).
    pub url: String,
    pub password: String,
}

/// The server, or `None` (with a loud notice) when there is none and CI does not
/// require one.
pub fn server(test: &str) -> Option<Pg> {
    match std::env::var("TASKFORM_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(Pg {
            url,
            password: std::env::var("PGPASSWORD").unwrap_or_default(),
        }),
        _ => {
            let required = std::env::var("TASKFORM_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
                || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            if required {
                panic!(
                    "{test}: no PostgreSQL server: set TASKFORM_TEST_POSTGRES=postgres://USER@HOST:PORT/DB and PGPASSWORD (.ci/run starts one with pg_virtualenv)"
                );
            }
            eprintln!(
                "SKIPPED {test}: no PostgreSQL server (TASKFORM_TEST_POSTGRES unset); run `bash .ci/run` to test the PostgreSQL backend"
            );
            None
        }
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    format!(
        "t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        fastrand::u32(..)
    )
}

impl Pg {
    /// The URL with `params` (`sslmode=disable`...).
    pub fn url_with(&self, params: &str) -> String {
        match params.is_empty() {
            true => self.url.clone(),
            false => format!("{}?{params}", self.url),
        }
    }

    /// The URL with another host (same user, port, database) and `params`.
    pub fn url_at(&self, host: &str, params: &str) -> String {
        let rest = self.url.trim_start_matches("postgres://");
        let (user, hostpart) = rest.split_once('@').expect("user@host in the test URL");
        let after_host = hostpart
            .find([':', '/'])
            .map(|i| &hostpart[i..])
            .unwrap_or("");
        format!("postgres://{user}@{host}{after_host}?{params}")
    }

    /// Runs SQL (simple protocol) and returns every row's columns as text.
    pub fn sql(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config: tokio_postgres::Config = self.url.parse().expect("test URL");
        config.password(self.password.clone());
        rt.block_on(async move {
            let (client, conn) = config
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect to the test PostgreSQL");
            tokio::spawn(conn);
            let msgs = client.simple_query(sql).await.expect(sql);
            msgs.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// One value.
    pub fn value(&self, sql: &str) -> Option<String> {
        self.sql(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
    }

    /// A project whose state is the state `name` in a fresh schema of this server
    /// (`state:` and `state_schema:` in taskform.yaml, the password in PGPASSWORD).
    /// Its sessions carry the schema as their `application_name`, so that a test can
    /// find (and terminate) its own sessions among those of tests running beside it.
    /// Returns the project and its schema.
    pub fn project(&self, name: &str) -> (Project, String) {
        let schema = fresh_schema();
        let mut p = Project::new();
        p.write(
            "tasks/taskform.yaml",
            &format!(
                "project_id: {PROJECT}\nworkspace: {WORKSPACE}\nstate: {}\nstate_name: {name}\nstate_schema: {schema}\ndefaults:\n  user_id: u-1\n  dir_id: \"0\"\n",
                self.url_with(&format!("sslmode=disable&application_name={schema}"))
            ),
        );
        p.env.push(("PGPASSWORD".into(), self.password.clone()));
        (p, schema)
    }
}
