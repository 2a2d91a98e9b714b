//! An in-process host (the real `Host`: policies, link, hub, public routes) on a loopback
//! port, linked to a fresh simulator.

use std::time::Duration;

use gateway_host::config::{Config, Secret};
use gateway_host::link::LinkState;
use gateway_host::server::{Host, public_router};
use gateway_sim::SimHandle;

use crate::{TOKEN, fast_link_config, start_sim, wait_state};

/// The JWT secret of test hosts.
pub const JWT_SECRET: &str = "test-jwt-secret";

/// A running test host.
pub struct TestHost {
    /// `127.0.0.1:port` of the public listener.
    pub addr: String,
    pub host: Host,
    pub sim: SimHandle,
}

/// Start a simulator and a host linked to it, with `tweak` applied to the configuration;
/// returns once the link is connected.
pub async fn start_host(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<TestHost> {
    let sim = start_sim().await?;
    let mut config = Config::load(None)?;
    config.jwt_secret = Some(Secret::new(JWT_SECRET));
    tweak(&mut config);
    let host = Host::start(&config, fast_link_config(&sim.url(), TOKEN))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let app = public_router(&host);
    tokio::spawn(async move { axum::serve(listener, app).await });
    wait_state(&host.link, LinkState::Connected, Duration::from_secs(10)).await?;
    Ok(TestHost { addr, host, sim })
}

impl TestHost {
    /// A token for `sub` granting `topics` and every command.
    pub fn token(&self, sub: &str, topics: &[&str]) -> String {
        self.host
            .auth
            .mint(
                sub,
                topics.iter().map(|t| t.to_string()).collect(),
                vec!["*".into()],
                Duration::from_secs(600),
            )
            .expect("mint")
    }

    /// `Authorization` header value for a token granting `topics`.
    pub fn bearer(&self, topics: &[&str]) -> String {
        format!("Bearer {}", self.token("100000000000000001", topics))
    }
}
