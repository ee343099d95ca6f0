//! Scenario: the firmware executes an undefined instruction. The UsageFault escalates to
//! HardFault (no separate handler is enabled), whose handler must log it and exit QEMU
//! with a non-zero status.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use keel_qemu as _; // panic and fault handlers, defmt logger

#[entry]
fn main() -> ! {
    defmt::info!("scenario: hardfault");
    cortex_m::asm::udf()
}
