//! Hot-loading from a watched components directory (`GATEWAY_COMPONENTS_DIR`).
//!
//! A file named `<slot>.wasm` (e.g. `rate-limiter.wasm`) is loaded into that slot when it
//! appears or changes, with the configuration [`resolve_config`] gives it: the optional
//! `<slot>.toml` beside it (a flat `key = value` table), else the config file's slot keys.
//! A change to `<slot>.toml` alone (written or removed) reloads `<slot>.wasm` with the new
//! configuration, so the directory's state after any change is what a restart would give.
//! Writes are debounced (a burst of file events for one slot makes one load), a file whose
//! hash is already live *with the same configuration* is skipped, and other names are
//! ignored. The `.toml` is read with the same checks as the `.wasm` (below), capped at
//! [`super::component_config::MAX_CONFIG_BYTES`].
//!
//! Why the checks: the directory is a door into the process, and whatever is behind a
//! name is read into memory. Only a **regular file** is read: a symlink (`-> /dev/zero`
//! would be read until memory ran out), a FIFO (would block the watcher forever), a device
//! or a directory is refused. A file larger than `max-component-mib` (the admin API's cap)
//! is refused, and the read itself is bounded, so a file that grows while it is read
//! cannot push past the cap. The open does not follow symlinks and does not block, and the
//! opened file is checked again, so swapping the name between check and open gains nothing.
//!
//! At start the directory is loaded **before** the host serves (see
//! [`watch_components_dir`]): a refused file there is a start error naming the file and the
//! reason, never a silent fallback to the embedded defaults. Later, a refused or failing
//! file is logged and the live version keeps serving.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::Policies;
use super::component_config::resolve_config;
use super::slot_kind::SlotKind;
use super::version::sha256_hex;

/// Quiet period after the last file event before a file is loaded.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the directory watched while alive.
pub struct ComponentsWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// The slot a file is meant for, from its name (`<slot>.wasm` or its `<slot>.toml`).
pub fn slot_for_path(path: &Path) -> Option<SlotKind> {
    let ext = path.extension()?;
    if ext != "wasm" && ext != "toml" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// The component file a directory entry belongs to: `<slot>.toml` → `<slot>.wasm`.
fn component_path(path: &Path) -> PathBuf {
    path.with_extension("wasm")
}

/// Load every `<slot>.wasm` in `dir` now (an error names the first file refused), then
/// watch the directory for changes. Files over `max_bytes` are refused.
pub fn watch_components_dir(
    dir: &Path,
    policies: Arc<Policies>,
    max_bytes: usize,
) -> anyhow::Result<ComponentsWatcher> {
    if !dir.is_dir() {
        anyhow::bail!(
            "components directory {} does not exist or is not a directory",
            dir.display()
        );
    }
    // Watch first, so a file written during the initial load is not missed.
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let removed = event.kind.is_remove();
            if !(event.kind.is_create() || event.kind.is_modify() || removed) {
                return;
            }
            for path in event.paths {
                // A removed `.wasm` leaves the live version serving; a removed `.toml`
                // means the component's configuration changed.
                if removed && path.extension().is_some_and(|e| e == "wasm") {
                    continue;
                }
                if slot_for_path(&path).is_some() {
                    let _ = tx.send(component_path(&path));
                }
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let mut initial: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| slot_for_path(p).is_some() && p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    initial.sort();
    for path in initial {
        load_file(&path, &policies, max_bytes)
            .map_err(|reason| anyhow::anyhow!("component file {}: {reason}", path.display()))?;
    }
    thread::Builder::new()
        .name("components-watch".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = BTreeSet::from([first]);
                while let Ok(more) = rx.recv_timeout(DEBOUNCE) {
                    batch.insert(more);
                }
                for path in batch {
                    reload(&path, &policies, max_bytes);
                }
            }
        })?;
    tracing::info!(dir = %dir.display(), "watching components directory");
    Ok(ComponentsWatcher { _watcher: watcher })
}

/// A hot load after start: refusals are logged, the live version keeps serving.
fn reload(path: &Path, policies: &Policies, max_bytes: usize) {
    if let Err(reason) = load_file(path, policies, max_bytes) {
        tracing::error!(path = %path.display(), error = %reason, "component from directory refused; previous version keeps serving");
        metrics::counter!("gateway_component_dir_refusals_total").increment(1);
    }
}

/// Loads `path` (a `<slot>.wasm`) into its slot with its configuration, unless those bytes
/// with that configuration are already live. `Ok` also for names that are not
/// `<slot>.wasm` and for files that vanished before they could be read.
fn load_file(path: &Path, policies: &Policies, max_bytes: usize) -> Result<(), String> {
    let Some(kind) = slot_for_path(path) else {
        return Ok(());
    };
    let bytes = match read_component_file(path, max_bytes) {
        Ok(bytes) => bytes,
        Err(ReadError::Gone) => return Ok(()),
        Err(ReadError::Refused(reason)) => return Err(reason),
    };
    let slot = policies.slot(kind);
    let config = resolve_config(Some(path), None, slot.config_file_keys())?;
    let current = slot.current();
    // Same bytes and same pairs behave the same: no swap (wherever the pairs came from).
    if current.sha256() == sha256_hex(&bytes) && current.config().pairs == config.pairs {
        return Ok(());
    }
    let info = slot
        .load(&bytes, &format!("file:{}", path.display()), config)
        .map_err(|e| format!("refused for slot {kind}: {e}"))?;
    tracing::info!(slot = %kind, sha256 = %info.sha256, path = %path.display(), config_source = ?info.config_source, "loaded component from directory");
    Ok(())
}

/// Why a component file was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// It no longer exists (removed or renamed away): nothing to load.
    Gone,
    /// It is not something the host will read; the reason says why.
    Refused(String),
}

/// Reads a component file: a regular file (not a symlink, FIFO, device, socket or
/// directory) of at most `max_bytes`, never reading more than that.
pub fn read_component_file(path: &Path, max_bytes: usize) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Gone,
        _ => ReadError::Refused(format!("cannot be read: {e}")),
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    check_type(&meta.file_type())?;
    check_size(meta.len(), max_bytes)?;
    let file = open_no_follow(path).map_err(io)?;
    // The name may have been swapped between the check and the open: check what we got.
    let opened = file.metadata().map_err(io)?;
    check_type(&opened.file_type())?;
    check_size(opened.len(), max_bytes)?;
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    check_size(bytes.len() as u64, max_bytes)?;
    Ok(bytes)
}

fn check_type(kind: &std::fs::FileType) -> Result<(), ReadError> {
    if kind.is_symlink() {
        return Err(ReadError::Refused(
            "is a symbolic link; only regular files are loaded".into(),
        ));
    }
    if !kind.is_file() {
        return Err(ReadError::Refused(
            "is not a regular file (a FIFO, device, socket or directory); only regular files are loaded"
                .into(),
        ));
    }
    Ok(())
}

fn check_size(len: u64, max_bytes: usize) -> Result<(), ReadError> {
    if len > max_bytes as u64 {
        return Err(ReadError::Refused(format!(
            "is larger than the {max_bytes}-byte limit (max-component-mib)"
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Vec<u8>, ReadError>) -> String {
        match r {
            Err(ReadError::Refused(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.wasm");
        std::fs::write(&ok, b"0123456789").unwrap();
        assert_eq!(read_component_file(&ok, 10).unwrap(), b"0123456789");
        assert!(refused(read_component_file(&ok, 9)).contains("9-byte limit"));
        assert_eq!(
            read_component_file(&dir.path().join("missing.wasm"), 10),
            Err(ReadError::Gone)
        );
        assert!(refused(read_component_file(dir.path(), 10)).contains("regular"));
        #[cfg(unix)]
        {
            let link = dir.path().join("link.wasm");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            assert!(refused(read_component_file(&link, 10)).contains("symbolic link"));
            let to_file = dir.path().join("to-file.wasm");
            std::os::unix::fs::symlink(&ok, &to_file).unwrap();
            assert!(refused(read_component_file(&to_file, 10)).contains("symbolic link"));
            assert!(refused(read_component_file(Path::new("/dev/zero"), 10)).contains("regular"));
        }
    }
}
