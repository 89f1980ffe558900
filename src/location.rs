//! Where a state lives: a file path, or a named state in a PostgreSQL database
//! (`postgres://user@host:5432/db?sslmode=require`). The scheme selects the backend.
//!
//! This module only parses and shows locations; connecting is the state backend's
//! job (`state::postgres`). A PostgreSQL URL may carry a password: it is kept apart
//! and never shown. [`StateLocation`]'s `Display` and `Debug` replace it with `***`,
//! so a location can be printed, logged and stored in a plan file as it is.

use percent_encoding::percent_decode_str;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state name used when nothing names one.
pub const DEFAULT_STATE_NAME: &str = "default";
/// The PostgreSQL schema used when nothing names one.
pub const DEFAULT_SCHEMA: &str = "taskform";

/// A state's location.
#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// The local file backend.
    File(PathBuf),
    /// A named state in a PostgreSQL database.
    Postgres(PgState),
}

/// A named state in a PostgreSQL schema.
#[derive(Clone, PartialEq, Eq)]
pub struct PgState {
    pub url: PgUrl,
    pub name: String,
    pub schema: String,
}

/// How TLS is used (libpq's `sslmode`, without `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without verifying the certificate (libpq's
    /// default).
    Prefer,
    /// TLS always; the certificate is verified against `sslrootcert` when one is
    /// given (as libpq), otherwise not.
    Require,
    /// TLS, certificate chain verified; any host name.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A parsed `postgres://` URL. Fields left out stay `None`: the backend fills them
/// from `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `~/.pgpass`,
/// `PGSSLMODE`, `PGSSLROOTCERT` as libpq does.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PgUrl {
    pub user: Option<String>,
    password: Option<String>,
    /// A host name, an IP address, or a folder holding the server's Unix socket.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub application_name: Option<String>,
}

/// The query parameters a URL may carry.
pub const URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
    "host",
    "port",
    "user",
    "password",
    "dbname",
];

impl PgUrl {
    /// The password the URL carries, if any (never shown).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Parses `postgres://[user[:password]@][host][:port][/dbname][?param=value&...]`
    /// (also `postgresql://`). Errors never quote the password.
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        // Whatever goes wrong, the message must not carry the password, not even a
        // piece of one that a special character cut off.
        let mut secrets = Vec::new();
        let parsed = PgUrl::parse_inner(url, &mut secrets);
        parsed.map_err(|e| hide(e, &secrets))
    }

    /// The parts of `url` that may be a password (for hiding them in messages).
    fn secrets(url: &str) -> Vec<String> {
        let mut secrets = Vec::new();
        let _ = PgUrl::parse_inner(url, &mut secrets);
        secrets
    }

    fn parse_inner(url: &str, secrets: &mut Vec<String>) -> Result<PgUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| "a PostgreSQL URL starts with postgres://".to_string())?;
        // A `?` (or `#`) in the user name or password would cut it short at the
        // query below, and a piece of the password could then be quoted: refused
        // first, quoting nothing.
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && rest[..at].contains(['?', '#'])
        {
            return Err("the URL has a `?` or `#` before its `@`: write the special characters of a user name or password percent-encoded (`?` as %3F, `#` as %23, `/` as %2F, `@` as %40, `:` as %3A)".into());
        }
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        if main.contains('#') || query.is_some_and(|q| q.contains('#')) {
            return Err("a PostgreSQL URL has no #fragment; name the state with --state-name or `state_name:`".into());
        }
        let (authority, path) = match main.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (main, None),
        };
        if path.is_some_and(|p| p.contains('@')) {
            return Err("the URL has an `@` after its host: write the special characters of a user name or password percent-encoded (`/` as %2F, `@` as %40, `:` as %3A, `#` as %23, `?` as %3F)".into());
        }
        // A password (not a user name alone: it is no secret, and hiding it would
        // hide words of the message).
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, p)) = userinfo.split_once(':')
        {
            secrets.push(userinfo.to_string());
            secrets.push(p.to_string());
        }
        let has_password_param =
            query.is_some_and(|q| q.split('&').any(|p| p.starts_with("password=")));
        if let Some(q) = query {
            for p in q.split('&') {
                if let Some(v) = p.strip_prefix("password=") {
                    secrets.push(v.to_string());
                }
            }
        }
        let decode = |what: &str, s: &str| -> Result<String, String> {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("the URL's {what} is not valid percent-encoded UTF-8"))
        };
        let mut u = PgUrl::default();
        let hostport = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if !user.is_empty() {
                    u.user = Some(decode("user", user)?);
                }
                if let Some(p) = password {
                    u.password = Some(decode("password", p)?);
                }
                hp
            }
            None => authority,
        };
        if hostport.contains(',') {
            return Err("one host per URL: taskform does not fail over between hosts".into());
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "the URL's IPv6 host lacks its closing ]".to_string())?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (decode("host", h)?, Some(p)),
                None => (decode("host", hostport)?, None),
            }
        };
        if !host.is_empty() {
            u.host = Some(host);
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            u.port = Some(parse_port(p)?);
        }
        if let Some(db) = path.filter(|p| !p.is_empty()) {
            u.dbname = Some(decode("database name", db)?);
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(k, v)?;
            match k {
                "sslmode" => u.sslmode = Some(SslMode::parse(&v).ok_or_else(|| {
                    format!(
                        "sslmode={v} is not one of disable, prefer, require, verify-ca, verify-full"
                    )
                })?),
                "sslrootcert" => u.sslrootcert = Some(v),
                "connect_timeout" => {
                    let secs: u64 = v.parse().map_err(|_| {
                        format!("connect_timeout={v} is not a whole number of seconds")
                    })?;
                    u.connect_timeout = Some(Duration::from_secs(secs));
                }
                "application_name" => u.application_name = Some(v),
                "host" => u.host = Some(v),
                "port" => u.port = Some(parse_port(&v)?),
                "user" => u.user = Some(v),
                "password" => u.password = Some(v),
                "dbname" => u.dbname = Some(v),
                _ if has_password_param => {
                    return Err(format!(
                        "the URL has a parameter taskform does not know (it takes {}); a `&` in a password is written %26",
                        URL_PARAMETERS.join(", ")
                    ));
                }
                other => {
                    return Err(format!(
                        "the URL parameter `{}` is not one taskform knows (it takes {})",
                        shown_param(other),
                        URL_PARAMETERS.join(", ")
                    ));
                }
            }
        }
        Ok(u)
    }

    /// The URL without its password (to write into a settings file).
    pub fn without_password(&self) -> String {
        let mut u = self.clone();
        u.password = None;
        u.redacted()
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
        const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%').add(b'&').add(b'=');
        const PART: &AsciiSet = &QUERY.add(b'@').add(b':').add(b'/').add(b'?');
        let enc = |s: &str| utf8_percent_encode(s, PART).to_string();
        let qenc = |s: &str| utf8_percent_encode(s, QUERY).to_string();
        let mut s = String::from("postgres://");
        if let Some(user) = &self.user {
            s.push_str(&enc(user));
        }
        if self.password.is_some() {
            s.push_str(":***");
        }
        if self.user.is_some() || self.password.is_some() {
            s.push('@');
        }
        let socket = self.host.as_deref().is_some_and(|h| h.starts_with('/'));
        match &self.host {
            Some(h) if h.contains(':') => s.push_str(&format!("[{h}]")),
            Some(h) if !socket => s.push_str(&enc(h)),
            _ => {}
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s.push('/');
        if let Some(db) = &self.dbname {
            s.push_str(&enc(db));
        }
        let mut params = Vec::new();
        if socket && let Some(h) = &self.host {
            params.push(format!("host={}", qenc(h)));
        }
        if let Some(m) = self.sslmode {
            params.push(format!("sslmode={}", m.as_str()));
        }
        if let Some(c) = &self.sslrootcert {
            params.push(format!("sslrootcert={}", qenc(c)));
        }
        if !params.is_empty() {
            s.push('?');
            s.push_str(&params.join("&"));
        }
        s
    }
}

/// `text` with every one of `secrets` replaced by `***` where `text` quotes the URL
/// or a part of it (between backticks, or all of it when it has none): never in the
/// words of the message around them.
fn hide(text: String, secrets: &[String]) -> String {
    let hide_in = |part: &str| {
        let mut part = part.to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            part = part.replace(s.as_str(), "***");
        }
        part
    };
    // Without quotes, or with a secret that holds a backtick itself (the split
    // below could cut it), everything is searched.
    if !text.contains('`') || secrets.iter().any(|s| s.contains('`')) {
        return hide_in(&text);
    }
    text.split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => hide_in(part),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("`")
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("the URL's port `{}` is not a port number", shown_param(p)))
}

/// A short, printable form of a user-written URL part for an error message.
fn shown_param(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The key under which the lookup a state is opened with (an environment's scope) says
/// where a standard credential variable NAME is read from, for messages:
/// `Some(VARIABLE)` when the environment maps NAME to VARIABLE, `Some("")` when it maps
/// other credentials and so does not read NAME at all, `None` when NAME is read as
/// itself.
pub const SOURCE_PREFIX: &str = "source:";

/// Whether a `--state` value names a PostgreSQL state.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// A `--state` value that looks like a URL but not a PostgreSQL one (`postgress://`,
/// ` postgres://` with a space, `postgresql//` without its colon, `postgres:/`,
/// `pg:...`): refused rather than taken for a file path, which would write a new local
/// state (and put the URL, with its password, into folder names and messages).
/// Returns the prefix to show (`postgress://`).
pub fn url_like(s: &str) -> Option<String> {
    let shown = |prefix: &str| -> String {
        prefix
            .trim()
            .chars()
            .take(24)
            .filter(|c| !c.is_control())
            .collect()
    };
    if let Some(at) = s.find("://") {
        return Some(shown(&s[..at + 3]));
    }
    let word_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
        .unwrap_or(s.len());
    let (word, rest) = s.split_at(word_end);
    let schemish = word.len() >= 2 && word.starts_with(|c: char| c.is_ascii_alphabetic());
    if !schemish {
        return None;
    }
    // `postgres:/x`, `pg:x`: a scheme-like word and a colon (a drive letter has one
    // letter, and `a.json:x` has a dot-less scheme only when it has no extension).
    if rest.starts_with(':') && !word.contains('.') {
        return Some(shown(&s[..word_end + 1]));
    }
    // `postgresql//user@host/db`: the colon forgotten.
    if let Some(after) = rest.strip_prefix("//") {
        let lower = word.to_ascii_lowercase();
        let close = ["postgres", "postgresql", "pg", "psql"]
            .iter()
            .any(|w| strsim::levenshtein(&lower, w) <= 2);
        if close || after.split('/').next().is_some_and(|h| h.contains('@')) {
            return Some(shown(&s[..word_end + 2]));
        }
    }
    None
}

/// Why a state location cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("the state URL {shown} cannot be used: {detail}")]
    Url { shown: String, detail: String },
    #[error(
        "the state schema `{0}` is not a plain PostgreSQL name: use lower-case letters, digits and _ (at most 63, not starting with a digit)"
    )]
    Schema(String),
    #[error("the state name must be 1 to 200 printable characters")]
    Name,
    #[error(
        "the state `{0}...` is neither a file path nor a PostgreSQL URL: did you mean postgres://...? A PostgreSQL state starts with postgres:// (or postgresql://); a file state is a path without a scheme"
    )]
    Scheme(String),
    #[error(
        "a state name ({name}) applies to a PostgreSQL state only; the file state {path} is named by its path. Drop --state-name / TASKFORM_STATE_NAME / `state_name:`, or use a postgres:// state"
    )]
    NameWithFile { name: String, path: String },
}

impl StateLocation {
    /// Parses a `--state` value: a `postgres://` URL, or a path (returned as given).
    pub fn parse(
        value: &str,
        name: Option<&str>,
        schema: Option<&str>,
    ) -> Result<StateLocation, LocationError> {
        if !is_postgres_url(value) {
            if let Some(scheme) = url_like(value) {
                return Err(LocationError::Scheme(scheme));
            }
            return StateLocation::file(PathBuf::from(value), name);
        }
        let url = PgUrl::parse(value).map_err(|detail| LocationError::Url {
            shown: hide(redact_unparsed(value), &PgUrl::secrets(value)),
            detail,
        })?;
        StateLocation::postgres(url, name, schema)
    }

    /// A file location; a state name other than the default is refused.
    pub fn file(path: PathBuf, name: Option<&str>) -> Result<StateLocation, LocationError> {
        match name {
            Some(n) if n != DEFAULT_STATE_NAME => Err(LocationError::NameWithFile {
                name: n.to_string(),
                path: path.display().to_string(),
            }),
            _ => Ok(StateLocation::File(path)),
        }
    }

    fn postgres(
        url: PgUrl,
        name: Option<&str>,
        schema: Option<&str>,
    ) -> Result<StateLocation, LocationError> {
        let name = name.unwrap_or(DEFAULT_STATE_NAME).to_string();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(LocationError::Name);
        }
        let schema = schema.unwrap_or(DEFAULT_SCHEMA).to_string();
        let plain = !schema.is_empty()
            && schema.len() <= 63
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(LocationError::Schema(shown_param(&schema)));
        }
        Ok(StateLocation::Postgres(PgState { url, name, schema }))
    }

    /// The same location with this state name and schema (defaults where `None`).
    pub fn named(
        self,
        name: Option<&str>,
        schema: Option<&str>,
    ) -> Result<StateLocation, LocationError> {
        match self {
            StateLocation::File(p) => StateLocation::file(p, name),
            StateLocation::Postgres(pg) => StateLocation::postgres(pg.url, name, schema),
        }
    }

    /// What identifies the state in a saved plan: a file's path, a PostgreSQL
    /// state's [`PgState::identity`].
    pub fn identity(&self) -> String {
        match self {
            StateLocation::File(p) => p.display().to_string(),
            StateLocation::Postgres(pg) => pg.identity(),
        }
    }

    /// The file path, for the file backend.
    pub fn as_file(&self) -> Option<&Path> {
        match self {
            StateLocation::File(p) => Some(p),
            StateLocation::Postgres(_) => None,
        }
    }
}

/// A `--state` value as it may be shown: a URL without its password.
pub fn shown_value(value: &str) -> String {
    match value.contains("://") {
        true => PgUrl::parse(value)
            .map(|u| u.redacted())
            .unwrap_or_else(|_| hide(redact_unparsed(value), &PgUrl::secrets(value))),
        false => value.to_string(),
    }
}

/// Shows a URL that did not parse without anything between `://` and the last `@`
/// (where a password would be).
fn redact_unparsed(url: &str) -> String {
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    };
    let shown = match shown.split_once("password=") {
        Some((before, _)) => format!("{before}password=***"),
        None => shown,
    };
    shown_param(&shown)
        + if shown.chars().count() > 40 {
            "..."
        } else {
            ""
        }
}

impl PgState {
    /// What makes two locations the same state: user, host, port, database, schema and
    /// name as written (no password, whether one was written or not, and no TLS
    /// settings). Saved plans record it.
    pub fn identity(&self) -> String {
        let mut u = self.url.clone();
        u.password = None;
        u.sslmode = None;
        u.sslrootcert = None;
        let shown = PgState {
            url: u,
            name: self.name.clone(),
            schema: self.schema.clone(),
        };
        shown.to_string()
    }
}

impl fmt::Display for PgState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (state {:?}", self.url.redacted(), self.name)?;
        if self.schema != DEFAULT_SCHEMA {
            write!(f, " in schema {}", self.schema)?;
        }
        f.write_str(")")
    }
}

impl fmt::Debug for PgState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::File(p) => write!(f, "{}", p.display()),
            StateLocation::Postgres(pg) => write!(f, "{pg}"),
        }
    }
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Default for StateLocation {
    fn default() -> Self {
        StateLocation::File(PathBuf::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let u = PgUrl::parse(
            "postgres://ci%40corp:s%3Acr3t@db.example:6432/tasks?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(u.user.as_deref(), Some("ci@corp"));
        assert_eq!(u.password(), Some("s:cr3t"));
        assert_eq!(u.host.as_deref(), Some("db.example"));
        assert_eq!(u.port, Some(6432));
        assert_eq!(u.dbname.as_deref(), Some("tasks"));
        assert_eq!(u.sslmode, Some(SslMode::VerifyFull));
        let shown = u.redacted();
        assert_eq!(
            shown,
            "postgres://ci%40corp:***@db.example:6432/tasks?sslmode=verify-full&sslrootcert=/ca.pem"
        );
        assert!(!format!("{u:?}").contains("cr3t"));
        let loc = StateLocation::parse("postgresql://u:pw@h/db?password=other", Some("prod"), None)
            .unwrap();
        let text = format!("{loc} {loc:?}");
        assert!(!text.contains("pw@") && !text.contains("other"), "{text}");
        assert!(text.contains("(state \"prod\")"), "{text}");
    }

    #[test]
    fn sockets_ipv6_and_defaults() {
        let u = PgUrl::parse("postgres:///db?host=/var/run/postgresql").unwrap();
        assert_eq!(u.host.as_deref(), Some("/var/run/postgresql"));
        assert_eq!(u.redacted(), "postgres:///db?host=/var/run/postgresql");
        let u = PgUrl::parse("postgres://[::1]:5433").unwrap();
        assert_eq!(u.host.as_deref(), Some("::1"));
        assert_eq!(u.port, Some(5433));
        assert_eq!(u.dbname, None);
        assert_eq!(PgUrl::parse("postgres://").unwrap(), PgUrl::default());
    }

    #[test]
    fn bad_urls_name_the_problem_without_the_password() {
        for (url, want) in [
            (
                "postgres://u:pw@h/db?sslmode=verify",
                "sslmode=verify is not",
            ),
            ("postgres://u:pw@h:99999/db", "not a port number"),
            ("postgres://u:pw@h/db?sslmod=require", "`sslmod` is not one"),
            ("postgres://u:pw@a,b/db", "one host per URL"),
            ("postgres://u:pw@h/db#x", "no #fragment"),
            ("postgres://ci:pw/x@db/tasks", "an `@` after its host"),
            ("postgres://u:p@ss/word@h/db", "an `@` after its host"),
            (
                "postgres://u@h/db?password=pw&x",
                "a parameter taskform does not know",
            ),
            ("postgres://u:pw@h:pw/db", "port `***`"),
            ("postgress://u:pw@h/db", "`postgress://...` is neither"),
            (
                "postgres://taskform@h/db?sslmod=require",
                "the URL parameter `sslmod` is not one taskform knows",
            ),
            ("postgres://u:p`w0rd@h:p`w0rd/db", "port `***`"),
            ("postgres://u:pw?ss@h/db", "a `?` or `#` before its `@`"),
            ("postgres://u:5432?pw@h/db", "a `?` or `#` before its `@`"),
            (" postgres://u:pw@h/db", "`postgres://...` is neither"),
        ] {
            let e = StateLocation::parse(url, None, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("pw") && !e.contains("w0rd"), "{url}: {e}");
        }
        let a = StateLocation::parse("postgres://u:pw@h/db?sslmode=require", None, None).unwrap();
        let b = StateLocation::parse("postgres://u@h/db", None, None).unwrap();
        assert_eq!(a.identity(), b.identity());
        assert_eq!(a.identity(), "postgres://u@h/db (state \"default\")");
        let e = StateLocation::parse("postgres://h/db", None, Some("Bad-Name"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a plain PostgreSQL name"), "{e}");
        let e = StateLocation::parse("state/x.json", Some("prod"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("applies to a PostgreSQL state only"), "{e}");
        assert_eq!(
            StateLocation::parse("state/x.json", Some("default"), None).unwrap(),
            StateLocation::File("state/x.json".into())
        );
    }
}
