//! Credentials, from the environment only, and the headers they add to a request.
//!
//! In order of preference:
//! 1. `TASKFORM_AUTH_TOKEN`: sent as `X-Auth-Token`;
//! 2. `HW_ACCESS_KEY` + `HW_SECRET_KEY` (+ `HW_SECURITY_TOKEN`): `SDK-HMAC-SHA256`
//!    signing (see [`crate::remote::signer`]). As Huawei's SDK does
//!    (`core/auth/basic_credentials.go`, `core/auth/signer/signer.go`), a signed request
//!    carries `X-Project-Id` with the project, and every header taskform sets is signed:
//!    `content-type`, `host`, `workspace`, `x-project-id`, `x-sdk-date` (and
//!    `x-security-token`);
//! 3. `HW_USER_NAME` + `HW_PASSWORD` + `HW_DOMAIN_NAME`: an IAM token from
//!    `POST {iam}/v3/auth/tokens`, cached until shortly before it expires; a 401
//!    drops it ([`Authenticator::forget_refused`]) and the client asks for a new one once.
//!
//! Secret values are wrapped in [`Secret`], whose `Debug` and `Display` print `***`,
//! so no log line or error message can carry them.

use crate::remote::signer;
use std::fmt;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A value that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for building a request. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which credential is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Token(Secret),
    AkSk {
        access_key: String,
        secret_key: Secret,
        security_token: Option<Secret>,
    },
    Password {
        user: String,
        password: Secret,
        domain: String,
        iam_endpoint: String,
    },
}

impl Credentials {
    /// Reads credentials from the environment; `region` gives the IAM endpoint when
    /// `TASKFORM_IAM_ENDPOINT` is not set.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        region: Option<&str>,
    ) -> Result<Credentials, crate::remote::Error> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(t) = get("TASKFORM_AUTH_TOKEN") {
            return Ok(Credentials::Token(Secret::new(t)));
        }
        match (get("HW_ACCESS_KEY"), get("HW_SECRET_KEY")) {
            (Some(ak), Some(sk)) => {
                return Ok(Credentials::AkSk {
                    access_key: ak,
                    secret_key: Secret::new(sk),
                    security_token: get("HW_SECURITY_TOKEN").map(Secret::new),
                });
            }
            (Some(_), None) => {
                return Err(crate::remote::Error::Credentials(
                    "HW_ACCESS_KEY is set but HW_SECRET_KEY is not; set both for AK/SK signing"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(crate::remote::Error::Credentials(
                    "HW_SECRET_KEY is set but HW_ACCESS_KEY is not; set both for AK/SK signing"
                        .into(),
                ));
            }
            (None, None) => {}
        }
        let (user, password, domain) = (
            get("HW_USER_NAME"),
            get("HW_PASSWORD"),
            get("HW_DOMAIN_NAME"),
        );
        if user.is_some() || password.is_some() {
            let (Some(user), Some(password), Some(domain)) = (user, password, domain) else {
                return Err(crate::remote::Error::Credentials("IAM password authentication needs HW_USER_NAME, HW_PASSWORD and HW_DOMAIN_NAME together".into()));
            };
            let iam_endpoint = match (get("TASKFORM_IAM_ENDPOINT"), region) {
                (Some(e), _) => e.trim_end_matches('/').to_string(),
                (None, Some(r)) => format!("https://iam.{r}.myhuaweicloud.com"),
                (None, None) => return Err(crate::remote::Error::Credentials("IAM password authentication needs the IAM endpoint: set TASKFORM_IAM_ENDPOINT, or a region (--region / HW_REGION_NAME)".into())),
            };
            return Ok(Credentials::Password {
                user,
                password: Secret::new(password),
                domain,
                iam_endpoint,
            });
        }
        Err(crate::remote::Error::Credentials("no credentials: set TASKFORM_AUTH_TOKEN, or HW_ACCESS_KEY and HW_SECRET_KEY, or HW_USER_NAME, HW_PASSWORD and HW_DOMAIN_NAME".into()))
    }

    /// The credential's kind, for messages (never its value).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Token(_) => "the token in TASKFORM_AUTH_TOKEN",
            Credentials::AkSk {
                security_token: Some(_),
                ..
            } => "the temporary AK/SK in HW_ACCESS_KEY/HW_SECRET_KEY/HW_SECURITY_TOKEN",
            Credentials::AkSk { .. } => "the AK/SK in HW_ACCESS_KEY/HW_SECRET_KEY",
            Credentials::Password { .. } => "the IAM password login of HW_USER_NAME",
        }
    }
}

/// The header Huawei's SDK adds to every AK/SK-signed request, with the project ID.
pub const PROJECT_HEADER: &str = "X-Project-Id";

/// Adds authentication to requests; caches IAM tokens.
pub struct Authenticator {
    creds: Credentials,
    project_id: String,
    http: reqwest::Client,
    cached: Mutex<Option<(Secret, Instant)>>,
}

/// Why no authentication could be made.
#[derive(Debug, Clone)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Authenticator {
    pub fn new(creds: Credentials, project_id: String, http: reqwest::Client) -> Self {
        Authenticator {
            creds,
            project_id,
            http,
            cached: Mutex::new(None),
        }
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The headers to add to a request of `method` to `url` whose body is `body` and
    /// whose other headers are `Content-Type: content_type`, `Host` and `workspace:
    /// workspace` (all three signed with AK/SK).
    pub async fn headers(
        &self,
        method: &str,
        url: &reqwest::Url,
        content_type: &str,
        workspace: &str,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, AuthError> {
        match &self.creds {
            Credentials::Token(t) => Ok(vec![("X-Auth-Token", t.expose().to_string())]),
            Credentials::Password { .. } => Ok(vec![(
                "X-Auth-Token",
                self.iam_token().await?.expose().to_string(),
            )]),
            Credentials::AkSk {
                access_key,
                secret_key,
                security_token,
            } => {
                let date = signer::sdk_date_now();
                let mut signed = vec![
                    ("content-type".to_string(), content_type.to_string()),
                    ("host".to_string(), crate::endpoint::host_header(url)),
                    ("workspace".to_string(), workspace.to_string()),
                    (PROJECT_HEADER.to_ascii_lowercase(), self.project_id.clone()),
                    ("x-sdk-date".to_string(), date.clone()),
                ];
                if let Some(st) = security_token {
                    signed.push(("x-security-token".to_string(), st.expose().to_string()));
                }
                let req = signer::Request {
                    method,
                    path: url.path(),
                    query: url.query(),
                    headers: &signed,
                    body,
                };
                let mut out = vec![
                    (PROJECT_HEADER, self.project_id.clone()),
                    (signer::DATE_HEADER, date.clone()),
                    (
                        "Authorization",
                        signer::authorization(access_key, secret_key.expose(), &req, &date),
                    ),
                ];
                if let Some(st) = security_token {
                    out.push(("X-Security-Token", st.expose().to_string()));
                }
                Ok(out)
            }
        }
    }

    /// After a 401 to a request that carried the IAM token `sent`: forgets it if it is
    /// still the cached one (requests in flight with it do not make a token fetched
    /// since be dropped). True with IAM password credentials: the request is worth one
    /// more try, with the token cached now or a new one.
    pub async fn forget_refused(&self, sent: &Secret) -> bool {
        if !matches!(self.creds, Credentials::Password { .. }) {
            return false;
        }
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == sent) {
            *cached = None;
        }
        true
    }

    async fn iam_token(&self) -> Result<Secret, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some((tok, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(tok.clone());
        }
        let Credentials::Password {
            user,
            password,
            domain,
            iam_endpoint,
        } = &self.creds
        else {
            return Err(AuthError("not using IAM password authentication".into()));
        };
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password.expose(), "domain": {"name": domain}}}},
            "scope": {"project": {"id": self.project_id}}
        }});
        let url = format!("{iam_endpoint}/v3/auth/tokens");
        let resp = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .send()
            .await
            .map_err(|e| {
                AuthError(format!(
                    "cannot reach IAM at {url}: {}",
                    crate::remote::error_chain(&e)
                ))
            })?;
        let status = resp.status();
        let token = resp
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let detail = crate::remote::api::parse_error(&text)
                .map(|e| format!("{}: {}", e.error_code, e.error_msg))
                .unwrap_or_default();
            return Err(AuthError(format!(
                "IAM refused the password login of HW_USER_NAME (HTTP {}) {detail}",
                status.as_u16()
            )));
        }
        let Some(token) = token else {
            return Err(AuthError(
                "IAM answered without an X-Subject-Token header".into(),
            ));
        };
        let expires = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/token/expires_at")
                    .and_then(|e| e.as_str())
                    .map(str::to_string)
            })
            .and_then(|s| crate::clock::parse_rfc3339(&s))
            .map(|t| (t - time::OffsetDateTime::now_utc()).whole_seconds().max(0) as u64)
            .unwrap_or(3600);
        // Renew five minutes early (or halfway for short-lived tokens).
        let ttl = Duration::from_secs(if expires > 600 {
            expires - 300
        } else {
            expires / 2
        });
        let secret = Secret::new(token);
        *cached = Some((secret.clone(), Instant::now() + ttl));
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn precedence_and_incomplete_sets() {
        let c = Credentials::from_env(
            &env_of(&[
                ("TASKFORM_AUTH_TOKEN", "t"),
                ("HW_ACCESS_KEY", "a"),
                ("HW_SECRET_KEY", "s"),
            ]),
            None,
        )
        .unwrap();
        assert!(matches!(c, Credentials::Token(_)));
        let c = Credentials::from_env(
            &env_of(&[("HW_ACCESS_KEY", "a"), ("HW_SECRET_KEY", "s")]),
            None,
        )
        .unwrap();
        assert!(matches!(c, Credentials::AkSk { .. }));
        assert!(
            Credentials::from_env(&env_of(&[("HW_ACCESS_KEY", "a")]), None)
                .unwrap_err()
                .to_string()
                .contains("HW_SECRET_KEY is not")
        );
        assert!(
            Credentials::from_env(&env_of(&[]), None)
                .unwrap_err()
                .to_string()
                .starts_with("no credentials")
        );
        let c = Credentials::from_env(
            &env_of(&[
                ("HW_USER_NAME", "u"),
                ("HW_PASSWORD", "p"),
                ("HW_DOMAIN_NAME", "d"),
            ]),
            Some("cn-north-4"),
        )
        .unwrap();
        assert!(
            matches!(c, Credentials::Password { ref iam_endpoint, .. } if iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com")
        );
    }

    #[tokio::test]
    async fn aksk_requests_sign_the_project_and_workspace_headers() {
        crate::remote::client::install_crypto_provider();
        let auth = Authenticator::new(
            Credentials::AkSk {
                access_key: "AK".into(),
                secret_key: Secret::new("SK"),
                security_token: None,
            },
            "p-1".into(),
            reqwest::Client::new(),
        );
        let url: reqwest::Url =
            "https://dayu.cn-north-4.myhuaweicloud.com/v3/p-1/metadata/tasks/search"
                .parse()
                .unwrap();
        let h = auth
            .headers("POST", &url, "application/json", "w-1", b"{}")
            .await
            .unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("X-Project-Id").as_deref(), Some("p-1"));
        let authz = get("Authorization").unwrap();
        let parsed = signer::parse_authorization(&authz).unwrap();
        assert_eq!(
            parsed.signed_headers,
            [
                "content-type",
                "host",
                "workspace",
                "x-project-id",
                "x-sdk-date"
            ]
        );
        // The signature covers them: it is the one the emulator recomputes.
        let date = get("X-Sdk-Date").unwrap();
        let signed = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "host".to_string(),
                "dayu.cn-north-4.myhuaweicloud.com".to_string(),
            ),
            ("workspace".to_string(), "w-1".to_string()),
            ("x-project-id".to_string(), "p-1".to_string()),
            ("x-sdk-date".to_string(), date.clone()),
        ];
        let req = signer::Request {
            method: "POST",
            path: url.path(),
            query: None,
            headers: &signed,
            body: b"{}",
        };
        assert_eq!(parsed.signature, signer::signature("SK", &req, &date).0);
        // A token sends no project header.
        let token = Authenticator::new(
            Credentials::Token(Secret::new("t")),
            "p-1".into(),
            reqwest::Client::new(),
        );
        let h = token
            .headers("POST", &url, "application/json", "w-1", b"{}")
            .await
            .unwrap();
        assert_eq!(
            h.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["X-Auth-Token"]
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials::AkSk {
            access_key: "AK".into(),
            secret_key: Secret::new("SUPERSECRET"),
            security_token: Some(Secret::new("TOKENVALUE")),
        };
        let shown = format!("{c:?} {}", c.kind());
        assert!(
            !shown.contains("SUPERSECRET") && !shown.contains("TOKENVALUE"),
            "{shown}"
        );
    }

    #[test]
    fn host_header_keeps_non_default_ports() {
        assert_eq!(
            crate::endpoint::host_header(&"http://127.0.0.1:8080/x".parse().unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(
            crate::endpoint::host_header(
                &"https://dayu.cn-north-4.myhuaweicloud.com/x"
                    .parse()
                    .unwrap()
            ),
            "dayu.cn-north-4.myhuaweicloud.com"
        );
    }
}
