//! The Discord session state file: the session id, the `resume_gateway_url` and the last
//! seq, kept on disk so a restarted host **resumes** its Discord session (Discord replays
//! what was dispatched while the host was down) instead of identifying afresh and losing
//! those events. The sibling of link mode's `GATEWAY_LINK_STATE_FILE` (`link::state_file`)
//! with the same guarantees, plus the resume URL Discord requires for a resume.
//!
//! * Written atomically (a temporary sibling, synced, renamed over the file) off the
//!   session task, at most once per interval while events flow, and once more with the
//!   final seq on a clean shutdown (which then closes the gateway with a resumable code,
//!   not 1000, since 1000 would make Discord end the session).
//! * Read bounded ([`MAX_BYTES`]); an unreadable, oversized or corrupt file is an error
//!   naming the file and the reason, logged at `error`, and the host identifies afresh
//!   (it never resumes a session it cannot trust). After a crash the file may be one
//!   interval behind: Discord replays those events again (at-least-once across a crash;
//!   exactly-once across a clean restart).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Largest state file read (a valid one is ~200 bytes).
pub const MAX_BYTES: u64 = 64 * 1024;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Saved {
    /// Format version (1).
    pub v: u8,
    /// The Discord session (`session_id` of Ready).
    pub session_id: String,
    /// Where to resume it (`resume_gateway_url` of Ready).
    pub resume_url: String,
    /// The last seq published to the bus.
    pub last_seq: u64,
}

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read the Discord state file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the Discord state file {0} is larger than {MAX_BYTES} bytes")]
    TooLarge(PathBuf),
    #[error("the Discord state file {0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
}

/// Reads `path`: `Ok(None)` when absent, an error when unusable.
pub fn read(path: &Path) -> Result<Option<Saved>, StateFileError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateFileError::Read(path.into(), e)),
    };
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| StateFileError::Read(path.into(), e))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(StateFileError::TooLarge(path.into()));
    }
    let saved: Saved = serde_json::from_str(&text)
        .map_err(|e| StateFileError::Corrupt(path.into(), e.to_string()))?;
    if saved.v != 1 {
        return Err(StateFileError::Corrupt(
            path.into(),
            format!("unknown format version {}", saved.v),
        ));
    }
    if saved.session_id.is_empty() || saved.last_seq == 0 {
        return Err(StateFileError::Corrupt(
            path.into(),
            "empty session id or seq 0".into(),
        ));
    }
    if !(saved.resume_url.starts_with("ws://") || saved.resume_url.starts_with("wss://")) {
        return Err(StateFileError::Corrupt(
            path.into(),
            "the resume URL is not a ws(s):// URL".into(),
        ));
    }
    Ok(Some(saved))
}

/// The state file of one Discord session task.
#[derive(Debug)]
pub struct StateFile {
    path: Arc<Path>,
    interval: Duration,
    last_write: Option<Instant>,
    written: Option<Saved>,
    in_flight: Option<JoinHandle<()>>,
}

impl StateFile {
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self {
            path: path.into(),
            interval,
            last_write: None,
            written: None,
            in_flight: None,
        }
    }

    /// The saved session, if the file holds a usable one (problems are logged).
    pub fn load(&mut self) -> Option<Saved> {
        match read(&self.path) {
            Ok(Some(saved)) => {
                info!(path = %self.path.display(), session = %saved.session_id, last_seq = saved.last_seq, "Discord state restored: resuming the previous session");
                self.written = Some(saved.clone());
                Some(saved)
            }
            Ok(None) => {
                info!(path = %self.path.display(), "no Discord state file yet: identifying");
                None
            }
            Err(e) => {
                error!(error = %e, "the Discord state file is unusable: identifying afresh");
                None
            }
        }
    }

    /// Saves `saved` if it changed and the interval has passed (non-blocking).
    pub fn save_soon(&mut self, saved: Saved) {
        if self.written.as_ref() == Some(&saved) {
            return;
        }
        let now = Instant::now();
        if self
            .last_write
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            return;
        }
        if self.in_flight.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.last_write = Some(now);
        let path = self.path.clone();
        let text = encode(&saved);
        self.written = Some(saved);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            write_logged(&path, &text)
        }));
    }

    /// Saves `saved` now and waits for the write (clean shutdown).
    pub async fn save_now(&mut self, saved: Saved) {
        if let Some(previous) = self.in_flight.take() {
            let _ = previous.await;
        }
        if self.written.as_ref() == Some(&saved) {
            return;
        }
        let path = self.path.clone();
        let text = encode(&saved);
        self.written = Some(saved);
        let _ = tokio::task::spawn_blocking(move || write_logged(&path, &text)).await;
    }
}

fn encode(saved: &Saved) -> String {
    serde_json::to_string(saved).unwrap_or_default()
}

fn write_logged(path: &Path, text: &str) {
    if let Err(e) = crate::link::state_file::write_atomic(path, text) {
        metrics::counter!("gateway_link_state_write_failures_total").increment(1);
        warn!(path = %path.display(), error = %e, "cannot write the Discord state file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Saved {
        Saved {
            v: 1,
            session_id: "abc".into(),
            resume_url: "ws://127.0.0.1:1/resume-gateway".into(),
            last_seq: 7,
        }
    }

    #[tokio::test]
    async fn round_trip_absent_and_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("discord.json");
        assert!(read(&path).expect("absent is fine").is_none());
        let mut file = StateFile::new(path.clone(), Duration::ZERO);
        file.save_now(saved()).await;
        assert_eq!(read(&path).expect("valid"), Some(saved()));
        std::fs::write(&path, "{\"v\":1,").expect("write");
        let err = read(&path).expect_err("corrupt").to_string();
        assert!(
            err.contains("corrupt") && err.contains("discord.json"),
            "{err}"
        );
        std::fs::write(&path, vec![b' '; MAX_BYTES as usize + 10]).expect("write");
        let err = read(&path).expect_err("too large").to_string();
        assert!(err.contains("larger"), "{err}");
    }
}
