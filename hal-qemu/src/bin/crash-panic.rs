//! Scenario: the firmware panics. The panic handler must log it and exit QEMU with a
//! non-zero status.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use keel_qemu::clock;

#[entry]
fn main() -> ! {
    if let Some(cp) = cortex_m::Peripherals::take() {
        clock::init(cp.SYST);
    }
    defmt::info!("scenario: panic");
    panic!("scenario panic");
}
