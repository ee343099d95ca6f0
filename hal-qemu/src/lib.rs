//! keel-qemu: board support and management server for running keel-core as firmware on
//! QEMU's `lm3s6965evb` (TI Stellaris LM3S6965: Cortex-M3, 256 KiB flash, 64 KiB RAM).
//!
//! This crate deals with the board: the SysTick millisecond [`clock`], the PL011 [`uart`]
//! (UART0, interrupt-driven receive), [`stack`] painting for the high-water mark, the
//! [`fault`] paths (panic, HardFault: log over defmt, exit QEMU non-zero), sleeping until
//! a deadline ([`idle_until`]); and, above it, the RAM manifest [`store`] (keel-core's
//! manifest source), the [`tasks`] runtime (keel-core's runtime: firmware tasks selected
//! by image name), the [`app`] that runs keel-core's reconciler over both, and the
//! management [`server`] that speaks keel-core's [`keel_core::mgmt`] protocol on UART0.
//!
//! Logs go out as defmt over semihosting, so QEMU's stdout carries only defmt frames; the
//! UART carries only protocol frames. The firmware binaries (`src/main.rs`, and crash
//! scenarios under `src/bin/`) are thin: they call into this library.
#![no_std]

use defmt_semihosting as _;

pub mod app;
pub mod clock;
pub mod fault;
pub mod server;
pub mod stack;
pub mod store;
pub mod tasks;
pub mod uart;

defmt::timestamp!("{=u64:ms}", clock::now_ms());

/// Sleep (`wfi`) until `deadline_ms` (if any) has passed or UART0 has received bytes.
///
/// SysTick wakes the core every [`clock::TICK_MS`], so a deadline is met that late at most.
/// Interrupts are masked between the check and the `wfi`, so a byte arriving in between
/// still wakes it (a pending interrupt ends `wfi` even while masked).
pub fn idle_until(deadline_ms: Option<u64>, uart: &uart::Uart0) {
    loop {
        cortex_m::interrupt::disable();
        let ready = uart.rx_pending() > 0 || deadline_ms.is_some_and(|d| clock::now_ms() >= d);
        if !ready {
            cortex_m::asm::wfi();
        }
        // SAFETY: enabling interrupts is sound outside a critical section; this function
        // is never called from one.
        unsafe { cortex_m::interrupt::enable() };
        if ready {
            return;
        }
        if deadline_ms.is_none() {
            // Without a deadline, any wake-up is a reason to look at the world again.
            return;
        }
    }
}
