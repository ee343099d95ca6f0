//! The `keel` command line: one module per subcommand.
pub mod validate;
