//! Endpoint URLs: the host a request names, as signatures and plans record it.

/// The Host header as reqwest sends it: the host, with the port when it is not the
/// scheme's default.
pub fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The host of an endpoint URL (with a non-default port), if it parses.
pub fn endpoint_host(endpoint: Option<&str>) -> Option<String> {
    let url = reqwest::Url::parse(endpoint?).ok()?;
    Some(host_header(&url))
}
