//! The signatures the services define:
//!
//! - generic (Flux's `generic-hmac`): `X-Signature: sha256=<hex HMAC-SHA256 of the
//!   exact body, keyed with the secret>`;
//! - Feishu/Lark custom bot: `timestamp` (seconds) and `sign` in the body, where `sign`
//!   is the Base64 of HMAC-SHA256 keyed with `timestamp + "\n" + secret` over nothing;
//! - DingTalk custom robot: `timestamp` (milliseconds) and `sign` in the query, where
//!   `sign` is the URL-encoded Base64 of HMAC-SHA256 keyed with the secret over
//!   `timestamp + "\n" + secret`.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// `sha256=<hex>` of `body` (the generic receiver's `X-Signature`).
pub fn generic(secret: &str, body: &[u8]) -> String {
    let mac = hmac(secret.as_bytes(), body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Feishu's `sign` for `timestamp` (Unix seconds).
pub fn feishu(secret: &str, timestamp: u64) -> String {
    let key = format!("{timestamp}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac(key.as_bytes(), b""))
}

/// DingTalk's `sign` for `timestamp` (Unix milliseconds), URL-encoded for the query.
pub fn dingtalk(secret: &str, timestamp_ms: u64) -> String {
    let text = format!("{timestamp_ms}\n{secret}");
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(hmac(secret.as_bytes(), text.as_bytes()));
    percent_encoding::utf8_percent_encode(&b64, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers, computed apart with Python's hmac, hashlib, base64 and
    /// urllib.parse.quote_plus, as the services' documentation shows.
    #[test]
    fn signatures_match_an_independent_implementation() {
        assert_eq!(
            generic("secret", b"{\"a\":1}"),
            "sha256=aa9e2e3575f5d7098b6caccd790888c36d5fdb63342a73bada2d6a51747a8494"
        );
        assert_eq!(
            feishu("demo", 1599360473),
            "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
        );
        assert_eq!(
            dingtalk("demo", 1599360473000),
            "eblRZvilBzXa6Ce18IeBM4pMy1rYNWKicaCg6VMwQe0%3D"
        );
    }
}
