//! Who listens to which guild.
//!
//! Each client has one bounded queue; joining a guild indexes the client under it. Relaying
//! offers the same shared frame bytes to every client of the guild without waiting: a full
//! queue means the client fell behind, and it is removed from every guild on the spot (its
//! connection then closes with 1008 once it has drained what was queued). A slow client
//! never slows the relay or the other clients, and nothing buffers without bound.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::LegacySettings;

/// A client's end: its queue, and whether it was dropped for being slow.
pub struct ClientQueue {
    pub id: u64,
    pub rx: mpsc::Receiver<Utf8Bytes>,
    /// Set when the client was removed for falling behind.
    pub too_slow: Arc<AtomicBool>,
}

struct Client {
    tx: mpsc::Sender<Utf8Bytes>,
    guilds: HashSet<String>,
    too_slow: Arc<AtomicBool>,
}

#[derive(Default)]
struct Index {
    clients: HashMap<u64, Client>,
    guilds: HashMap<String, HashSet<u64>>,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    TooManyGuilds,
    Gone,
}

/// The clients of the bridge.
pub struct Registry {
    settings: LegacySettings,
    index: Mutex<Index>,
    next_id: AtomicU64,
}

impl Registry {
    /// An empty registry.
    pub fn new(settings: LegacySettings) -> Registry {
        Registry {
            settings,
            index: Mutex::new(Index::default()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Register a new client, unless the client cap is reached.
    pub fn register(&self) -> Option<ClientQueue> {
        let mut index = self.index.lock();
        if index.clients.len() >= self.settings.max_clients {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.settings.client_queue.max(1));
        let too_slow = Arc::new(AtomicBool::new(false));
        index.clients.insert(
            id,
            Client {
                tx,
                guilds: HashSet::new(),
                too_slow: too_slow.clone(),
            },
        );
        metrics::gauge!("gateway_legacy_ws_clients").set(index.clients.len() as f64);
        Some(ClientQueue { id, rx, too_slow })
    }

    /// Relay `guild`'s events to client `id` too.
    pub fn join(&self, id: u64, guild: &str) -> Result<(), JoinError> {
        let mut index = self.index.lock();
        let max = self.settings.max_guilds;
        let client = index.clients.get_mut(&id).ok_or(JoinError::Gone)?;
        if !client.guilds.contains(guild) && client.guilds.len() >= max {
            return Err(JoinError::TooManyGuilds);
        }
        client.guilds.insert(guild.to_string());
        index
            .guilds
            .entry(guild.to_string())
            .or_default()
            .insert(id);
        Ok(())
    }

    /// Stop relaying `guild` to client `id`.
    pub fn leave(&self, id: u64, guild: &str) {
        let mut index = self.index.lock();
        if let Some(client) = index.clients.get_mut(&id) {
            client.guilds.remove(guild);
        }
        unindex(&mut index, id, guild);
    }

    /// Forget client `id` (its connection ended).
    pub fn remove(&self, id: u64) {
        let mut index = self.index.lock();
        remove_client(&mut index, id);
        metrics::gauge!("gateway_legacy_ws_clients").set(index.clients.len() as f64);
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.index.lock().clients.len()
    }

    /// Whether any client joined any guild (the relay skips filtering when none did).
    pub fn has_listeners(&self) -> bool {
        !self.index.lock().guilds.is_empty()
    }

    /// Offer `frame` to every client of `guild`; returns how many got it.
    pub fn relay(&self, guild: &str, frame: &Utf8Bytes) -> usize {
        let mut index = self.index.lock();
        let Some(ids) = index.guilds.get(guild) else {
            return 0;
        };
        let mut delivered = 0;
        let mut slow = Vec::new();
        for id in ids {
            let Some(client) = index.clients.get(id) else {
                continue;
            };
            match client.tx.try_send(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for id in &slow {
            if let Some(client) = index.clients.get(id) {
                client.too_slow.store(true, Ordering::Relaxed);
            }
            remove_client(&mut index, *id);
        }
        if !slow.is_empty() {
            metrics::counter!("gateway_legacy_ws_slow_client_drops_total")
                .increment(slow.len() as u64);
            metrics::gauge!("gateway_legacy_ws_clients").set(index.clients.len() as f64);
            tracing::warn!(
                clients = slow.len(),
                guild,
                "closed legacy voice clients that fell behind"
            );
        }
        delivered
    }
}

fn unindex(index: &mut Index, id: u64, guild: &str) {
    if let Some(ids) = index.guilds.get_mut(guild) {
        ids.remove(&id);
        if ids.is_empty() {
            index.guilds.remove(guild);
        }
    }
}

fn remove_client(index: &mut Index, id: u64) {
    if let Some(client) = index.clients.remove(&id) {
        for guild in &client.guilds {
            unindex(index, id, guild);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(queue: usize) -> Registry {
        Registry::new(LegacySettings {
            client_queue: queue,
            max_guilds: 2,
            max_clients: 3,
            ..LegacySettings::default()
        })
    }

    #[test]
    fn relays_only_to_the_guilds_clients() {
        let r = registry(8);
        let mut a = r.register().expect("room");
        let mut b = r.register().expect("room");
        r.join(a.id, "1").expect("join");
        r.join(b.id, "2").expect("join");
        assert_eq!(r.relay("1", &"x".into()), 1);
        assert_eq!(a.rx.try_recv().map(|f| f.to_string()), Ok("x".to_string()));
        assert!(b.rx.try_recv().is_err());
        r.leave(a.id, "1");
        assert_eq!(r.relay("1", &"y".into()), 0);
        assert!(!r.has_listeners() || r.relay("2", &"z".into()) == 1);
    }

    #[test]
    fn caps_guilds_and_clients() {
        let r = registry(8);
        let a = r.register().expect("room");
        r.join(a.id, "1").expect("join");
        r.join(a.id, "2").expect("join");
        assert_eq!(r.join(a.id, "3"), Err(JoinError::TooManyGuilds));
        assert_eq!(r.join(a.id, "2"), Ok(()), "re-joining is not a new guild");
        let _b = r.register().expect("room");
        let _c = r.register().expect("room");
        assert!(r.register().is_none(), "client cap");
    }

    #[test]
    fn a_full_queue_drops_that_client_only() {
        let r = registry(1);
        let slow = r.register().expect("room");
        let mut fast = r.register().expect("room");
        r.join(slow.id, "1").expect("join");
        r.join(fast.id, "1").expect("join");
        assert_eq!(r.relay("1", &"a".into()), 2);
        let _ = fast.rx.try_recv();
        assert_eq!(r.relay("1", &"b".into()), 1, "slow one is full");
        assert!(slow.too_slow.load(Ordering::Relaxed));
        assert_eq!(r.client_count(), 1);
        let _ = fast.rx.try_recv();
        assert_eq!(r.relay("1", &"c".into()), 1);
    }
}
