//! The upstream gateway simulator.
