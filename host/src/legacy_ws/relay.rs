//! The bridge's one bus subscriber: each event through the voice-filter slot once (not once
//! per client), its frame serialized once, then offered to the guild's clients.
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
/// Most events filtered per hop to the policy call threads.
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
        let Ok(decided) = policies
            .run(move |p| {
                batch
                    .into_iter()
                    .map(|e| {
                        let ev = policy_event(&e);
                        let decision = p.filter_voice(&ev).value;
                        (e, ev.meta.channel_id, decision)
                    })
                    .collect::<Vec<_>>()
            })
            .await
        else {
            return;
        };
        for (event, channel, decision) in decided {
            if let VoiceDecision::Relay(guild) = decision {
                let frame = encode(&event, &guild, channel.as_deref());
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
