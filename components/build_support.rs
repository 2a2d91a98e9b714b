//! Builds policy components for `wasm32-wasip2` from a crate's build script.
//!
//! Shared (via `#[path]`) by `host/build.rs`, which embeds the default components, and
//! `tests/build.rs`, which builds the hostile components the test suite loads. The nested
//! cargo uses its own target directory (`<target>/wasm-components`) so it never waits on the
//! lock held by the outer build, and the same directory `just build-components` uses.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared target directory for component builds, next to the outer build's profile dirs.
pub fn components_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR = <target>/[<triple>/]<profile>/build/<pkg>-<hash>/out
    let target = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or(out_dir);
    target.join("wasm-components")
}

/// Build `packages` (workspace package names) and return each one's `.wasm` path.
pub fn build_components(workspace: &Path, packages: &[&str]) -> Vec<PathBuf> {
    let target_dir = components_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--profile",
            "component",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // Settings of the outer build that must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build components: {e}"));
    if !status.success() {
        panic!(
            "building the wasm components failed ({status}). Is the target installed? \
             Run `rustup target add wasm32-wasip2` (or `just build-components`)."
        );
    }
    for dir in ["wit", "components"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    for p in packages {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("components").join(p).display()
        );
    }
    packages
        .iter()
        .map(|p| {
            target_dir
                .join("wasm32-wasip2/component")
                .join(format!("{}.wasm", p.replace('-', "_")))
        })
        .collect()
}
