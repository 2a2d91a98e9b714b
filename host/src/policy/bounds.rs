//! Bounds on what a component may answer.
//!
//! A component's output flows into host memory and onto the wire (topics index the SSE
//! hub, payloads are written to every subscriber, field errors go back to callers), so
//! each is bounded. An answer over a bound is a failed call like a trap: counted, the
//! instance discarded, and the slot's failure policy answers instead. The bounds are
//! [`RuntimeLimits`] fields (`[policy.limits]`).

use super::bindings::types::{FieldError, Route};
use super::limits::RuntimeLimits;

/// An answer over one of the [`OutputLimits`]; names what was over.
#[derive(Debug, thiserror::Error)]
#[error("component output over its bound: {what} is {actual} (limit {limit})")]
pub struct OutputBound {
    pub what: &'static str,
    pub actual: usize,
    pub limit: usize,
}

fn check(what: &'static str, actual: usize, limit: usize) -> Result<(), OutputBound> {
    if actual > limit {
        return Err(OutputBound {
            what,
            actual,
            limit,
        });
    }
    Ok(())
}

impl RuntimeLimits {
    /// A router's answer.
    pub fn check_route(&self, route: &Route) -> Result<(), OutputBound> {
        let Route::Deliver(d) = route else {
            return Ok(());
        };
        check("the topic count", d.topics.len(), self.max_topics)?;
        let longest = d.topics.iter().map(String::len).max().unwrap_or(0);
        check("a topic's length", longest, self.max_topic_bytes)?;
        let payload = d.payload.as_ref().map_or(0, String::len);
        check("the payload's size", payload, self.max_payload_bytes)
    }

    /// A validator's list of field errors.
    pub fn check_field_errors(&self, errors: &[FieldError]) -> Result<(), OutputBound> {
        check("the field error count", errors.len(), self.max_field_errors)?;
        let longest = errors
            .iter()
            .map(|e| e.field.len() + e.code.len() + e.message.len())
            .max()
            .unwrap_or(0);
        check("a field error's size", longest, self.max_field_error_bytes)
    }

    /// A voice filter's guild id.
    pub fn check_guild_id(&self, guild: &str) -> Result<(), OutputBound> {
        check(
            "the guild id's length",
            guild.len(),
            self.max_guild_id_bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::Delivery;

    fn deliver(topics: Vec<String>, payload: Option<String>) -> Route {
        Route::Deliver(Delivery { topics, payload })
    }

    #[test]
    fn route_bounds() {
        let l = RuntimeLimits::default();
        assert!(l.check_route(&Route::Drop).is_ok());
        assert!(
            l.check_route(&deliver(vec!["guild:1".into()], None))
                .is_ok()
        );
        let many = (0..65).map(|i| format!("t:{i}")).collect();
        assert_eq!(
            l.check_route(&deliver(many, None)).map_err(|e| e.what),
            Err("the topic count")
        );
        assert!(
            l.check_route(&deliver(vec!["x".repeat(257)], None))
                .is_err()
        );
        assert!(
            l.check_route(&deliver(vec![], Some("x".repeat(256 * 1024 + 1))))
                .is_err()
        );
    }
}
