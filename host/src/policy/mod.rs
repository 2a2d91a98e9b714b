//! The policy runtime (work in progress).
