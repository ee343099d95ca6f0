//! The `keel` command line: one module per subcommand.
//!
//! `validate` and `generate` work offline; `pods`, `manifests`, `ps`, `logs` and
//! `inspect` ask a running agent over its control socket ([`crate::control`]), with the
//! shared flag parsing and table layout of [`client`].
pub mod client;
pub mod generate;
pub mod image;
pub mod image_pull;
pub mod inspect;
pub mod logs;
pub mod manifests;
pub mod pods;
pub mod ps;
pub mod validate;
