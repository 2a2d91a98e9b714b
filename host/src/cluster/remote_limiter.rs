//! The remote limiter: in cluster mode a host asks the link holder's limiter slot instead
//! of its own, so a user's bucket has one owner and a user cannot multiply their rate by
//! the number of hosts.
//!
//! A NATS request on `gateway.limit`, answered by the holder's command server. No holder
//! (NATS answers "no responders" at once), no answer within `request_timeout`, or NATS
//! unreachable: [`LimiterUnavailable`], which the HTTP handler answers
//! `503 limiter_unavailable` with `Retry-After` (the command is not queued, like any
//! refusal before the queue).

use std::time::Duration;

use async_nats::Client;
use async_nats::client::RequestErrorKind;

use super::Nats;
use super::command_wire::{BUSY_ANSWER, LIMIT_SUBJECT, LimitAnswer, LimitRequest};
use super::config::ClusterSettings;

/// Why the holder's limiter gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimiterUnavailable {
    #[error("no host holds the upstream link")]
    NoHolder,
    #[error("the link holder did not answer within {0:?}")]
    Timeout(Duration),
    #[error("NATS request failed: {0}")]
    Nats(String),
    #[error("the link holder's answer was not understood: {0}")]
    BadAnswer(String),
    #[error("the link holder is answering too many rate requests at once")]
    Busy,
}

/// Asks the link holder's limiter slot. Cheap to clone.
#[derive(Clone)]
pub struct RemoteLimiter {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for RemoteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLimiter")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RemoteLimiter {
    /// A limiter asking over `nats`, each request bounded by `settings.request_timeout`.
    pub fn new(nats: &Nats, settings: &ClusterSettings) -> RemoteLimiter {
        RemoteLimiter {
            client: nats.client.clone(),
            timeout: settings.request_timeout,
        }
    }

    /// The holder's verdict on `request`.
    pub async fn check(&self, request: &LimitRequest) -> Result<LimitAnswer, LimiterUnavailable> {
        let payload = serde_json::to_vec(request)
            .map_err(|e| LimiterUnavailable::BadAnswer(e.to_string()))?;
        let asked = self.client.request(LIMIT_SUBJECT, payload.into());
        let message = match tokio::time::timeout(self.timeout, asked).await {
            Err(_) => return Err(LimiterUnavailable::Timeout(self.timeout)),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => LimiterUnavailable::NoHolder,
                    RequestErrorKind::TimedOut => LimiterUnavailable::Timeout(self.timeout),
                    _ => LimiterUnavailable::Nats(e.to_string()),
                });
            }
            Ok(Ok(m)) => m,
        };
        if message.payload.as_ref() == BUSY_ANSWER {
            return Err(LimiterUnavailable::Busy);
        }
        serde_json::from_slice(&message.payload)
            .map_err(|e| LimiterUnavailable::BadAnswer(e.to_string()))
    }
}
