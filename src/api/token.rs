//! Opaque pagination tokens, bound to the request they came from.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(payload))`;
//! the payload holds the position and a digest of the request (route,
//! tenant, body without the token). Replayed with another body or another
//! skill, or altered, a token is rejected.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use ring::hmac;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer")
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Digest of the request the token belongs to.
    r: String,
    /// Position: one offset per query (or one for a list).
    o: Vec<u64>,
}

impl Signer {
    /// A key derived from a secret the servers of one deployment share, so
    /// a token from one instance works on another.
    pub fn from_secret(secret: &str) -> Self {
        let material = digest(
            &SHA256,
            format!("metricstore pagination tokens\0{secret}").as_bytes(),
        );
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, material.as_ref()),
        }
    }

    /// A digest naming a request.
    pub fn request_digest(parts: &[&str]) -> String {
        let joined = parts.join("\0");
        URL_SAFE_NO_PAD.encode(&digest(&SHA256, joined.as_bytes()).as_ref()[..16])
    }

    pub fn sign(&self, request: &str, offsets: Vec<u64>) -> String {
        let payload = serde_json::to_vec(&Payload {
            r: request.to_string(),
            o: offsets,
        })
        .expect("serialisable");
        let tag = hmac::sign(&self.key, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The offsets of a token made for `request`; `None` if it was made for
    /// another request, altered, or is not a token at all.
    pub fn verify(&self, request: &str, token: &str) -> Option<Vec<u64>> {
        if token.len() > 4096 {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, &payload, &tag).ok()?;
        let p: Payload = serde_json::from_slice(&payload).ok()?;
        (p.r == request).then_some(p.o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_and_tamper_proof() {
        let s = Signer::from_secret("k");
        let r = Signer::request_digest(&["skill-a", "{}"]);
        let t = s.sign(&r, vec![100, 0]);
        assert_eq!(s.verify(&r, &t), Some(vec![100, 0]));
        assert_eq!(
            s.verify(&Signer::request_digest(&["skill-b", "{}"]), &t),
            None
        );
        assert_eq!(Signer::from_secret("other").verify(&r, &t), None);
        let mut bad = t.clone();
        bad.insert(3, 'x');
        assert_eq!(s.verify(&r, &bad), None);
        assert_eq!(s.verify(&r, "garbage"), None);
        assert_eq!(s.verify(&r, ""), None);
    }
}
