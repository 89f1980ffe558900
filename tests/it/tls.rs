//! Transport security: certificates are always verified on https, `--ca-bundle` adds a
//! private CA, and plain http goes only to loopback unless explicitly allowed.

use crate::common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::io::{Read, Write};
use std::sync::Arc;

/// A CA, and an HTTPS server for `localhost` with a certificate the CA signed, that
/// answers every request with a created task.
fn https_server(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut stream = stream;
                let mut tls = rustls::Stream::new(&mut conn, &mut stream);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers and the body (Content-Length), then answer.
                loop {
                    let Ok(n) = tls.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let body = "{\"task_id\":\"0123456789abcdef0123456789abcdef\"}";
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
            });
        }
    });
    (format!("https://localhost:{port}"), ca_path)
}

#[test]
fn certificates_are_verified_and_a_private_ca_can_be_added() {
    let p = Project::new();
    p.task("a");
    let (url, ca) = https_server(p.dir.path());
    // An unknown CA is refused.
    let out = p.apply(&url, &["--max-attempts", "1"]);
    out.fails_with(1);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    assert!(
        !p.path("state/taskform.json").exists() || p.state().get("in_doubt").is_none(),
        "a failed handshake sent nothing"
    );
    p.apply(&url, &["--ca-bundle", ca.to_str().unwrap()])
        .succeeds();
    assert_eq!(
        p.state()["tasks"]["a"]["task_id"],
        "0123456789abcdef0123456789abcdef"
    );
    p.run(&["plan", "tasks"], &[]).stdout_has("No changes.");
    // TASKFORM_CA_BUNDLE works the same; a file that is no bundle is an error.
    p.write("bad.pem", "not a certificate");
    p.run(
        &["apply", "--yes", "tasks", "--endpoint", &url],
        &[
            ("TASKFORM_AUTH_TOKEN", TOKEN),
            ("TASKFORM_CA_BUNDLE", "bad.pem"),
        ],
    )
    .fails_with(1)
    .stderr_has("the CA bundle bad.pem holds no certificate");
}

#[test]
fn plain_http_is_refused_off_loopback_unless_allowed() {
    let p = Project::new();
    p.task("a");
    p.apply("http://192.0.2.10:8080", &[])
        .fails_with(1)
        .stderr_has("refusing plain http:// for the endpoint http://192.0.2.10:8080/");
    assert!(
        !p.path("state/taskform.json").exists(),
        "refused before anything"
    );
    p.run(
        &[
            "apply",
            "--yes",
            "tasks",
            "--endpoint",
            "http://192.0.2.10:8080",
        ],
        &[
            ("HW_USER_NAME", "u"),
            ("HW_PASSWORD", "p"),
            ("HW_DOMAIN_NAME", "d"),
            ("TASKFORM_IAM_ENDPOINT", "http://192.0.2.11"),
        ],
    )
    .stderr_has("refusing plain http:// for the");
}
