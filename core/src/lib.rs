//! keel-core: the allocation-free heart of keel.
#![no_std]
#![forbid(unsafe_code)]

pub mod mgmt;
