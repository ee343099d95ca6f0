//! Shared helpers for keel host tests: the parser fixture corpus, the differential
//! comparison against reference parsers (also used by the fuzz workspace), and the real
//! Linux node used by the end-to-end tests.

pub mod corpus;
pub mod differential;
pub mod linux;
