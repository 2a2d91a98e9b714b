//! Link protocol v1 wire types (see docs/link-protocol.md).
