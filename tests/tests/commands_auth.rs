//! Token hardening through the real host: a token whose `nbf` lies in the future, a token
//! with an empty `sub`, and an oversize token are refused with 401 in the JSON error shape
//! (on the commands and on the stream); `[auth] issuer`/`audience` are enforced when set;
//! a host refuses to start with a JWT secret shorter than 32 bytes; CORS `*` works (any
//! origin, no credentials) instead of panicking.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_host::auth::{AuthSettings, Authenticator, Claims};
use gateway_host::config::Secret;
use gateway_host::link::LinkState;
use gateway_host::server::Host;
use gateway_tests::commands::{JWT_SECRET, Reply, Request, TestHost, test_config};
use gateway_tests::{TOKEN, fast_link_config, start_sim, wait_state};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        exp: now() + 600,
        topics: vec!["*".into()],
        cmds: vec!["*".into()],
        publish: vec![],
        nbf: None,
        iss: None,
        aud: None,
    }
}

fn sign(claims: &Claims) -> anyhow::Result<String> {
    Authenticator::new(&Secret::new(JWT_SECRET)).sign(claims)
}

fn assert_unauthorized(reply: &Reply, what: &str, needle: &str) -> anyhow::Result<()> {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    let doc = reply.json()?;
    assert_eq!(doc["error"]["code"], "unauthorized", "{what}: {doc}");
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{what}: {message}");
    Ok(())
}

async fn stream(host: &TestHost, token: &str) -> anyhow::Result<Reply> {
    Request::get("/api/stream")
        .bearer(token)
        .send(host.addr)
        .await
}

#[tokio::test]
async fn future_nbf_empty_sub_and_oversize_tokens_are_401() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|_| {})?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let body = json!({"channelId": "700"});

    let valid = sign(&claims("11"))?;
    assert_eq!(
        host.command("typing-start", &valid, &body).await?.status,
        200,
        "the control token works"
    );
    let later = sign(&Claims {
        nbf: Some(now() + 3600),
        ..claims("11")
    })?;
    let reply = host.command("typing-start", &later, &body).await?;
    assert_unauthorized(&reply, "future nbf (command)", "nbf")?;
    assert_unauthorized(&stream(&host, &later).await?, "future nbf (stream)", "nbf")?;

    let anonymous = sign(&claims(""))?;
    let reply = host.command("typing-start", &anonymous, &body).await?;
    assert_unauthorized(&reply, "empty sub", "sub")?;
    assert_unauthorized(
        &stream(&host, &anonymous).await?,
        "empty sub (stream)",
        "sub",
    )?;

    let huge = sign(&Claims {
        topics: (0..400).map(|i| format!("guild:{i:08}")).collect(),
        ..claims("11")
    })?;
    assert!(huge.len() > 4096);
    let reply = host.command("typing-start", &huge, &body).await?;
    assert_unauthorized(&reply, "oversize token", "too large")?;
    assert_eq!(
        sim.received_commands().len(),
        1,
        "only the valid token's command reached the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| {
        c.auth = AuthSettings {
            issuer: Some("https://issuer.example".into()),
            audience: Some("gateway".into()),
            ..AuthSettings::default()
        }
    })?;
    let host = TestHost::start(&sim, config).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let body = json!({"channelId": "701"});
    let minted = host.token("12", &["*"]);
    assert_eq!(
        host.command("typing-start", &minted, &body).await?.status,
        200
    );
    let no_iss = sign(&Claims {
        aud: Some("gateway".into()),
        ..claims("12")
    })?;
    let reply = host.command("typing-start", &no_iss, &body).await?;
    assert_unauthorized(&reply, "no iss", "iss")?;
    let wrong_aud = sign(&Claims {
        iss: Some("https://issuer.example".into()),
        aud: Some("someone-else".into()),
        ..claims("12")
    })?;
    let reply = host.command("typing-start", &wrong_aud, &body).await?;
    assert_unauthorized(&reply, "wrong aud", "aud")?;
    Ok(())
}

#[tokio::test]
async fn a_short_jwt_secret_refuses_to_start() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let config = test_config(|c| c.jwt_secret = Some(Secret::new("k")))?;
    let err = match Host::start(&config, fast_link_config(&sim.url(), TOKEN)) {
        Ok(_) => anyhow::bail!("a 1-byte secret was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("GATEWAY_JWT_SECRET") && err.contains("32"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn cors_star_allows_any_origin_without_credentials() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, test_config(|c| c.cors_origins = vec!["*".into()])?).await?;
    wait_state(&host.host.link, LinkState::Connected, T).await?;
    let preflight = Request::get("/api/commands/typing-start")
        .with_method("OPTIONS")
        .header("Origin", "https://anywhere.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send(host.addr)
        .await?;
    assert!(preflight.status < 300, "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(preflight.header("access-control-allow-credentials"), None);
    let token = host.token("13", &["*"]);
    let reply = Request::post(
        "/api/commands/typing-start",
        json!({"channelId": "702"}).to_string(),
    )
    .bearer(&token)
    .json()
    .header("Origin", "https://elsewhere.example")
    .send(host.addr)
    .await?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    Ok(())
}
