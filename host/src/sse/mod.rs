//! Events to browsers: `GET /api/stream` (Server-Sent Events).
//!
//! * [`frame`]: host event ids and the SSE frame, serialized once per event.
//! * [`replay`]: the bounded replay ring behind `Last-Event-ID`.
//! * [`hub`]: routes each bus event through the router slot once and fans the shared
//!   frame bytes out to the matching subscribers' bounded queues.
//! * [`stream`]: one client's response body: replay, live frames (coalesced), heartbeats.
//! * [`handler`]: the route: auth, topic checks, connection cap, resume.

pub mod catch_up;
pub mod frame;
pub mod handler;
pub mod hub;
pub mod replay;
pub mod stream;

pub use handler::router;
pub use hub::{StreamHub, StreamSettings};
