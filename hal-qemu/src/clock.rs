//! Milliseconds since boot from SysTick: an interrupt counts whole periods, and the
//! counter's current value gives the time within the period.
//!
//! SysTick runs from the core clock. QEMU's `lm3s6965evb` derives that clock from the
//! SYSCTL RCC register's reset value: a 200 MHz PLL divided by SYSDIV+1 = 16, i.e.
//! 12.5 MHz (not the 12 MHz of the real chip's internal oscillator). The host test
//! `clock_tracks_host_time` checks this against wall time.
//!
//! Why not just count 1 ms interrupts: under QEMU the interrupt is sometimes taken more
//! than a period late (the host deschedules QEMU), and a late periodic interrupt loses the
//! periods in between; measured, a 1 ms tick lost up to 3.5 % against wall time. Reading
//! the counter makes the clock exact as long as the interrupt is never a whole
//! [`TICK_MS`] late; the tick also bounds how late [`crate::idle_until`] wakes up.

use core::cell::Cell;

use cortex_m::peripheral::{syst::SystClkSource, SCB, SYST};
use cortex_m_rt::exception;
use critical_section::Mutex;

/// Core clock frequency under QEMU at reset (see module docs).
pub const CORE_CLOCK_HZ: u32 = 12_500_000;

/// SysTick period in milliseconds: the wake-up granularity of [`crate::idle_until`] and
/// the longest interrupt latency the clock tolerates without losing time.
pub const TICK_MS: u32 = 10;

const TICKS_PER_MS: u32 = CORE_CLOCK_HZ / 1000;
const RELOAD: u32 = TICK_MS * TICKS_PER_MS - 1;

/// Whole periods since [`init`]. A `u64` needs a critical section on Cortex-M3 (no 64-bit
/// atomics).
static PERIODS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Start the tick.
pub fn init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since the clock was started.
pub fn now_ms() -> u64 {
    critical_section::with(|cs| {
        let mut periods = PERIODS.borrow(cs).get();
        let mut current = SYST::get_current();
        // With interrupts masked a wrap shows as a pending SysTick. If it is pending now,
        // it wrapped before this check, maybe before the read above: count that period
        // and read again, after the wrap for sure.
        if SCB::is_pendst_pending() {
            periods += 1;
            current = SYST::get_current();
        }
        let in_period = (RELOAD - current.min(RELOAD)) / TICKS_PER_MS;
        periods * u64::from(TICK_MS) + u64::from(in_period)
    })
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let periods = PERIODS.borrow(cs);
        periods.set(periods.get() + 1);
    });
}
