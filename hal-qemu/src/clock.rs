//! Milliseconds since boot, counted by SysTick interrupts.
//!
//! SysTick runs from the core clock. QEMU's `lm3s6965evb` derives that clock from the
//! SYSCTL RCC register's reset value: a 200 MHz PLL divided by SYSDIV+1 = 16, i.e.
//! 12.5 MHz (not the 12 MHz of the real chip's internal oscillator). The host test
//! `clock_tracks_host_time` checks this against wall time.

use core::cell::Cell;

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::exception;
use critical_section::Mutex;

/// Core clock frequency under QEMU at reset (see module docs).
pub const CORE_CLOCK_HZ: u32 = 12_500_000;

/// SysTick reload for a 1 ms period.
const TICKS_PER_MS: u32 = CORE_CLOCK_HZ / 1000;

/// Milliseconds since [`init`]. A `u64` needs a critical section on Cortex-M3 (no 64-bit
/// atomics); it never wraps in practice.
static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Start the 1 ms tick.
pub fn init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(TICKS_PER_MS - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since the clock was started.
pub fn now_ms() -> u64 {
    critical_section::with(|cs| MILLIS.borrow(cs).get())
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ms = MILLIS.borrow(cs);
        ms.set(ms.get() + 1);
    });
}
