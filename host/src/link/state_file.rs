//! The link state file: the upstream session id and the last seq taken, kept on disk so
//! a restarted host resumes its previous upstream session instead of starting at the
//! live edge (and losing whatever the upstream emitted while the host was down).
//!
//! Written atomically (a temporary file in the same directory, synced, then renamed),
//! at most once per `state_interval` while events flow, off the link task (blocking
//! file I/O runs on tokio's blocking pool), and once more with the final seq on a clean
//! shutdown. After a crash the file may be up to one interval behind: the upstream then
//! replays those events again (at-least-once across a crash; exactly-once across a
//! clean restart). An unreadable or corrupt file is logged and ignored (fresh start);
//! a failed write is logged and counted in `gateway_link_state_write_failures_total`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    /// Format version (1).
    pub v: u8,
    /// The upstream session followed.
    pub session_id: String,
    /// The last seq taken from it.
    pub last_seq: u64,
}

/// The state file of one link task.
#[derive(Debug)]
pub struct StateFile {
    path: Arc<Path>,
    interval: Duration,
    last_write: Option<Instant>,
    written: Option<(Arc<str>, u64)>,
    in_flight: Option<JoinHandle<()>>,
}

impl StateFile {
    /// A state file at `path`, written at most once per `interval`.
    pub fn new(path: PathBuf, interval: Duration) -> Self {
        Self {
            path: path.into(),
            interval,
            last_write: None,
            written: None,
            in_flight: None,
        }
    }

    /// Reads the saved position; `None` (logged) when absent or unusable.
    pub fn load(&self) -> Option<Saved> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                info!(path = %self.path.display(), "no link state file yet: starting at the upstream's live edge");
                return None;
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot read the link state file: starting fresh");
                return None;
            }
        };
        match serde_json::from_str::<Saved>(&text) {
            Ok(saved) if saved.v == 1 && !saved.session_id.is_empty() => {
                info!(path = %self.path.display(), session = %saved.session_id, last_seq = saved.last_seq, "link state restored: resuming the previous upstream session");
                Some(saved)
            }
            _ => {
                warn!(path = %self.path.display(), "the link state file is not valid: starting fresh");
                None
            }
        }
    }

    /// Saves the position if it changed and the interval has passed (non-blocking).
    pub fn save_soon(&mut self, session: &Arc<str>, last_seq: u64) {
        if !self.changed(session, last_seq) {
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
        self.written = Some((session.clone(), last_seq));
        let (path, text) = (self.path.clone(), encode(session, last_seq));
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            write_logged(&path, &text)
        }));
    }

    /// Saves the position now and waits for the write (clean shutdown).
    pub async fn save_now(&mut self, session: &Arc<str>, last_seq: u64) {
        if let Some(previous) = self.in_flight.take() {
            let _ = previous.await;
        }
        if !self.changed(session, last_seq) {
            return;
        }
        self.written = Some((session.clone(), last_seq));
        let (path, text) = (self.path.clone(), encode(session, last_seq));
        let _ = tokio::task::spawn_blocking(move || write_logged(&path, &text)).await;
    }

    fn changed(&self, session: &Arc<str>, last_seq: u64) -> bool {
        self.written
            .as_ref()
            .is_none_or(|(s, seq)| s != session || *seq != last_seq)
    }
}

fn encode(session: &str, last_seq: u64) -> String {
    let saved = Saved {
        v: 1,
        session_id: session.to_owned(),
        last_seq,
    };
    serde_json::to_string(&saved).unwrap_or_default()
}

fn write_logged(path: &Path, text: &str) {
    if let Err(e) = write_atomic(path, text) {
        metrics::counter!("gateway_link_state_write_failures_total").increment(1);
        warn!(path = %path.display(), error = %e, "cannot write the link state file");
    }
}

/// Writes `text` to a temporary sibling, syncs it, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_atomically_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("link.json");
        let mut file = StateFile::new(path.clone(), Duration::from_secs(3600));
        assert_eq!(file.load(), None);
        let session: Arc<str> = "s1".into();
        file.save_soon(&session, 5);
        file.save_soon(&session, 6); // within the interval: not written
        file.save_now(&session, 9).await;
        let saved = file.load().expect("saved");
        assert_eq!((saved.session_id.as_str(), saved.last_seq), ("s1", 9));
        assert!(!dir.path().join("link.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("link.json");
        std::fs::write(&path, "{\"v\":1,").expect("write");
        assert_eq!(StateFile::new(path, Duration::from_secs(1)).load(), None);
    }
}
