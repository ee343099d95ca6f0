//! PL011 UART0 of the LM3S6965 at `0x4000_C000` (IRQ 5), as embedded-io `Read`/`Write`.
//!
//! Receive is interrupt-driven: the UART0 handler drains the hardware FIFO into a
//! [`RX_RING`]-byte ring, so bytes that arrive while the main loop is busy (handling a
//! frame, writing a reply) are kept. When the ring is full the handler leaves the rest in
//! the hardware FIFO and masks the receive interrupt until the main loop has taken bytes
//! out ([`Uart0::try_read`] then moves the rest and unmasks it): no byte is ever dropped
//! here. The FIFO filling
//! up then holds the sender back (QEMU stops delivering; on silicon that is where
//! RTS/CTS would come in). Dropping bytes instead used to turn a large frame arriving
//! while the main loop was slow (a loaded host) into a `Malformed` reply. Transmit is
//! blocking on the TX FIFO (QEMU drains it instantly).

use core::cell::RefCell;
use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use critical_section::Mutex;
use heapless::Deque;
use lm3s6965::interrupt;

/// Receive ring size. 1 KiB absorbs ~90 ms at 115200 baud of main-loop latency.
pub const RX_RING: usize = 1024;

const BASE: usize = 0x4000_C000;
const DR: usize = 0x000;
const FR: usize = 0x018;
const IBRD: usize = 0x024;
const FBRD: usize = 0x028;
const LCRH: usize = 0x02C;
const CR: usize = 0x030;
const IFLS: usize = 0x034;
const IMSC: usize = 0x038;
const ICR: usize = 0x044;

const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const LCRH_FEN: u32 = 1 << 4;
const LCRH_WLEN8: u32 = 0b11 << 5;
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;
/// Receive and receive-timeout interrupts.
const INT_RX: u32 = (1 << 4) | (1 << 6);

/// SYSCTL RCGC1: clock gating for UART0 (bit 0). QEMU ignores it; real silicon needs it.
const SYSCTL_RCGC1: usize = 0x400F_E104;

static RX: Mutex<RefCell<Deque<u8, RX_RING>>> = Mutex::new(RefCell::new(Deque::new()));

fn read(off: usize) -> u32 {
    // SAFETY: BASE + off is a PL011 register; reads have no side effect we rely on
    // beyond DR, which only the interrupt handler reads.
    unsafe { read_volatile((BASE + off) as *const u32) }
}

fn write(off: usize, value: u32) {
    // SAFETY: BASE + off is a PL011 register.
    unsafe { write_volatile((BASE + off) as *mut u32, value) }
}

/// Handle to UART0. Only [`Uart0::init`] makes one; create it once.
#[derive(Debug)]
pub struct Uart0 {
    _private: (),
}

impl Uart0 {
    /// Configure UART0 for 115200 8N1 with FIFOs and unmask its receive interrupt.
    pub fn init() -> Self {
        // SAFETY: read-modify-write of the clock gating register at boot, before any
        // other code uses it.
        unsafe {
            let rcgc1 = SYSCTL_RCGC1 as *mut u32;
            write_volatile(rcgc1, read_volatile(rcgc1) | 1);
        }
        write(CR, 0);
        // 12.5 MHz / (16 * 115200) = 6.78: IBRD 6, FBRD round(0.78 * 64) = 50.
        write(IBRD, 6);
        write(FBRD, 50);
        write(LCRH, LCRH_WLEN8 | LCRH_FEN);
        write(IFLS, 0); // RX interrupt at 1/8 full; the timeout interrupt covers the rest.
        write(ICR, 0x7FF);
        write(IMSC, INT_RX);
        write(CR, CR_UARTEN | CR_TXE | CR_RXE);
        // SAFETY: the handler below only touches RX (behind a critical section) and the
        // UART's receive registers.
        unsafe { cortex_m::peripheral::NVIC::unmask(lm3s6965::Interrupt::UART0) };
        Self { _private: () }
    }

    /// Bytes waiting in the receive ring.
    pub fn rx_pending(&self) -> usize {
        critical_section::with(|cs| RX.borrow_ref(cs).len())
    }

    /// Move up to `buf.len()` received bytes into `buf` without waiting, then refill the
    /// room made from the hardware FIFO (the handler masks itself while the ring is full).
    pub fn try_read(&mut self, buf: &mut [u8]) -> usize {
        critical_section::with(|cs| {
            let mut rx = RX.borrow_ref_mut(cs);
            let mut n = 0;
            for slot in buf.iter_mut() {
                match rx.pop_front() {
                    Some(b) => *slot = b,
                    None => break,
                }
                n += 1;
            }
            drain(&mut rx);
            n
        })
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = Infallible;
}

impl embedded_io::Read for Uart0 {
    /// Blocks (sleeping) until at least one byte is available.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.try_read(buf);
            if n > 0 {
                return Ok(n);
            }
            crate::idle_until(None, self);
        }
    }
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.rx_pending() > 0)
    }
}

impl embedded_io::Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while read(FR) & FR_TXFF != 0 {}
            write(DR, u32::from(b));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        while read(FR) & FR_BUSY != 0 {}
        Ok(())
    }
}

#[interrupt]
fn UART0() {
    critical_section::with(|cs| drain(&mut RX.borrow_ref_mut(cs)));
}

/// Moves bytes from the hardware FIFO into `rx` while it has room. With the ring full,
/// the rest stays in the FIFO and the receive interrupt is masked (the main loop, which
/// has bytes to take, calls this again from [`Uart0::try_read`]); otherwise it is
/// unmasked.
fn drain(rx: &mut Deque<u8, RX_RING>) {
    // Cleared before the FIFO is emptied, not after: a byte arriving once the loop has
    // seen the FIFO empty raises it again, where clearing it last would leave that byte
    // waiting (QEMU raises it only when a byte lands in an empty FIFO).
    write(ICR, INT_RX);
    while read(FR) & FR_RXFE == 0 {
        if rx.is_full() {
            write(IMSC, 0);
            return;
        }
        // Bits 8..11 are framing/parity/break/overrun flags; the byte is kept anyway
        // and a corrupted frame fails COBS or postcard decoding.
        // SAFETY: not full (checked just above).
        unsafe { rx.push_back_unchecked(read(DR) as u8) };
    }
    write(IMSC, INT_RX);
}
