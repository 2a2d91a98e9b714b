//! The operator console's data route, `GET /admin/series`, on a real admin listener of a
//! host linked to a simulator: it needs the admin token (the console page does not), has the
//! documented shape and a bounded size, and its samples follow what happens: events flowing
//! (events in, latency percentiles), an SSE client opening and closing, the link going down.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use gateway_host::config::{Config, Secret};
use gateway_host::http1::{Limits, serve};
use gateway_host::link::LinkState;
use gateway_host::server::admin_router;
use gateway_sim::SimHandle;
use gateway_tests::commands::{Reply, Request, TestHost, test_config};
use gateway_tests::{sse_client, start_sim, wait_state};
use serde_json::Value;
use tokio::task::JoinHandle;

const ADMIN_TOKEN: &str = "console-series-test-admin-token";
/// Bound on waiting for a sample that shows something (samples come once a second).
const SAMPLE_WAIT: Duration = Duration::from_secs(20);

/// A host with its public listener (the stream) and its admin listener (the series).
struct Console {
    sim: SimHandle,
    host: TestHost,
    admin: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start(token: Option<&str>) -> anyhow::Result<Console> {
    let config: Config = test_config(|c| c.admin_token = token.map(Secret::new))?;
    let sim = start_sim().await?;
    let host = TestHost::start(&sim, config.clone()).await?;
    wait_state(&host.host.link, LinkState::Connected, SAMPLE_WAIT).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = listener.local_addr()?;
    let limits = Limits::new(
        "admin",
        &config.listener,
        config.listener.admin_max_connections,
        config.server.shutdown_timeout(),
    );
    let app = admin_router(&host.host, &config);
    let server = tokio::spawn(serve(listener, app, limits, std::future::pending::<()>()));
    Ok(Console {
        sim,
        host,
        admin,
        server,
    })
}

impl Console {
    async fn series(&self, since: Option<u64>) -> anyhow::Result<Value> {
        let path = match since {
            Some(t) => format!("/admin/series?since={t}"),
            None => "/admin/series".into(),
        };
        let reply = Request::get(&path)
            .bearer(ADMIN_TOKEN)
            .send(self.admin)
            .await?;
        anyhow::ensure!(reply.status == 200, "GET {path}: {reply:?}");
        reply.json()
    }

    /// Polls the series (emitting `emit` events per poll) until a sample after `since`
    /// satisfies `want`; returns it.
    async fn wait_sample(
        &self,
        what: &str,
        since: u64,
        emit: usize,
        want: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + SAMPLE_WAIT;
        loop {
            if emit > 0 {
                self.sim.control().emit(emit);
            }
            let body = self.series(Some(since)).await?;
            let samples = body["samples"].as_array().context("samples")?;
            if let Some(s) = samples.iter().find(|s| want(s)) {
                return Ok(s.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "timed out after {SAMPLE_WAIT:?} waiting for a sample with {what}; got {samples:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn error_code(reply: &Reply) -> String {
    reply
        .json()
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    gateway_host::policy::version::unix_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_needs_the_admin_token_and_the_page_does_not() -> anyhow::Result<()> {
    let c = start(Some(ADMIN_TOKEN)).await?;
    let none = Request::get("/admin/series").send(c.admin).await?;
    assert_eq!(
        (none.status, error_code(&none).as_str()),
        (401, "unauthorized")
    );
    let wrong = Request::get("/admin/series")
        .bearer("not-the-admin-token")
        .send(c.admin)
        .await?;
    assert_eq!(
        (wrong.status, error_code(&wrong).as_str()),
        (403, "forbidden")
    );
    let right = Request::get("/admin/series")
        .bearer(ADMIN_TOKEN)
        .send(c.admin)
        .await?;
    assert_eq!(right.status, 200);
    let bad = Request::get("/admin/series?since=yesterday")
        .bearer(ADMIN_TOKEN)
        .send(c.admin)
        .await?;
    assert_eq!((bad.status, error_code(&bad).as_str()), (400, "bad_since"));

    // The page and its assets hold no data: served without a token, under a strict CSP.
    for (path, kind) in [
        ("/admin/console", "text/html"),
        ("/admin/console.js", "text/javascript"),
        ("/admin/console.css", "text/css"),
    ] {
        let page = Request::get(path).send(c.admin).await?;
        assert_eq!(page.status, 200, "{path}");
        assert!(
            page.header("content-type")
                .is_some_and(|t| t.starts_with(kind))
        );
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    }
    let page = Request::get("/admin/console").send(c.admin).await?;
    assert!(page.body.contains("/admin/console.js") && !page.body.contains("<script>"));

    // Without a configured admin token, the series is refused like the rest of the admin API.
    let off = start(None).await?;
    let refused = Request::get("/admin/series")
        .bearer(ADMIN_TOKEN)
        .send(off.admin)
        .await?;
    assert_eq!(
        (refused.status, error_code(&refused).as_str()),
        (503, "admin_disabled")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_follows_events_clients_and_the_link() -> anyhow::Result<()> {
    let c = start(Some(ADMIN_TOKEN)).await?;
    let started = now_ms();

    // Shape: one sample a second, a bounded ring, every field present.
    let second = started + 1000;
    c.wait_sample("a second sample", second, 0, |_| true)
        .await?;
    let body = c.series(None).await?;
    assert_eq!(body["intervalMs"], 1000);
    assert_eq!(body["capacity"], 600);
    assert!(body["nowMs"].as_u64().is_some_and(|t| t >= started));
    let samples = body["samples"].as_array().context("samples")?;
    assert!(!samples.is_empty() && samples.len() <= 600);
    for s in samples {
        for key in [
            "tMs",
            "link",
            "eventsIn",
            "eventsPerSec",
            "latencyCount",
            "p50Ms",
            "p90Ms",
            "p99Ms",
            "sseClients",
        ] {
            assert!(s.get(key).is_some(), "sample has {key}: {s}");
        }
    }
    let quiet = &samples[samples.len() - 1];
    assert_eq!(
        quiet["eventsIn"], 0,
        "the test simulator is quiet until asked"
    );
    assert_eq!(quiet["latencyCount"], 0);
    assert!(quiet["p99Ms"].is_null());
    assert_eq!(quiet["sseClients"], 0);
    assert_eq!(quiet["link"], "connected");

    // `since` returns only later samples.
    let last_t = quiet["tMs"].as_u64().context("tMs")?;
    let later = c.series(Some(last_t)).await?;
    for s in later["samples"].as_array().context("samples")? {
        assert!(s["tMs"].as_u64() > Some(last_t));
    }

    // An SSE client opens and events flow: the samples show both, with percentiles.
    let bearer = format!(
        "Bearer {}",
        c.host.token("100000000000000077", &["send-message"])
    );
    let mut stream = sse_client::get(
        &c.host.addr.to_string(),
        "/api/stream?topics=*",
        &[("Authorization", &bearer)],
    )
    .await?;
    assert_eq!(stream.status, 200);
    let t0 = now_ms();
    let busy = c
        .wait_sample("events, latencies and one client", t0, 20, |s| {
            s["eventsIn"].as_u64() > Some(0)
                && s["latencyCount"].as_u64() > Some(0)
                && s["sseClients"] == 1
        })
        .await?;
    let (p50, p90, p99) = (
        busy["p50Ms"].as_f64().context("p50")?,
        busy["p90Ms"].as_f64().context("p90")?,
        busy["p99Ms"].as_f64().context("p99")?,
    );
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99, "{busy}");
    assert!(busy["eventsPerSec"].as_f64() > Some(0.0));
    // The client got those events.
    assert!(stream.next_event(SAMPLE_WAIT).await?.is_some());

    // It closes: the count goes back to zero (events keep flowing, so the host notices).
    drop(stream);
    let t1 = now_ms();
    c.wait_sample("no client", t1, 5, |s| s["sseClients"] == 0)
        .await?;

    // The link goes down: the samples say so (a whole second down takes no events).
    c.host.take_link_down(&c.sim).await?;
    let t2 = now_ms();
    let down = c
        .wait_sample("the link down", t2, 0, |s| s["link"] != "connected")
        .await?;
    let down_t = down["tMs"].as_u64().context("tMs")?;
    let next = c.wait_sample("a second down", down_t, 0, |_| true).await?;
    assert_ne!(next["link"], "connected");
    assert_eq!(
        (next["eventsIn"].as_u64(), next["eventsPerSec"].as_f64()),
        (Some(0), Some(0.0))
    );
    c.sim.control().set_refuse_auth(false);
    wait_state(&c.host.host.link, LinkState::Connected, SAMPLE_WAIT).await?;
    let t3 = now_ms();
    c.wait_sample("the link back", t3, 0, |s| s["link"] == "connected")
        .await?;
    let all = c.series(None).await?;
    let n = all["samples"].as_array().context("samples")?.len();
    assert!(n <= 600);
    Ok(())
}
