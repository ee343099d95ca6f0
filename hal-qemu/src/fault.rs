//! What happens when the firmware cannot go on: a panic, a HardFault, or an interrupt
//! nobody handles. Each logs what it knows over defmt and ends QEMU with a non-zero exit
//! status (semihosting `SYS_EXIT` with `ADP_Stopped_RunTimeErrorUnknown`), so a host test
//! sees the failure instead of a hang.
//!
//! The panic message is logged only when it is a plain string literal: formatting
//! arbitrary `fmt::Arguments` would link `core::fmt` (several KiB of flash).

use core::panic::PanicInfo;

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::debug;

/// End QEMU with a failure status.
pub fn exit_failure() -> ! {
    loop {
        debug::exit(debug::EXIT_FAILURE);
    }
}

/// End QEMU with success.
pub fn exit_success() -> ! {
    loop {
        debug::exit(debug::EXIT_SUCCESS);
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    let msg = info.message().as_str().unwrap_or("(formatted message)");
    match info.location() {
        Some(loc) => defmt::error!(
            "panic at {=str}:{=u32}: {=str}",
            loc.file(),
            loc.line(),
            msg
        ),
        None => defmt::error!("panic: {=str}", msg),
    }
    exit_failure()
}

#[exception]
unsafe fn HardFault(ef: &ExceptionFrame) -> ! {
    defmt::error!(
        "HardFault: pc={=u32:#010x} lr={=u32:#010x} xpsr={=u32:#010x}",
        ef.pc(),
        ef.lr(),
        ef.xpsr()
    );
    exit_failure()
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    defmt::error!("unexpected exception or interrupt {=i16}", irqn);
    exit_failure()
}
