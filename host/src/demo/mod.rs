//! The demo: `gateway-host demo` runs the host against an embedded simulator with the
//! default components, and `/` serves a small page (live feed, topic filter, send-message
//! form, rate-limit feedback, component status).
//!
//! In demo mode the page comes with a `gateway_token` cookie for the user `demo-user`
//! (all topics, all commands), so it works with no set-up. Under `serve`, the page asks
//! for a token instead (mint one with `gateway-host token`).

pub mod controls;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::auth::{Authenticator, TOKEN_COOKIE};
use crate::config::{Config, Secret};
use crate::link::{LinkConfig, LinkToken};
use crate::server::{Host, serve_host};

const PAGE: &str = include_str!("index.html");

/// The user the demo page acts as.
pub const DEMO_USER: &str = "100000000000000001";
/// Admin token of the demo when `GATEWAY_ADMIN_TOKEN` is not set (documented, loopback).
pub const DEMO_ADMIN_TOKEN: &str = "demo-admin-token";

/// `/`: the page; with `demo_auth`, plus a cookie holding a demo token.
pub fn page_router(demo_auth: Option<Authenticator>) -> Router {
    Router::new().route("/", get(move || async move { page(demo_auth.as_ref()) }))
}

fn page(demo_auth: Option<&Authenticator>) -> Response {
    let mut response = Html(PAGE).into_response();
    let token = demo_auth.and_then(|a| {
        a.mint(
            DEMO_USER,
            vec!["*".into()],
            vec!["*".into()],
            Duration::from_secs(24 * 3600),
        )
        .ok()
    });
    if let Some(token) = token {
        let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `gateway-host demo --discord-fake`: direct Discord mode against an embedded fake
/// Discord (Gateway v10 + REST on loopback, 2 messages/s), no bot token needed.
pub async fn run_discord_fake(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::metrics::install();
    let token = format!("{:032x}", rand::random::<u128>());
    let mut options = fake_discord::FakeOptions::new(token.clone());
    options.heartbeat_interval = Duration::from_secs(10);
    options.events_per_second = 2;
    let fake = fake_discord::FakeDiscord::start(options).await?;
    if config.jwt_secret.is_none() {
        let (a, b) = (rand::random::<u128>(), rand::random::<u128>());
        config.jwt_secret = Some(Secret::new(format!("{a:032x}{b:032x}")));
    }
    if config.admin_token.is_none() {
        config.admin_token = Some(Secret::new(DEMO_ADMIN_TOKEN));
    }
    single_host(&mut config);
    let mut discord = crate::discord::DiscordConfig::new(crate::discord::BotToken::new(token));
    discord.api_base = fake.api_base();
    let mut host = Host::start(&config, crate::server::Upstream::Discord(discord))?;
    host.demo_mode = true;
    host.demo_sim = Some(controls::DemoUpstream::DiscordFake(fake.control()));
    println!(
        "gateway-host demo (direct Discord mode): open http://{}/",
        config.http_addr
    );
    println!(
        "  fake Discord: REST {} , gateway {} (2 messages/s)",
        fake.api_base(),
        fake.gateway_url()
    );
    println!(
        "  admin API: http://{} (token: GATEWAY_ADMIN_TOKEN, or {DEMO_ADMIN_TOKEN:?} by default)",
        config.admin_addr
    );
    let result = serve_host(host, &config, shutdown).await;
    fake.shutdown().await;
    result
}

/// The demo runs one host with its own embedded upstream: cluster settings are ignored.
fn single_host(config: &mut Config) {
    if config.cluster.take().is_some() {
        tracing::warn!(
            "the demo runs a single host with its own upstream: GATEWAY_NATS_URL / [cluster] is ignored (try `just cluster-demo`)"
        );
    }
}

/// `gateway-host demo`: simulator + host + page, until `shutdown`.
pub async fn run(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::metrics::install();
    let link_token = format!("{:032x}", rand::random::<u128>());
    let mut sim_config = gateway_sim::SimConfig::new(link_token.clone());
    sim_config.rate = 2.0;
    let sim = gateway_sim::Simulator::start(sim_config).await?;
    if config.jwt_secret.is_none() {
        // 256 random bits: the demo must not teach a guessable secret.
        let (a, b) = (rand::random::<u128>(), rand::random::<u128>());
        config.jwt_secret = Some(Secret::new(format!("{a:032x}{b:032x}")));
    }
    if config.admin_token.is_none() {
        config.admin_token = Some(Secret::new(DEMO_ADMIN_TOKEN));
    }
    single_host(&mut config);
    let mut host = Host::start(
        &config,
        LinkConfig::new(sim.url(), LinkToken::new(link_token)),
    )?;
    host.demo_mode = true;
    host.demo_sim = Some(controls::DemoUpstream::Simulator(sim.control().clone()));
    println!("gateway-host demo: open http://{}/", config.http_addr);
    println!("  simulator: {} (2 events/s)", sim.url());
    println!(
        "  admin API: http://{} (token: GATEWAY_ADMIN_TOKEN, or {DEMO_ADMIN_TOKEN:?} by default)",
        config.admin_addr
    );
    let result = serve_host(host, &config, shutdown).await;
    sim.shutdown().await;
    result
}
