//! From a `postgres://` URL and the environment to a connection: libpq's defaults
//! (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `~/.pgpass`,
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`), TLS through rustls, and the
//! keepalives that let the server free a vanished holder's lock within a minute.

use crate::location::{PgUrl, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// TCP keepalive on the client's side: a server that vanished is noticed after about
/// `IDLE + INTERVAL * COUNT` seconds of silence. The server's side is set per session
/// (see `sql::SESSION_SETTINGS`).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_COUNT: u32 = 3;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to open a session.
pub struct Endpoint {
    pub config: tokio_postgres::Config,
    /// `None`: plain TCP.
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// `user@host:port/db`, for messages (never the password).
    pub shown: String,
    /// Where the password came from, for an authentication failure's hint.
    pub password_from: String,
    /// What to do when the server asks for a password and none was given.
    pub password_hint: String,
}

/// Resolves `url` with the environment (`env`) as libpq would.
pub fn endpoint(
    url: &PgUrl,
    env: &dyn Fn(&str) -> Option<String>,
    command: &str,
) -> Result<Endpoint, String> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let port = match url.port {
        Some(p) => p,
        None => match get("PGPORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("PGPORT={p} is not a port number"))?,
            None => 5432,
        },
    };
    // As libpq: no host means the server's Unix socket in its usual folder.
    let host = url
        .host
        .clone()
        .or_else(|| get("PGHOST"))
        .unwrap_or_else(|| {
            ["/var/run/postgresql", "/tmp"]
                .into_iter()
                .find(|d| Path::new(d).join(format!(".s.PGSQL.{port}")).exists())
                .unwrap_or("localhost")
                .to_string()
        });
    if host.contains(',') {
        return Err(
            "one host at a time: taskform does not fail over between hosts (PGHOST)".into(),
        );
    }
    let user = url
        .user
        .clone()
        .or_else(|| get("PGUSER"))
        .or_else(|| get("USER"))
        .unwrap_or_else(|| "postgres".into());
    let dbname = url
        .dbname
        .clone()
        .or_else(|| get("PGDATABASE"))
        .unwrap_or_else(|| user.clone());
    let sslmode = match url.sslmode {
        Some(m) => m,
        None => match get("PGSSLMODE") {
            Some(m) => SslMode::parse(&m).ok_or_else(|| {
                format!(
                    "PGSSLMODE={m} is not one of disable, prefer, require, verify-ca, verify-full"
                )
            })?,
            None => SslMode::Prefer,
        },
    };
    let connect_timeout =
        match url.connect_timeout {
            Some(t) => t,
            None => match get("PGCONNECT_TIMEOUT") {
                Some(t) => Duration::from_secs(t.parse().map_err(|_| {
                    format!("PGCONNECT_TIMEOUT={t} is not a whole number of seconds")
                })?),
                None => DEFAULT_CONNECT_TIMEOUT,
            },
        };
    // 0 means no limit to libpq; taskform still gives up with the session's own.
    let connect_timeout = match connect_timeout.is_zero() {
        true => None,
        false => Some(connect_timeout),
    };
    // The variable the password is read from: PGPASSWORD, or the one an
    // environment's `credentials:` map it to (PGPASSWORD itself is then not read).
    let source = env(&format!("{}PGPASSWORD", crate::location::SOURCE_PREFIX));
    let (variable, why) = match source.as_deref() {
        None => ("PGPASSWORD".to_string(), String::new()),
        Some("") => (
            String::new(),
            "this environment's `credentials:` in taskform.yaml name other credentials but not PGPASSWORD, so PGPASSWORD is not read".to_string(),
        ),
        Some(v) => (
            v.to_string(),
            format!(
                "this environment's `credentials:` in taskform.yaml map PGPASSWORD to {v}, so PGPASSWORD is not read"
            ),
        ),
    };
    let (password, password_from) = match url.password() {
        Some(p) => (Some(p.to_string()), "the URL".to_string()),
        None => match get("PGPASSWORD") {
            Some(p) => (Some(p), variable.clone()),
            None => match pgpass(env, &host, port, &dbname, &user) {
                Some(p) => (Some(p), "the password file".to_string()),
                None => (None, "nowhere".to_string()),
            },
        },
    };
    let password_hint = match (variable.is_empty(), why.is_empty()) {
        (true, _) => format!(
            "{why}: add `PGPASSWORD: VARIABLE` to them and set VARIABLE, add a line to ~/.pgpass, or put the password in the URL"
        ),
        (false, true) => {
            "set PGPASSWORD, add a line to ~/.pgpass, or put it in the URL".to_string()
        }
        (false, false) => {
            format!("set {variable} ({why}), add a line to ~/.pgpass, or put it in the URL")
        }
    };
    let mut config = tokio_postgres::Config::new();
    config
        .user(&user)
        .dbname(&dbname)
        .port(port)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_COUNT)
        .tcp_user_timeout(KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT)
        .application_name(
            url.application_name
                .clone()
                .unwrap_or_else(|| format!("taskform {command}")),
        );
    if let Some(t) = connect_timeout {
        config.connect_timeout(t);
    }
    if host.starts_with('/') {
        config.host_path(&host);
    } else {
        config.host(&host);
    }
    if let Some(p) = password {
        config.password(p);
    }
    let socket = host.starts_with('/');
    let tls = match sslmode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
        _ if socket => {
            // libpq never uses TLS over a Unix socket.
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
        mode => {
            config.ssl_mode(match mode {
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
            let rootcert = url
                .sslrootcert
                .clone()
                .or_else(|| get("PGSSLROOTCERT"))
                .or_else(|| {
                    let home = get("HOME")?;
                    let p = Path::new(&home).join(".postgresql/root.crt");
                    p.exists().then(|| p.display().to_string())
                });
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                mode,
                rootcert.as_deref(),
            )?))
        }
    };
    let shown_host = match socket {
        true => format!("socket {host}"),
        false if host.contains(':') => format!("[{host}]"),
        false => host.clone(),
    };
    Ok(Endpoint {
        config,
        tls,
        shown: format!("{user}@{shown_host}:{port}/{dbname}"),
        password_from,
        password_hint,
    })
}

/// The password for this connection from the password file (`PGPASSFILE`, else
/// `~/.pgpass`): lines `host:port:database:user:password`, `*` matching anything,
/// `\:` and `\\` escaped. Like libpq, a file readable by group or others is ignored.
fn pgpass(
    env: &dyn Fn(&str) -> Option<String>,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let path = env("PGPASSFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).ok()?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the password file is readable by group or others; ignoring it (chmod 0600 it)");
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    // libpq matches "localhost" for connections over the default Unix socket.
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(pgpass_fields)
        .find(|f| {
            let ok = |pat: &str, v: &str| pat == "*" || pat == v;
            ok(&f[0], host) && ok(&f[1], &port) && ok(&f[2], dbname) && ok(&f[3], user)
        })
        .map(|f| f[4].clone())
}

/// The five fields of a password-file line.
fn pgpass_fields(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut()?.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

/// rustls for an `sslmode`: `prefer`/`require` without a root certificate encrypt
/// without verifying the server (as libpq); `require` with one and `verify-ca` verify
/// the chain; `verify-full` also the host name. `sslrootcert=system` uses the
/// system's roots.
fn tls_config(mode: SslMode, rootcert: Option<&str>) -> Result<rustls::ClientConfig, String> {
    // As libpq: the system's roots are only trusted together with the host name.
    let mode = match rootcert {
        Some("system") => SslMode::VerifyFull,
        _ => mode,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let verify = match (mode, rootcert) {
        (SslMode::VerifyFull | SslMode::VerifyCa, None) => {
            return Err(format!(
                "sslmode={} needs the certificate of the authority that signed the server's: add sslrootcert=/path/to/ca.pem to the URL (or sslrootcert=system for the system's roots), or set PGSSLROOTCERT",
                mode.as_str()
            ));
        }
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => None,
        (_, Some(file)) => Some(roots(file)?),
    };
    let config = match verify {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        Some(roots) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("cannot use the root certificates: {e}"))?;
            match mode {
                SslMode::VerifyFull => builder.with_webpki_verifier(webpki).with_no_client_auth(),
                _ => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                    .with_no_client_auth(),
            }
        }
    };
    Ok(config)
}

fn roots(file: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if file == "system" {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    } else {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read sslrootcert {file}: {e}"))?;
        roots.add_parsable_certificates(certs);
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {file} holds no usable certificate"));
    }
    Ok(roots)
}

/// Encrypts without checking who the server is (libpq's `require` without a root
/// certificate); the handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the chain but not the host name (`verify-ca`).
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_lines_match_like_libpq() {
        assert_eq!(
            pgpass_fields(r"db\:1:5432:*:ci:p\:w\\d").map(|f| f[4].clone()),
            Some(r"p:w\d".to_string())
        );
        assert_eq!(pgpass_fields("too:few:fields"), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:no\ndb.example:5432:tasks:ci:yes\n*:*:*:*:fallback\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let f = file.display().to_string();
        let env = |k: &str| (k == "PGPASSFILE").then(|| f.clone());
        assert_eq!(
            pgpass(&env, "db.example", 5432, "tasks", "ci").as_deref(),
            Some("yes")
        );
        assert_eq!(
            pgpass(&env, "db.example", 5433, "tasks", "ci").as_deref(),
            Some("fallback")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(pgpass(&env, "db.example", 5432, "tasks", "ci"), None);
        }
    }

    #[test]
    fn the_environment_fills_what_the_url_leaves_out() {
        let env = |k: &str| match k {
            "PGHOST" => Some("pg.internal".to_string()),
            "PGPORT" => Some("6543".to_string()),
            "PGUSER" => Some("ci".to_string()),
            "PGPASSWORD" => Some("hunter2".to_string()),
            _ => None,
        };
        let e = endpoint(&PgUrl::parse("postgres:///tasks").unwrap(), &env, "plan").unwrap();
        assert_eq!(e.shown, "ci@pg.internal:6543/tasks");
        assert_eq!(e.password_from, "PGPASSWORD");
        assert!(e.tls.is_some(), "prefer by default");
        let e = endpoint(
            &PgUrl::parse("postgres://u@h/db?sslmode=disable").unwrap(),
            &env,
            "plan",
        )
        .unwrap();
        assert!(e.tls.is_none());
        let err = endpoint(
            &PgUrl::parse("postgres://u@h/db?sslmode=verify-full").unwrap(),
            &|_| None,
            "plan",
        )
        .err()
        .unwrap();
        assert!(err.contains("sslrootcert"), "{err}");
    }
}
