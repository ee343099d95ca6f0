//! The OCI image store.
mod digest;
pub mod error;
pub mod reference;
mod unpack;
