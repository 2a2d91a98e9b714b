//! `gateway-host component new`: a standalone component crate from templates embedded in
//! the binary.
//!
//! The templates live in `host/templates/component/` and are compiled into the binary, with
//! the WIT package from `wit/`, so the crate an author gets always matches the host that
//! wrote it: same contract, same wit-bindgen. The generated crate builds, passes
//! `component check` and its own `cases.jsonl` unedited (the test suite proves it for every
//! slot).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::policy::SlotKind;

/// The wit-bindgen version the generated crate pins: the one gateway-host's own components
/// are built with (a unit test keeps it equal to the workspace's `Cargo.lock`).
pub const WIT_BINDGEN_VERSION: &str = "0.46.0";

const CARGO_TOML: &str = include_str!("../../templates/component/Cargo.toml.in");
const README: &str = include_str!("../../templates/component/README.md.in");
const GITIGNORE: &str = include_str!("../../templates/component/gitignore.in");
const WIT: &str = include_str!("../../../wit/policy.wit");

/// `src/lib.rs` and `cases.jsonl` of the template for `slot`.
fn slot_files(slot: SlotKind) -> (&'static str, &'static str) {
    match slot {
        SlotKind::EventRouter => (
            include_str!("../../templates/component/event-router/lib.rs"),
            include_str!("../../templates/component/event-router/cases.jsonl"),
        ),
        SlotKind::RateLimiter => (
            include_str!("../../templates/component/rate-limiter/lib.rs"),
            include_str!("../../templates/component/rate-limiter/cases.jsonl"),
        ),
        SlotKind::CommandValidator => (
            include_str!("../../templates/component/command-validator/lib.rs"),
            include_str!("../../templates/component/command-validator/cases.jsonl"),
        ),
        SlotKind::VoiceFilter => (
            include_str!("../../templates/component/voice-filter/lib.rs"),
            include_str!("../../templates/component/voice-filter/cases.jsonl"),
        ),
    }
}

/// A crate name cargo accepts and that makes a sensible file name: a lowercase ASCII
/// letter, then lowercase letters, digits, `-` or `_`, at most 64 characters.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        bail!(
            "invalid component name {name:?}: use a lowercase letter, then lowercase letters, digits, '-' or '_' (at most 64)"
        );
    }
    Ok(())
}

fn render(template: &str, name: &str, slot: SlotKind) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{file}}", &name.replace('-', "_"))
        .replace("{{slot}}", slot.as_str())
        .replace("{{wit_bindgen}}", WIT_BINDGEN_VERSION)
}

/// Write the crate `name` for `slot` into `parent/name`, which must not exist yet (nothing
/// an author wrote is ever overwritten). Returns the crate's directory.
pub fn create(slot: SlotKind, name: &str, parent: &Path) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let root = parent.join(name);
    if root.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            root.display()
        );
    }
    let (lib, cases) = slot_files(slot);
    let files: [(&str, String); 6] = [
        ("Cargo.toml", render(CARGO_TOML, name, slot)),
        ("README.md", render(README, name, slot)),
        (".gitignore", GITIGNORE.to_string()),
        ("wit/policy.wit", WIT.to_string()),
        ("src/lib.rs", lib.to_string()),
        ("cases.jsonl", cases.to_string()),
    ];
    for (relative, contents) in files {
        let path = root.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(root)
}

/// What `component new` prints: where the crate is and the next commands.
pub fn next_steps(slot: SlotKind, name: &str, root: &Path) -> String {
    let file = name.replace('-', "_");
    format!(
        "created {root} ({slot} component)\n\nnext:\n  cd {root}\n  rustup target add wasm32-wasip2\n  cargo build --target wasm32-wasip2 --release\n  gateway-host component check --slot {slot} target/wasm32-wasip2/release/{file}.wasm\n  gateway-host component test --slot {slot} target/wasm32-wasip2/release/{file}.wasm --cases cases.jsonl",
        root = root.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_wit_bindgen_is_the_workspace_one() {
        let lock = include_str!("../../../Cargo.lock");
        let pinned = format!("name = \"wit-bindgen\"\nversion = \"{WIT_BINDGEN_VERSION}\"");
        assert!(
            lock.contains(&pinned),
            "the template pins wit-bindgen {WIT_BINDGEN_VERSION}; update WIT_BINDGEN_VERSION to the workspace's"
        );
    }

    #[test]
    fn names_are_checked_and_nothing_is_overwritten() {
        for bad in ["", "Upper", "1abc", "a b", "../x", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = create(SlotKind::RateLimiter, "my-limiter", dir.path()).expect("creates");
        let toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        assert!(toml.contains("name = \"my-limiter\"") && toml.contains("[workspace]"));
        assert!(toml.contains(&format!("wit-bindgen = \"={WIT_BINDGEN_VERSION}\"")));
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
        assert!(readme.contains("release/my_limiter.wasm") && !readme.contains("{{"));
        assert!(root.join("wit/policy.wit").is_file() && root.join("cases.jsonl").is_file());
        let err = create(SlotKind::RateLimiter, "my-limiter", dir.path()).expect_err("exists");
        assert!(err.to_string().contains("already exists"), "{err}");
    }
}
