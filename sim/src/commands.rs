//! Command handling: acks, de-duplication by requestId, and the record tests read.
//!
//! The host's command pipeline promises exactly-once delivery by re-sending with the same
//! requestId after a link drop. That promise is only testable if the upstream both
//! de-duplicates (a repeat gets the first answer and causes nothing) and records every
//! frame it received, duplicates included.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use gateway_protocol::{Ack, Command, ErrorCode};

/// How many command outcomes are remembered for de-duplication.
const DEDUPE_CAPACITY: usize = 10_000;
/// How many received commands are kept for inspection.
const RECORD_CAPACITY: usize = 100_000;

/// How acks fail when the fail-acks fault is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// `unavailable`, retryable: a repeat of the same requestId is processed again.
    Retryable,
    /// `forbidden`, final: remembered like a success.
    Fatal,
}

/// One command frame as the simulator received it.
#[derive(Debug, Clone)]
pub struct ReceivedCommand {
    /// When it arrived.
    pub at: Instant,
    /// The command.
    pub command: Command,
    /// True when its requestId had already been answered with a final outcome.
    pub duplicate: bool,
}

/// What to do with a command.
#[derive(Debug)]
pub enum Decision {
    /// Answer with a remembered ack; do nothing else.
    Repeat(Ack),
    /// A new command: fail it with this ack.
    Fail(Ack),
    /// A new command: carry it out (ack and follow-up event built by the caller).
    Execute,
}

/// The record of received commands and remembered outcomes.
#[derive(Default)]
pub struct CommandLog {
    received: VecDeque<ReceivedCommand>,
    outcomes: HashMap<String, Ack>,
    order: VecDeque<String>,
}

impl CommandLog {
    /// Records `command` and decides how to answer it.
    pub fn decide(&mut self, command: &Command, fail: Option<FailMode>) -> Decision {
        let previous = self.outcomes.get(&command.request_id).cloned();
        self.record(command, previous.is_some());
        if let Some(ack) = previous {
            return Decision::Repeat(ack);
        }
        match fail {
            Some(FailMode::Retryable) => Decision::Fail(Ack::failure(
                &command.request_id,
                ErrorCode::Unavailable,
                "simulated upstream outage",
            )),
            Some(FailMode::Fatal) => {
                let ack = Ack::failure(
                    &command.request_id,
                    ErrorCode::Forbidden,
                    "simulated missing permission",
                );
                self.remember(ack.clone());
                Decision::Fail(ack)
            }
            None => Decision::Execute,
        }
    }

    /// Remembers a final outcome so a repeat gets the same answer.
    pub fn remember(&mut self, ack: Ack) {
        if self.order.len() >= DEDUPE_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.outcomes.remove(&old);
        }
        self.order.push_back(ack.request_id.clone());
        self.outcomes.insert(ack.request_id.clone(), ack);
    }

    fn record(&mut self, command: &Command, duplicate: bool) {
        if self.received.len() >= RECORD_CAPACITY {
            self.received.pop_front();
        }
        self.received.push_back(ReceivedCommand {
            at: Instant::now(),
            command: command.clone(),
            duplicate,
        });
    }

    /// Every command received (up to the record bound), oldest first.
    pub fn received(&self) -> Vec<ReceivedCommand> {
        self.received.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_protocol::{CommandBody, TypingStart};

    fn cmd(id: &str) -> Command {
        Command {
            request_id: id.into(),
            trace_id: "t".into(),
            body: CommandBody::TypingStart(TypingStart {
                channel_id: "1".into(),
            }),
        }
    }

    #[test]
    fn repeat_gets_the_first_answer() {
        let mut log = CommandLog::default();
        assert!(matches!(log.decide(&cmd("a"), None), Decision::Execute));
        log.remember(Ack::success("a", serde_json::json!({})));
        assert!(matches!(log.decide(&cmd("a"), None), Decision::Repeat(_)));
        let received = log.received();
        assert_eq!(received.len(), 2);
        assert!(received[1].duplicate);
    }

    #[test]
    fn retryable_failure_is_not_remembered() {
        let mut log = CommandLog::default();
        assert!(matches!(
            log.decide(&cmd("a"), Some(FailMode::Retryable)),
            Decision::Fail(_)
        ));
        assert!(matches!(log.decide(&cmd("a"), None), Decision::Execute));
    }
}
