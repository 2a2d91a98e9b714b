//! Direct Discord mode test helpers: a fake Discord on loopback and a host session to it
//! with timings scaled down (backoff 20 → 200 ms, op 9 wait 50–100 ms, identify every 10 ms).

use std::time::Duration;

use fake_discord::{FakeDiscord, FakeOptions};
use gateway_host::bus::{Bus, Subscription};
use gateway_host::discord::{BotToken, DiscordConfig};
use gateway_host::link::LinkHandle;

/// The channel the tests' messages go to.
pub const CHANNEL: &str = "1110000000000000001";

/// The `content` of a message event's payload (empty if it has none).
pub fn content(ev: &gateway_host::bus::BusEvent) -> String {
    let d: serde_json::Value = serde_json::from_str(ev.d.get()).unwrap_or_default();
    d["content"].as_str().unwrap_or_default().to_string()
}

/// The token the test fakes accept.
pub const BOT_TOKEN: &str = "bot-token-7c1e93ab55f04d2e.secret";

/// A fake Discord with test timings (heartbeat 250 ms, buckets of 5 per second).
pub async fn start_fake() -> anyhow::Result<FakeDiscord> {
    FakeDiscord::start(FakeOptions::new(BOT_TOKEN)).await
}

/// A Discord configuration pointing at `fake`, with fast timings.
pub fn fast_discord_config(fake: &FakeDiscord) -> DiscordConfig {
    let mut c = DiscordConfig::new(BotToken::new(BOT_TOKEN));
    c.api_base = fake.api_base();
    c.backoff_base = Duration::from_millis(20);
    c.backoff_cap = Duration::from_millis(200);
    c.invalid_session_wait = (Duration::from_millis(50), Duration::from_millis(100));
    c.identify_interval = Duration::from_millis(10);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(5);
    c
}

/// A bus, a subscriber and a Discord session to `fake`, with `tweak` applied.
pub fn discord_to(
    fake: &FakeDiscord,
    tweak: impl FnOnce(&mut DiscordConfig),
) -> anyhow::Result<(Bus, Subscription, LinkHandle)> {
    let mut config = fast_discord_config(fake);
    tweak(&mut config);
    let bus = Bus::new();
    let sub = bus.subscribe(100_000);
    let handle = gateway_host::discord::spawn(config, bus.clone())?;
    Ok((bus, sub, handle))
}

/// Closes the fake's gateway with 4004 (authentication failed) and waits until `link`
/// has stopped for good.
pub async fn close_fatally(fake: &FakeDiscord, link: &LinkHandle) -> anyhow::Result<()> {
    anyhow::ensure!(
        fake.control().close(4004),
        "the fake had no gateway connection to close"
    );
    crate::wait_until(Duration::from_secs(10), "the stop reason", || {
        link.stopped_reason().is_some()
    })
    .await
}
