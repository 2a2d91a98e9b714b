//! Helpers for the tests of components written in other languages (Python, JavaScript):
//! where `just py-component` / `just js-component` put the built files, the real
//! `gateway-host component check` process, and the real admin API on a loopback port.
//!
//! The components are built by their own toolchains (componentize-py, componentize-js),
//! which cargo cannot run from a build script without the network, so the `just test`
//! recipe builds them before `cargo test`. A missing file fails the test with the command
//! that builds it: skipping is not passing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gateway_host::config::Secret;
use gateway_host::policy::Policies;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::commands::{Reply, parse_reply};

/// The admin token of [`AdminServer`].
pub const ADMIN_TOKEN: &str = "foreign-components-admin-token";
/// Bound on one admin exchange (a Python component compiles for several seconds).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The real admin router for `policies` on its own loopback port (as `serve` runs it).
pub struct AdminServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdminServer {
    /// Serves `/admin/*` for `policies` with [`ADMIN_TOKEN`] on 127.0.0.1:0.
    pub async fn start(policies: Arc<Policies>) -> anyhow::Result<AdminServer> {
        let app = gateway_host::admin::router(policies, Some(Secret::new(ADMIN_TOKEN)), 64 << 20);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AdminServer { addr, task })
    }

    /// `PUT /admin/components/{slot}` with the wasm bytes as the body.
    pub async fn put_component(&self, slot: &str, wasm: &[u8]) -> anyhow::Result<Reply> {
        self.exchange("PUT", &format!("/admin/components/{slot}"), wasm)
            .await
    }

    /// `POST /admin/components/{slot}/rollback`.
    pub async fn rollback(&self, slot: &str) -> anyhow::Result<Reply> {
        self.exchange("POST", &format!("/admin/components/{slot}/rollback"), b"")
            .await
    }

    async fn exchange(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Reply> {
        let what = format!("{method} {path}");
        let addr = self.addr;
        let fut = async move {
            let mut stream = TcpStream::connect(addr).await?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
                 Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/wasm\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            parse_reply(&raw)
        };
        match tokio::time::timeout(ADMIN_TIMEOUT, fut).await {
            Ok(reply) => reply.with_context(|| what.clone()),
            Err(_) => bail!("timed out after {ADMIN_TIMEOUT:?}: {what}"),
        }
    }
}
