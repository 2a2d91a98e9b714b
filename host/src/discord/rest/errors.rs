//! Mapping Discord's REST answers to the command pipeline's outcomes: a 4xx is final
//! (`rejected`, with Discord's JSON error code and message), a 5xx or a transport failure
//! is retryable (the dispatcher backs off and sends again with the same nonce).

use gateway_protocol::ErrorCode;

/// Why a REST request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// Discord refused the request for good.
    #[error("Discord answered {status}: {code} {message}")]
    Rejected {
        status: u16,
        /// Discord's JSON error code (e.g. 50013), 0 when absent.
        code: u64,
        message: String,
    },
    /// Worth trying again later (5xx, transport failure, too many 429s in a row).
    #[error("Discord is unavailable: {0}")]
    Unavailable(String),
}

impl RestError {
    /// The ack error code for the command pipeline.
    pub fn ack_code(&self) -> ErrorCode {
        match self {
            RestError::Unavailable(_) => ErrorCode::Unavailable,
            RestError::Rejected { status, code, .. } => match (status, code) {
                // Unknown Channel / Message / Emoji and friends.
                (_, 10003 | 10008 | 10014) | (404, _) => ErrorCode::NotFound,
                // Missing Access / Missing Permissions, or a refused token.
                (_, 50001 | 50013) | (401 | 403, _) => ErrorCode::Forbidden,
                _ => ErrorCode::InvalidCommand,
            },
        }
    }

    /// The message shown in the `rejected` outcome: names Discord's code.
    pub fn ack_message(&self) -> String {
        match self {
            RestError::Rejected {
                status,
                code,
                message,
            } => format!("discord error {code} (HTTP {status}): {message}"),
            RestError::Unavailable(why) => why.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, code: u64) -> RestError {
        RestError::Rejected {
            status,
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn documented_codes_map_to_outcomes() {
        assert_eq!(rejected(403, 50013).ack_code(), ErrorCode::Forbidden);
        assert_eq!(rejected(404, 10003).ack_code(), ErrorCode::NotFound);
        assert_eq!(rejected(400, 10014).ack_code(), ErrorCode::NotFound);
        assert_eq!(rejected(400, 50035).ack_code(), ErrorCode::InvalidCommand);
        assert!(rejected(403, 50013).ack_message().contains("50013"));
        assert!(RestError::Unavailable("x".into()).ack_code().is_retryable());
    }
}
