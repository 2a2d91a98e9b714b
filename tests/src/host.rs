//! A running host for the stream tests: the command tests' loopback host
//! ([`crate::commands::TestHost`]) plus its own simulator, started and connected in one call.

use std::time::Duration;

use gateway_host::config::Config;
use gateway_host::link::LinkState;
use gateway_host::server::Host;
use gateway_sim::SimHandle;

use crate::commands::{TestHost as Server, test_config};
use crate::{start_sim, wait_state};

/// A running test host with its simulator.
pub struct TestHost {
    /// `127.0.0.1:port` of the public listener.
    pub addr: String,
    pub sim: SimHandle,
    server: Server,
}

/// Start a simulator and a host linked to it, with `tweak` applied to the configuration;
/// returns once the link is connected.
pub async fn start_host(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<TestHost> {
    let sim = start_sim().await?;
    let server = Server::start(&sim, test_config(tweak)?).await?;
    wait_state(
        &server.host.link,
        LinkState::Connected,
        Duration::from_secs(10),
    )
    .await?;
    Ok(TestHost {
        addr: server.addr.to_string(),
        sim,
        server,
    })
}

impl TestHost {
    /// The host.
    pub fn host(&self) -> &Host {
        &self.server.host
    }

    /// The loopback server, with its HTTP helpers for the command API.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// A token for `sub` granting `topics` and every command.
    pub fn token(&self, sub: &str, topics: &[&str]) -> String {
        crate::token_for(&self.host().auth, sub, topics)
    }

    /// `Authorization` header value for a token granting `topics`.
    pub fn bearer(&self, topics: &[&str]) -> String {
        format!("Bearer {}", self.token("100000000000000001", topics))
    }
}
