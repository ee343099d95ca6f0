//! Shared helpers for keel host tests: the parser fixture corpus and the differential
//! comparison against reference parsers (also used by the fuzz workspace).

pub mod corpus;
pub mod differential;
