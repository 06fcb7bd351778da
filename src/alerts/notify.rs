//! Transitions, their webhook payload, the signature, and one delivery
//! attempt. A transition is written to the rule's state (the outbox)
//! before anything is sent; each channel's delivery is retried with
//! exponential back-off until the receiver answers 2xx or a day has
//! passed. Receivers de-duplicate on `notificationId`: a delivery whose
//! answer was lost (a timeout, a crash) is sent again with the same id
//! and the same body.

use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::allow::AllowList;
use super::rule::Condition;
use super::source::Dimensions;
use super::state::{AlertState, Notice};
use super::timestamp;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Metricstore-Signature";
/// How long one attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 300_000;
/// Deliveries still failing this long after the transition are given up.
pub const GIVE_UP_AFTER_MS: i64 = 86_400_000;

/// One channel's delivery of a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub delivered_ms: Option<i64>,
    pub last_error: Option<String>,
    pub given_up: bool,
}

impl Delivery {
    pub fn done(&self) -> bool {
        self.delivered_ms.is_some() || self.given_up
    }
}

/// A change of a group's state, as stored (outbox and history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub notification_id: uuid::Uuid,
    pub seq: u64,
    pub workspace_id: String,
    pub rule_id: uuid::Uuid,
    pub rule_name: String,
    pub rule_description: Option<String>,
    pub condition: Condition,
    pub group: Option<Dimensions>,
    pub previous_state: AlertState,
    pub state: AlertState,
    /// What it notifies: `firing`, `resolved`, or nothing (`pending`,
    /// `nodata`, ... are recorded only).
    pub notice: Option<Notice>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub at_ms: i64,
    pub active_ms: Option<i64>,
    pub fired_ms: Option<i64>,
    /// Not sent: the rule was silenced.
    pub silenced: bool,
    pub deliveries: Vec<Delivery>,
}

impl Transition {
    pub fn delivered(&self) -> bool {
        self.deliveries.iter().all(Delivery::done)
    }

    /// The webhook body: the same bytes for every attempt.
    pub fn payload(&self) -> Vec<u8> {
        let status = match self.notice {
            Some(Notice::Firing) => "firing",
            _ => "resolved",
        };
        let body = serde_json::json!({
            "notificationId": self.notification_id,
            "status": status,
            "state": self.state.name(),
            "previousState": self.previous_state.name(),
            "workspaceId": self.workspace_id,
            "rule": {
                "id": self.rule_id,
                "name": self.rule_name,
                "description": self.rule_description,
                "condition": self.condition,
            },
            "group": self.group,
            "value": self.value,
            "threshold": self.threshold,
            "startsAt": self.active_ms.or(self.fired_ms).map(timestamp),
            "firedAt": self.fired_ms.map(timestamp),
            "endsAt": (status == "resolved").then(|| timestamp(self.at_ms)),
            "evaluatedAt": timestamp(self.at_ms),
        });
        serde_json::to_vec(&body).expect("serialisable")
    }

    /// As history shows it (no secrets).
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("serialisable");
        if let Some(o) = v.as_object_mut() {
            for key in ["atMs", "activeMs", "firedMs", "seq"] {
                o.remove(key);
            }
            o.insert("at".into(), timestamp(self.at_ms).into());
            o.insert("activeAt".into(), self.active_ms.map(timestamp).into());
            o.insert("firedAt".into(), self.fired_ms.map(timestamp).into());
            if let Some(serde_json::Value::Array(ds)) = o.get_mut("deliveries") {
                for (d, src) in ds.iter_mut().zip(&self.deliveries) {
                    if let Some(d) = d.as_object_mut() {
                        d.remove("secret");
                        d.remove("nextAttemptMs");
                        d.remove("deliveredMs");
                        d.insert("deliveredAt".into(), src.delivered_ms.map(timestamp).into());
                        d.insert(
                            "nextAttemptAt".into(),
                            (!src.done()).then(|| timestamp(src.next_attempt_ms)).into(),
                        );
                    }
                }
            }
        }
        v
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The delay before attempt `attempts + 1`.
pub fn backoff_ms(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(20);
    (FIRST_BACKOFF_MS << shift).min(MAX_BACKOFF_MS)
}

/// Sends `body` to `url` once; `Err` says why it did not land. The host
/// is checked against the allow-list again (the list or DNS may have
/// changed since the rule was saved), and the connection goes to the
/// addresses checked; redirects are not followed.
pub async fn send(
    allow: &AllowList,
    url: &str,
    secret: &str,
    notification_id: uuid::Uuid,
    body: &[u8],
) -> Result<(), String> {
    // The whole attempt, name lookup included, within TIMEOUT: the
    // evaluator counts on it to finish inside its lease.
    tokio::time::timeout(
        TIMEOUT,
        send_once(allow, url, secret, notification_id, body),
    )
    .await
    .unwrap_or_else(|_| Err(format!("timed out after {} s", TIMEOUT.as_secs())))
}

async fn send_once(
    allow: &AllowList,
    url: &str,
    secret: &str,
    notification_id: uuid::Uuid,
    body: &[u8],
) -> Result<(), String> {
    let pinned = allow.resolve_checked(url).await?;
    // No proxy: a proxy from the environment would connect to addresses
    // the allow-list never checked.
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Some((host, addrs)) = &pinned {
        builder = builder.resolve_to_addrs(host, addrs);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("metricstore/", env!("CARGO_PKG_VERSION")),
        )
        .header(SIGNATURE_HEADER, signature(secret, body))
        .header("X-Metricstore-Notification-Id", notification_id.to_string())
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("timed out after {} s", TIMEOUT.as_secs())
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_documented() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backs_off_exponentially() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(40), MAX_BACKOFF_MS);
    }
}
