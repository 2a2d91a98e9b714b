//! admin (work in progress).
