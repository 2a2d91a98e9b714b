//! Version checks (issue 10): the host reads the `gateway:policy` version a component was
//! built against from its imports, before linking. A component built against `@2.0.0`
//! (another major, same types) is refused at the `version` step by `component check` and
//! by the admin API, with both versions named; one built against `@1.1.0` (a newer minor
//! than the host knows) is refused clearly. Neither goes live.

use std::path::Path;
use std::sync::Arc;

use gateway_host::cli::check_component;
use gateway_host::policy::{LoadError, Policies, SlotKind};
use gateway_tests::admin::AdminServer;
use gateway_tests::commands::test_config;
use gateway_tests::policy::{WIT_V1_1_ROUTER_PATH, WIT_V2_ROUTER_PATH, relaxed_settings};

fn check(path: &str) -> anyhow::Result<String> {
    let config = test_config(|_| {})?;
    match check_component(&config, SlotKind::EventRouter, Path::new(path), None)? {
        Err(LoadError::Version(message)) => Ok(message),
        Err(other) => anyhow::bail!("refused at another step: {other}"),
        Ok(_) => anyhow::bail!("{path} was accepted"),
    }
}

#[test]
fn check_refuses_another_major_and_a_newer_minor() -> anyhow::Result<()> {
    let message = check(WIT_V2_ROUTER_PATH)?;
    assert!(
        message.contains("gateway:policy@2.0.0") && message.contains("gateway:policy@1.0.0"),
        "{message}"
    );
    assert!(message.contains("major 1"), "{message}");
    let message = check(WIT_V1_1_ROUTER_PATH)?;
    assert!(
        message.contains("gateway:policy@1.1.0") && message.contains("newer minor"),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_other_versions_at_the_version_step() -> anyhow::Result<()> {
    let policies = Arc::new(Policies::with_defaults(relaxed_settings())?);
    let admin = AdminServer::start(policies.clone()).await?;
    let live = policies
        .slot(SlotKind::EventRouter)
        .current()
        .sha256()
        .to_string();
    for (path, needles) in [
        (
            WIT_V2_ROUTER_PATH,
            [
                "built against gateway:policy@2.0.0",
                "serves gateway:policy@1.0.0",
            ],
        ),
        (
            WIT_V1_1_ROUTER_PATH,
            ["built against gateway:policy@1.1.0", "newer minor"],
        ),
    ] {
        let (status, body) = admin.put_raw("event-router", &std::fs::read(path)?).await?;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "component_rejected");
        assert_eq!(body["error"]["step"], "version", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} in {message}");
        }
    }
    assert_eq!(
        policies.slot(SlotKind::EventRouter).current().sha256(),
        live,
        "refused components never go live"
    );
    let (_, list) = admin.get(None).await?;
    assert_eq!(list["wit"]["majors"], serde_json::json!([1]));
    Ok(())
}
