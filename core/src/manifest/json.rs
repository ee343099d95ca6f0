//! JSON reader (see event.rs for the contract).
