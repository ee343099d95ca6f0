//! keel-core: the allocation-free heart of keel.
//!
//! Manifest parser, pod model, pod state machine and reconciler, behind two platform traits.
//! `#![no_std]`, never `alloc`: every capacity is in [`config`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod hash;
pub mod machine;
pub mod manifest;
pub mod mgmt;
pub mod platform;
pub mod reconcile;
pub mod status;
pub mod time;
