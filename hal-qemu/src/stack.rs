//! Stack high-water mark by painting.
//!
//! At boot [`paint`] fills the unused stack (from the end of static RAM up to just below
//! the current stack pointer) with [`PATTERN`]; [`usage`] later finds the lowest word that
//! no longer holds it. The stack region is what cortex-m-rt's `link.x` leaves between
//! `_stack_end` (end of `.bss`/`.uninit`) and `_stack_start` (top of RAM).

use core::ptr::{addr_of, read_volatile, write_volatile};

/// Paint word. Not zero: zero is what `.bss` and QEMU's fresh RAM hold.
pub const PATTERN: u32 = 0xC5C5_C5C5;

/// Bytes just below the stack pointer left unpainted, for [`paint`]'s own callees.
const GUARD: usize = 64;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // Only the symbols' addresses are taken; they are never read as values.
    (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    )
}

/// Paint the unused stack. Call once, early in `main`.
pub fn paint() {
    let (bottom, _) = bounds();
    let limit = (cortex_m::register::msp::read() as usize).saturating_sub(GUARD) & !3;
    let mut p = bottom;
    while p < limit {
        // SAFETY: [bottom, limit) is RAM below the live stack and above all statics:
        // nothing references it.
        unsafe { write_volatile(p as *mut u32, PATTERN) };
        p += 4;
    }
}

/// `(used, total)` stack bytes: the high-water mark since [`paint`], and the region size.
pub fn usage() -> (u32, u32) {
    let (bottom, top) = bounds();
    let mut p = bottom;
    // SAFETY: [bottom, top) is the stack region, always mapped RAM.
    while p < top && unsafe { read_volatile(p as *const u32) } == PATTERN {
        p += 4;
    }
    ((top - p) as u32, (top - bottom) as u32)
}
