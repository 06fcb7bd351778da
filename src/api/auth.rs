//! Bearer tokens (`METRICSTORE_TOKENS`, see CONTRACT.md) and per-token rate
//! limits. Secrets are compared in constant time (over their SHA-256, so
//! length leaks nothing either) and never logged.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workspaces {
    All,
    Only(Vec<String>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Index of the token in the configuration: the rate-limit key, so the
    /// secret itself is never kept outside the token list.
    pub token_index: usize,
    pub role: Role,
    pub workspaces: Workspaces,
}

impl Principal {
    pub fn covers(&self, workspace: &str) -> bool {
        match &self.workspaces {
            Workspaces::All => true,
            Workspaces::Only(list) => list.iter().any(|w| w == workspace),
        }
    }

    /// 403 unless the token covers `workspace`.
    pub fn require(&self, workspace: &str) -> Result<(), ApiError> {
        if self.covers(workspace) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this token does not grant access to {workspace:?}"
            )))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::Forbidden(
                "this action needs an admin token".into(),
            )),
        }
    }

    /// The workspace a request without one in its path acts on: the
    /// `X-Workspace-Id` header, or the token's only workspace.
    pub fn workspace_from(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if let Some(v) = headers.get("x-workspace-id") {
            let ws = v
                .to_str()
                .map_err(|_| ApiError::bad("INVALID_WORKSPACE", "X-Workspace-Id must be text"))?
                .trim()
                .to_string();
            if ws.is_empty() || ws.len() > 255 {
                return Err(ApiError::bad(
                    "INVALID_WORKSPACE",
                    "X-Workspace-Id must be 1 to 255 characters",
                ));
            }
            self.require(&ws)?;
            return Ok(ws);
        }
        match &self.workspaces {
            Workspaces::Only(list) if list.len() == 1 => Ok(list[0].clone()),
            _ => Err(ApiError::bad(
                "MISSING_WORKSPACE",
                "this token covers several workspaces: name one in the X-Workspace-Id header",
            )),
        }
    }
}

struct Token {
    hash: [u8; 32],
    role: Role,
    workspaces: Workspaces,
}

/// The limiter's key of presented tokens that match none.
const GUESSES: usize = usize::MAX;

/// The configured tokens and their rate limiter.
pub struct Auth {
    tokens: Vec<Token>,
    limiter: Option<DefaultKeyedRateLimiter<usize>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({} tokens)", self.tokens.len())
    }
}

fn hash(secret: &str) -> [u8; 32] {
    let d = digest(&SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Auth {
    /// Parses `SECRET:ROLE:WORKSPACES,...`. `rate` is requests per second
    /// per token (0 disables the limit); bursts of up to `burst` pass.
    pub fn parse(spec: &str, rate: u32, burst: u32) -> Result<Arc<Self>, String> {
        let mut tokens = Vec::new();
        for (i, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let mut parts = entry.splitn(3, ':');
            let (secret, role, ws) = match (parts.next(), parts.next(), parts.next()) {
                (Some(s), Some(r), Some(w)) => (s, r, w),
                _ => {
                    return Err(format!(
                        "METRICSTORE_TOKENS entry {}: expected SECRET:ROLE:WORKSPACES",
                        i + 1
                    ));
                }
            };
            if secret.len() < 8 {
                return Err(format!(
                    "METRICSTORE_TOKENS entry {}: the secret must be at least 8 characters",
                    i + 1
                ));
            }
            let role = match role {
                "admin" => Role::Admin,
                "viewer" => Role::Viewer,
                other => {
                    return Err(format!(
                        "METRICSTORE_TOKENS entry {}: role {other:?} is not admin or viewer",
                        i + 1
                    ));
                }
            };
            let workspaces = if ws == "*" {
                Workspaces::All
            } else {
                let list: Vec<String> = ws
                    .split('|')
                    .map(str::trim)
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect();
                if list.is_empty() {
                    return Err(format!("METRICSTORE_TOKENS entry {}: no workspaces", i + 1));
                }
                Workspaces::Only(list)
            };
            tokens.push(Token {
                hash: hash(secret),
                role,
                workspaces,
            });
        }
        let limiter = NonZeroU32::new(rate).map(|r| {
            let burst = NonZeroU32::new(burst.max(rate)).expect("burst >= rate > 0");
            RateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        });
        Ok(Arc::new(Self { tokens, limiter }))
    }

    /// 429 once `key` (a token's index, or [`GUESSES`]) is past its rate.
    fn throttle(&self, key: usize) -> Result<(), ApiError> {
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check_key(&key)
        {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::TooManyRequests(wait));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// 401 without a valid bearer token; 429 over the token's rate.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        let secret = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret)
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer TOKEN`".into())
            })?
            .trim();
        let presented = hash(secret);
        // Compare against every token, so timing says nothing about which.
        let mut found: Option<usize> = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.hash.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        let Some(i) = found else {
            // Guesses share one key of the limiter, so a token's rate bounds
            // them all: secrets cannot be tried at line speed.
            self.throttle(GUESSES)?;
            return Err(ApiError::Unauthorized("unknown token".into()));
        };
        self.throttle(i)?;
        let t = &self.tokens[i];
        Ok(Principal {
            token_index: i,
            role: t.role,
            workspaces: t.workspaces.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn unknown_tokens_share_one_rate() {
        let auth = Auth::parse("secret-admin:admin:*", 1, 1).unwrap();
        assert!(matches!(
            auth.authenticate(&headers("guess-one")),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.authenticate(&headers("guess-two")),
            Err(ApiError::TooManyRequests(_))
        ));
        // The real token has its own rate.
        assert!(auth.authenticate(&headers("secret-admin")).is_ok());
    }

    #[test]
    fn parses_and_authenticates() {
        let auth = Auth::parse("secret-admin:admin:*, secret-view:viewer:a|b", 0, 0).unwrap();
        let p = auth.authenticate(&headers("secret-view")).unwrap();
        assert_eq!(p.role, Role::Viewer);
        assert!(p.covers("a") && p.covers("b") && !p.covers("c"));
        assert!(
            auth.authenticate(&headers("secret-admin"))
                .unwrap()
                .covers("anything")
        );
        assert!(matches!(
            auth.authenticate(&headers("wrong-secret")),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            auth.authenticate(&HeaderMap::new()),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(Auth::parse("short:admin:*", 0, 0).is_err());
        assert!(Auth::parse("long-enough:root:*", 0, 0).is_err());
        assert!(Auth::parse("long-enough:admin", 0, 0).is_err());
        assert!(Auth::parse("long-enough:admin:", 0, 0).is_err());
    }

    #[test]
    fn rate_limits_per_token() {
        let auth = Auth::parse("secret-one:admin:*,secret-two:admin:*", 1, 2).unwrap();
        assert!(auth.authenticate(&headers("secret-one")).is_ok());
        assert!(auth.authenticate(&headers("secret-one")).is_ok());
        assert!(matches!(
            auth.authenticate(&headers("secret-one")),
            Err(ApiError::TooManyRequests(_))
        ));
        assert!(auth.authenticate(&headers("secret-two")).is_ok());
    }
}
