//! Manifests: bytes to a validated pod spec.
pub mod event;
pub mod json;
pub mod yaml;
