//! Hot-loading from a watched components directory (`GATEWAY_COMPONENTS_DIR`).
//!
//! A file named `<slot>.wasm` (e.g. `rate-limiter.wasm`) is loaded into that slot when it
//! appears or changes, and once at start. Writes are debounced (a burst of file events
//! for one file makes one load), a file whose hash is already live is skipped, and a
//! candidate that fails any check is logged and never goes live; the old version keeps
//! serving. Other files are ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::Policies;
use super::slot_kind::SlotKind;
use super::version::sha256_hex;

/// Quiet period after the last file event before a file is loaded.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the directory watched while alive.
pub struct ComponentsWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// The slot a file is meant for, from its name.
pub fn slot_for_path(path: &Path) -> Option<SlotKind> {
    if path.extension()? != "wasm" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// Load every `<slot>.wasm` already in `dir`, then watch it for changes.
pub fn watch_components_dir(
    dir: &Path,
    policies: Arc<Policies>,
) -> anyhow::Result<ComponentsWatcher> {
    if !dir.is_dir() {
        anyhow::bail!(
            "components directory {} does not exist or is not a directory",
            dir.display()
        );
    }
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify())
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let initial: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    thread::Builder::new()
        .name("components-watch".into())
        .spawn(move || {
            for path in initial {
                load_file(&path, &policies);
            }
            while let Ok(first) = rx.recv() {
                let mut batch = BTreeSet::from([first]);
                while let Ok(more) = rx.recv_timeout(DEBOUNCE) {
                    batch.insert(more);
                }
                for path in batch {
                    load_file(&path, &policies);
                }
            }
        })?;
    tracing::info!(dir = %dir.display(), "watching components directory");
    Ok(ComponentsWatcher { _watcher: watcher })
}

fn load_file(path: &Path, policies: &Policies) {
    let Some(kind) = slot_for_path(path) else {
        return;
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not read component file");
            return;
        }
    };
    let slot = policies.slot(kind);
    if slot.current().sha256() == sha256_hex(&bytes) {
        return;
    }
    match slot.load(&bytes, &format!("file:{}", path.display())) {
        Ok(info) => {
            tracing::info!(slot = %kind, sha256 = %info.sha256, path = %path.display(), "loaded component from directory")
        }
        Err(e) => {
            tracing::error!(slot = %kind, path = %path.display(), error = %e, "component from directory refused; previous version keeps serving")
        }
    }
}
