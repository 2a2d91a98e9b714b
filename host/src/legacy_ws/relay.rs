//! The bridge's one bus subscriber: each event through the voice-filter slot once (not once
//! per client, and never waiting past the call's deadline), its frame serialized once, then
//! offered to the guild's clients.
//!
//! When no client has joined any guild the filter is not called at all. A relay that falls
//! behind the bus resubscribes (legacy clients have no resume; the loss is logged and counted).

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;

use super::protocol::{HostFrame, VERSION};
use super::registry::Registry;
use crate::bus::{Bus, BusEvent, RecvError};
use crate::event_meta::policy_event;
use crate::policy::{Policies, VoiceDecision};

/// The relay's bus queue.
const BUS_CAPACITY: usize = 16_384;
/// Most events taken off the bus at once.
const BATCH: usize = 256;

/// Start the relay task.
pub fn spawn(bus: Bus, policies: Arc<Policies>, registry: Arc<Registry>) {
    tokio::spawn(run(bus, policies, registry));
}

async fn run(bus: Bus, policies: Arc<Policies>, registry: Arc<Registry>) {
    let mut sub = bus.subscribe(BUS_CAPACITY);
    loop {
        let first = match sub.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged) => {
                metrics::counter!("gateway_legacy_ws_relay_lagged_total").increment(1);
                tracing::error!(
                    "the legacy voice relay fell behind the bus; events were lost for legacy clients"
                );
                sub = bus.subscribe(BUS_CAPACITY);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match sub.try_recv() {
                Ok(Some(event)) => batch.push(event),
                _ => break,
            }
        }
        if !registry.has_listeners() {
            continue;
        }
        // One bounded call per event: a stuck or slow filter costs each event at most its
        // caller deadline, then the slot's failure policy answers.
        for event in batch {
            let ev = Arc::new(policy_event(&event));
            let decision = policies.filter_voice_async(ev.clone()).await.value;
            if let VoiceDecision::Relay(guild) = decision {
                let frame = encode(&event, &guild, ev.meta.channel_id.as_deref());
                let n = registry.relay(&guild, &frame);
                metrics::counter!("gateway_legacy_ws_relayed_total").increment(n as u64);
            }
        }
    }
}

fn encode(event: &BusEvent, guild: &str, channel: Option<&str>) -> Utf8Bytes {
    HostFrame::Event {
        v: VERSION,
        kind: &event.t,
        guild_id: guild,
        channel_id: channel,
        trace_id: &event.trace_id,
        timestamp: event.ts,
        data: &event.d,
    }
    .encode()
    .into()
}
