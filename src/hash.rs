//! Content hash of a task: `sha256:` + hex SHA-256 of the RFC 8785 canonical JSON of the
//! exact request body. Key order, comments, formatting and file location never change
//! it; any change of a value does.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical (RFC 8785) JSON bytes of a body: what apply sends, byte for byte.
pub fn canonical_json(body: &Value) -> Vec<u8> {
    // Serializing a serde_json::Value cannot fail: keys are strings and numbers finite.
    serde_json_canonicalizer::to_vec(body).unwrap_or_else(|_| body.to_string().into_bytes())
}

/// `sha256:<hex>` of the given bytes.
pub fn sha256_tagged(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// [`sha256_tagged`] of bytes given in pieces.
#[derive(Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// `sha256:<hex>` of everything given.
    pub fn tagged(self) -> String {
        format!("sha256:{}", hex(&self.0.finalize()))
    }
}

/// The content hash of a body.
pub fn content_hash(body: &Value) -> String {
    sha256_tagged(&canonical_json(body))
}

/// The canonical text of a body and its content hash, canonicalizing once.
pub fn canonical_and_hash(body: &Value) -> (String, String) {
    let canonical = String::from_utf8(canonical_json(body)).unwrap_or_default();
    let hash = sha256_tagged(canonical.as_bytes());
    (canonical, hash)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_values_do() {
        let a = json!({"name": "t", "task_config": {"a": 1, "b": [1, 2]}});
        let b = json!({"task_config": {"b": [1, 2], "a": 1}, "name": "t"});
        assert_eq!(content_hash(&a), content_hash(&b));
        let c = json!({"task_config": {"b": [2, 1], "a": 1}, "name": "t"});
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn canonical_form_is_rfc8785() {
        let v = json!({"b": 1.0, "a": "é", "c": [true, null]});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"é","b":1,"c":[true,null]}"#.as_bytes()
        );
        assert!(content_hash(&v).starts_with("sha256:"));
        assert_eq!(content_hash(&v).len(), 7 + 64);
    }
}
