//! YAML reader (see event.rs for the contract).
