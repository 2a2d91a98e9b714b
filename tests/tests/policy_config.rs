//! A component's configuration travels with it (issue 10): a limiter with its own keys
//! (`keyed-limiter`: `burst`, `refill-ms`) gets *its* keys through the admin API
//! (multipart) and through the components directory (`<slot>.toml`, or the config file's
//! slot keys when it is the slot's starting component), and enforces them through HTTP
//! (the command past the burst gets 429). A bad configuration is refused by the
//! candidate's `init` before any swap; `GET /admin/components` shows each version's config
//! and where it came from; rollback restores the previous version with its config; and
//! `component check` and `serve` agree on which configuration a component gets.

use std::path::Path;
use std::time::Duration;

use gateway_host::cli::check_component;
use gateway_host::policy::{LoadError, SlotKind};
use gateway_tests::admin::AdminServer;
use gateway_tests::commands::{TestHost as Server, limiter_config, test_config};
use gateway_tests::host::{TestHost, start_host};
use gateway_tests::policy::{KEYED_LIMITER, KEYED_LIMITER_PATH, relaxed_limits};
use gateway_tests::{start_sim, wait_until};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// Send `n` commands as `user`; the statuses in order.
async fn sends(server: &Server, user: &str, n: usize) -> anyhow::Result<Vec<u16>> {
    let token = server.token(user, &["*"]);
    let mut statuses = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"channelId": "77", "content": format!("{user} {i}")});
        let reply = server.command("send-message", &token, &body).await?;
        anyhow::ensure!(
            reply.status == 200 || reply.status == 429,
            "send {i} as {user}: {} {}",
            reply.status,
            reply.body
        );
        statuses.push(reply.status);
    }
    Ok(statuses)
}

/// `burst` sends pass, the next is 429.
fn burst_then_429(burst: usize) -> Vec<u16> {
    let mut v = vec![200; burst];
    v.push(429);
    v
}

fn rate_limiter(list: &Value) -> &Value {
    list["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["slot"] == "rate-limiter"))
        .expect("the rate-limiter slot is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_loads_a_limiter_with_its_own_config_and_rollback_restores_it() -> anyhow::Result<()>
{
    // The config file configures the *default* limiter with keys the keyed limiter refuses.
    let h = start_host(|c| {
        c.policy.limits = relaxed_limits();
        limiter_config(c, &[("burst", "10"), ("refill-tokens", "5")]);
    })
    .await?;
    let admin = AdminServer::start(h.host().policies.clone()).await?;
    let (_, list) = admin.get(None).await?;
    assert_eq!(
        list["wit"],
        json!({"package": "gateway:policy", "version": "1.0.0", "majors": [1]})
    );
    let current = &rate_limiter(&list)["current"];
    assert_eq!(current["configSource"], "config-file", "{current}");
    assert_eq!(
        current["config"],
        json!({"burst": "10", "refill-tokens": "5"})
    );

    // Multipart with its own keys: loaded with them (not the default's), and enforced.
    let (status, body) = admin
        .put_with_config(
            "rate-limiter",
            KEYED_LIMITER,
            "burst = 2\nrefill-ms = 600000\n",
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loaded"]["configSource"], "admin");
    assert_eq!(
        body["loaded"]["config"],
        json!({"burst": "2", "refill-ms": "600000"})
    );
    let keyed_sha = body["loaded"]["sha256"].clone();
    assert_eq!(sends(h.server(), "501", 3).await?, burst_then_429(2));
    assert_eq!(
        sends(h.server(), "502", 1).await?,
        vec![200],
        "buckets are per user"
    );

    // A bad config is refused by the candidate's init before the swap.
    let (status, body) = admin
        .put_with_config("rate-limiter", KEYED_LIMITER, "burst = 3\nbogus = 1\n")
        .await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "component_rejected");
    assert_eq!(body["error"]["step"], "init");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unknown config key \"bogus\""),
        "{message}"
    );
    let (_, slot) = admin.get(Some("rate-limiter")).await?;
    assert_eq!(
        slot["current"]["sha256"], keyed_sha,
        "the live version is unchanged"
    );
    assert_eq!(
        slot["current"]["config"],
        json!({"burst": "2", "refill-ms": "600000"})
    );
    assert_eq!(sends(h.server(), "503", 3).await?, burst_then_429(2));
    let (status, body) = admin
        .put_with_config("rate-limiter", KEYED_LIMITER, "burst = \n")
        .await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("bad_config")),
        "{body}"
    );

    // Raw bytes: the component gets an empty config (its own defaults: burst 3), not the
    // config file's keys for the default limiter.
    let (status, body) = admin.put_raw("rate-limiter", KEYED_LIMITER).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loaded"]["configSource"], "none");
    assert_eq!(body["loaded"]["config"], json!({}));
    assert_eq!(sends(h.server(), "504", 4).await?, burst_then_429(3));

    // Both versions and their configs are visible; rollback brings back burst = 2.
    let (_, list) = admin.get(None).await?;
    let slot = rate_limiter(&list);
    assert_eq!(slot["previous"]["configSource"], "admin", "{slot}");
    assert_eq!(slot["previous"]["config"]["burst"], "2");
    assert_eq!(slot["current"]["configSource"], "none");
    let (status, body) = admin.rollback("rate-limiter").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["current"]["configSource"], "admin");
    assert_eq!(
        body["current"]["config"],
        json!({"burst": "2", "refill-ms": "600000"})
    );
    assert_eq!(sends(h.server(), "505", 3).await?, burst_then_429(2));
    Ok(())
}

/// A components directory holding the keyed limiter.
fn dir_with_keyed(toml: Option<&str>) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("rate-limiter.wasm"), KEYED_LIMITER)?;
    if let Some(text) = toml {
        std::fs::write(dir.path().join("rate-limiter.toml"), text)?;
    }
    Ok(dir)
}

fn with_dir(dir: &Path, keys: &[(&str, &str)]) -> impl FnOnce(&mut gateway_host::config::Config) {
    let dir = dir.to_path_buf();
    let keys: Vec<(String, String)> = keys
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |c| {
        c.policy.limits = relaxed_limits();
        c.components_dir = Some(dir);
        let pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (&**k, &**v)).collect();
        limiter_config(c, &pairs);
    }
}

async fn live_config(h: &TestHost) -> (String, Value) {
    let info = h.host().policies.slot(SlotKind::RateLimiter).info();
    let v = serde_json::to_value(&info.current).unwrap_or_default();
    (
        v["configSource"].as_str().unwrap_or_default().to_string(),
        v["config"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_dir_limiter_gets_its_config_from_the_file_then_its_toml() -> anyhow::Result<()>
{
    // Its keys in the config file, its wasm in the directory, no .toml: serve starts, and
    // the keys went to the component they were written for.
    let dir = dir_with_keyed(None)?;
    let h = start_host(with_dir(
        dir.path(),
        &[("burst", "2"), ("refill-ms", "600000")],
    ))
    .await?;
    assert_eq!(
        live_config(&h).await,
        (
            "config-file".to_string(),
            json!({"burst": "2", "refill-ms": "600000"})
        )
    );
    assert_eq!(sends(h.server(), "601", 3).await?, burst_then_429(2));

    // A `<slot>.toml` written beside it: the component reloads with that config.
    std::fs::write(
        dir.path().join("rate-limiter.toml"),
        "burst = 4\nrefill-ms = 600000\n",
    )?;
    let policies = h.host().policies.clone();
    wait_until(T, "the .toml to be applied", || {
        policies
            .slot(SlotKind::RateLimiter)
            .current()
            .config()
            .pairs
            .contains(&("burst".into(), "4".into()))
    })
    .await?;
    assert_eq!(live_config(&h).await.0, "components-dir");
    assert_eq!(sends(h.server(), "602", 5).await?, burst_then_429(4));

    // A bad .toml is refused by init; the live version and its config stay.
    std::fs::write(
        dir.path().join("rate-limiter.toml"),
        "burst = 4\nnope = 1\n",
    )?;
    wait_until(T, "the bad .toml to be refused", || {
        policies
            .slot(SlotKind::RateLimiter)
            .info()
            .last_rejection
            .is_some_and(|r| r.reason.contains("unknown config key \"nope\""))
    })
    .await?;
    assert_eq!(
        live_config(&h).await,
        (
            "components-dir".to_string(),
            json!({"burst": "4", "refill-ms": "600000"})
        )
    );
    assert_eq!(sends(h.server(), "603", 5).await?, burst_then_429(4));

    // The .toml removed: what a restart would give, the config file's keys again.
    std::fs::remove_file(dir.path().join("rate-limiter.toml"))?;
    wait_until(T, "the config file's keys to be back", || {
        policies
            .slot(SlotKind::RateLimiter)
            .current()
            .config()
            .pairs
            .contains(&("burst".into(), "2".into()))
    })
    .await?;
    assert_eq!(live_config(&h).await.0, "config-file");
    assert_eq!(sends(h.server(), "604", 3).await?, burst_then_429(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_serve_agree_on_the_components_config() -> anyhow::Result<()> {
    let sim = start_sim().await?;
    // (the .toml beside the wasm, the config file's slot keys, the key both refuse)
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: [Case; 4] = [
        // Its own keys in the config file: both accept.
        (None, &[("burst", "2")], None),
        // The default limiter's keys in the config file: both refuse, naming the key.
        (None, &[("refill-tokens", "5")], Some("refill-tokens")),
        // A .toml beside it wins over the config file's keys: both accept.
        (Some("burst = 2\n"), &[("refill-tokens", "5")], None),
        // A bad .toml: both refuse, naming the key.
        (
            Some("burst = 2\nnope = 1\n"),
            &[("burst", "2")],
            Some("nope"),
        ),
    ];
    for (toml, keys, refused) in cases {
        let dir = dir_with_keyed(toml)?;
        let config = test_config(with_dir(dir.path(), keys))?;
        let wasm = dir.path().join("rate-limiter.wasm");
        let checked = check_component(&config, SlotKind::RateLimiter, &wasm, None)?;
        let served = Server::start(&sim, config).await;
        match refused {
            None => {
                assert!(checked.is_ok(), "{toml:?} {keys:?}: check refused");
                assert!(served.is_ok(), "{toml:?} {keys:?}: serve refused");
            }
            Some(key) => {
                match checked {
                    Err(LoadError::Init(e)) => assert!(e.contains(key), "{e}"),
                    other => panic!("{toml:?} {keys:?}: check gave {:?}", other.map(|_| ())),
                }
                let e = served.err().map(|e| format!("{e:#}")).unwrap_or_default();
                assert!(
                    e.contains(key) && e.contains("rate-limiter.wasm"),
                    "serve: {e:?}"
                );
            }
        }
    }
    // `--component-config` is used before anything else (the shipped file has no .toml).
    let config = test_config(|c| limiter_config(c, &[("refill-tokens", "5")]))?;
    let own = tempfile::NamedTempFile::new()?;
    std::fs::write(own.path(), "burst = 2\n")?;
    let path = Path::new(KEYED_LIMITER_PATH);
    assert!(check_component(&config, SlotKind::RateLimiter, path, Some(own.path()))?.is_ok());
    assert!(check_component(&config, SlotKind::RateLimiter, path, None)?.is_err());
    Ok(())
}
