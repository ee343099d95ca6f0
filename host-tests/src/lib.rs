//! Shared helpers for keel host tests.
