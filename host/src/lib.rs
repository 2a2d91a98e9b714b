//! gateway-host: one upstream gateway link, fanned out to browsers, with every policy
//! decision taken by a hot-swappable WebAssembly component.
//!
//! Module map (one concept each):
//! * [`policy`]: the wasmtime runtime, the four policy slots, hot swap and rollback.
//! * [`link`]: the single upstream WebSocket link (link protocol v1).
//! * [`discord`]: direct Discord mode (Gateway v10 session + REST), behind the same seam.
//! * [`bus`]: in-process publication of upstream events.
//! * [`legacy_ws`]: the legacy voice bridge `/api/ws` (off by default).
//! * [`internal_events`]: app-side publishing `POST /api/internal/events` (off by default).
//! * [`admin`]: the operator listener (component management).
//! * [`console`]: the operator console page and its time series (admin listener).
//! * [`server`]: running a host: listeners, watcher, shutdown.
//! * [`http1`]: the HTTP/1.1 listeners and their limits; [`fd_limit`]: the descriptor
//!   budget behind the connection caps; [`write_stall`]: cutting peers that stop reading.
//! * [`client_js`]: `GET /client.js`, the browser client module.
//! * [`api_error`]: the JSON error shape shared by every route.
//! * [`logging`]: text or JSON log records (`traceId`, `event`, `latencyMs` at the top).
//! * [`metrics`]: Prometheus metrics.
//! * [`config`]: configuration from file and environment.
//! * [`cors`]: the CORS allow-list, checked at start.
//! * [`cli`]: the command line; [`authoring`]: `component new|test`, the author's kit.

pub mod admin;
pub mod api_error;
pub mod auth;
pub mod authoring;
pub mod bus;
pub mod cli;
pub mod client_js;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod console;
pub mod cors;
pub mod demo;
pub mod discord;
pub mod event_meta;
pub mod fd_limit;
pub mod http1;
pub mod internal_events;
pub mod legacy_ws;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod sse;
pub mod write_stall;
