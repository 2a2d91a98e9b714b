//! Helpers for the tests of components written in other languages (Python, JavaScript):
//! where `just py-component` / `just js-component` put the built files, the real
//! `gateway-host component check` process (the admin API is [`crate::admin::AdminServer`]).
//!
//! The components are built by their own toolchains (componentize-py, componentize-js),
//! which cargo cannot run from a build script without the network, so the `just test`
//! recipe builds them before `cargo test`. A missing file fails the test with the command
//! that builds it: skipping is not passing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Bound on one admin exchange of these tests (a Python component compiles for several
/// seconds, more on a busy machine): give it to [`crate::admin::AdminServer::with_timeout`].
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

/// A component built by a `just` recipe.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// File name under `<target>/foreign-components/`.
    pub file: &'static str,
    /// Environment variable that overrides the path.
    pub env: &'static str,
    /// The recipe that builds it.
    pub recipe: &'static str,
}

/// The Python event router (`examples/python-router`).
pub const PYTHON_ROUTER: Foreign = Foreign {
    file: "python-router.wasm",
    env: "GATEWAY_PY_ROUTER_WASM",
    recipe: "just py-component",
};

/// The JavaScript command validator (`examples/js-validator`).
pub const JS_VALIDATOR: Foreign = Foreign {
    file: "js-validator.wasm",
    env: "GATEWAY_JS_VALIDATOR_WASM",
    recipe: "just js-component",
};

/// The cargo profile directory of this build (`<target>/debug`).
pub fn profile_dir() -> PathBuf {
    PathBuf::from(env!("GATEWAY_TEST_PROFILE_DIR"))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("GATEWAY_TEST_WORKSPACE"))
}

impl Foreign {
    /// Where the built component is: `$<env>` if set, else `<target>/foreign-components/`.
    pub fn path(&self) -> PathBuf {
        match std::env::var_os(self.env) {
            Some(p) => PathBuf::from(p),
            None => profile_dir()
                .parent()
                .unwrap_or(Path::new("."))
                .join("foreign-components")
                .join(self.file),
        }
    }

    /// The component's bytes; an error naming the recipe when it was not built.
    pub fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        let path = self.path();
        std::fs::read(&path).with_context(|| {
            format!(
                "{} is not built at {} (set {} to use another file): run `{}` first \
                 (`just test` does)",
                self.file,
                path.display(),
                self.env,
                self.recipe
            )
        })
    }
}

/// The `gateway-host` binary of this build, brought up to date by cargo first.
pub fn host_binary() -> anyhow::Result<PathBuf> {
    let dir = profile_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--quiet",
            "-p",
            "gateway-host",
            "--bin",
            "gateway-host",
        ])
        .args(["--profile", &profile])
        .status()
        .context("run cargo build -p gateway-host")?;
    if !status.success() {
        bail!("cargo build -p gateway-host failed ({status})");
    }
    Ok(dir.join("gateway-host"))
}

/// What a `gateway-host` process did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `gateway-host ARGS` to completion.
pub fn run_host(args: &[&str]) -> anyhow::Result<Run> {
    let bin = host_binary()?;
    let started = Instant::now();
    let out = Command::new(&bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    })
}
