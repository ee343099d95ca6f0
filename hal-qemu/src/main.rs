//! The keel firmware for QEMU `lm3s6965evb`: boots the board, then serves the management
//! protocol on UART0, sleeping between interrupts.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use keel_core::mgmt::PROTOCOL_VERSION;
use keel_qemu::server::Server;
use keel_qemu::store::FirmwareStore;
use keel_qemu::{clock, idle_until, stack, uart::Uart0};

#[entry]
fn main() -> ! {
    static mut STORE: FirmwareStore = FirmwareStore::new();
    static mut SERVER: Server = Server::new();

    stack::paint();
    let Some(cp) = cortex_m::Peripherals::take() else {
        keel_qemu::fault::exit_failure()
    };
    clock::init(cp.SYST);
    let mut uart = Uart0::init();
    defmt::info!("keel-qemu up: protocol v{=u16}", PROTOCOL_VERSION);

    loop {
        SERVER.poll(&mut uart, STORE);
        // Until the reconciler supplies poll_at(), nothing is due: sleep until an
        // interrupt (a UART byte or the clock tick).
        idle_until(None, &uart);
    }
}
