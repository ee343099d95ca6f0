//! keel-linux deals with everything keel needs from a Linux host: running containers
//! with runc (the [`runtime`] module) and, later, images, the manifest directory and the
//! control socket. The `keel` binary in `main.rs` is a thin dispatcher over this library.

pub mod runtime;
