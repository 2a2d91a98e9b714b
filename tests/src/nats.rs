//! A private `nats-server -js` per test (cluster mode, issue 12).
//!
//! Cluster tests never share a NATS server: each starts its own on a free loopback port with
//! JetStream storage in a temporary directory, waits (with a deadline) until it accepts
//! connections, and kills it on drop. A missing `nats-server` binary fails the test with a
//! message saying how to install it; cluster tests are never skipped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a server may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running `nats-server -js`, killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh JetStream store.
    pub fn start() -> anyhow::Result<NatsServer> {
        let store = tempfile::tempdir().context("temporary JetStream store directory")?;
        let port = free_port()?;
        let mut server = NatsServer {
            child: None,
            port,
            store,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit; its store stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store (after [`kill`]).
    ///
    /// [`kill`]: NatsServer::kill
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Starts a server again on the same port with a *new, empty* store (after [`kill`]): a
    /// NATS server that lost its data.
    ///
    /// [`kill`]: NatsServer::kill
    pub fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.store = tempfile::tempdir().context("temporary JetStream store directory")?;
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "nats-server is not installed: cluster tests need it \
                 (`apt-get install -y nats-server`; .ci/run installs it)"
            ),
            Err(e) => return Err(e).context("starting nats-server"),
        };
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("nats-server exited before accepting connections: {status}");
            }
            if Instant::now() >= deadline {
                bail!("nats-server did not accept connections on {addr} within {START_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `nats-server` from `PATH`, or Debian's `/usr/sbin/nats-server` when `PATH` lacks `/usr/sbin`.
fn binary() -> &'static str {
    const DEBIAN: &str = "/usr/sbin/nats-server";
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file()));
    if !on_path && std::path::Path::new(DEBIAN).is_file() {
        DEBIAN
    } else {
        "nats-server"
    }
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}
