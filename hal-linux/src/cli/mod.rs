//! The `keel` command line: one module per subcommand.
pub mod image;
pub mod validate;
