//! The keel firmware for QEMU `lm3s6965evb`: boots the board, then runs keel-core's
//! reconciler over the manifest store and the task table, serving the management protocol
//! on UART0 and sleeping (`wfi`) until the reconciler's `poll_at()`, a task's next exit or
//! a UART byte.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;

use cortex_m_rt::entry;
use keel_core::mgmt::PROTOCOL_VERSION;
use keel_core::reconcile::{FileEntry, PodSlot, Scratch};
use keel_qemu::app::{App, FILE_ENTRIES, NODE, POD_SLOTS, SETTINGS};
use keel_qemu::server::Server;
use keel_qemu::store::FirmwareStore;
use keel_qemu::tasks::TaskRuntime;
use keel_qemu::{clock, idle_until, stack, uart::Uart0};

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(cp) = cortex_m::Peripherals::take() else {
        keel_qemu::fault::exit_failure()
    };
    clock::init(cp.SYST);
    let (app, server) = init();
    let mut uart = Uart0::init();
    defmt::info!(
        "keel-qemu up: protocol v{=u16}, node {=str}, {=usize} pod slots, back-off {=u64}..{=u64} ms",
        PROTOCOL_VERSION,
        NODE,
        POD_SLOTS,
        SETTINGS.backoff_initial.millis(),
        SETTINGS.backoff_max.millis()
    );

    loop {
        app.step(clock::now_ms());
        server.poll(&mut uart, app);
        match app.wake_at() {
            Some(at) if at <= clock::now_ms() => {}
            at => idle_until(at, &uart),
        }
    }
}

/// Wire the statics together. Not inlined: its temporaries (the default `Scratch` pod is
/// several KiB) are gone from the stack before the main loop starts.
#[inline(never)]
fn init() -> (&'static mut App, &'static mut Server) {
    // Everything big is a `static`, not on the stack. Those whose empty value is not all
    // zeroes are `MaybeUninit` and written here: otherwise their initial values would sit in
    // `.data`, costing flash as well as RAM.
    static mut STORE: FirmwareStore = FirmwareStore::new();
    static mut SERVER: MaybeUninit<Server> = MaybeUninit::uninit();
    static mut TASKS: MaybeUninit<TaskRuntime> = MaybeUninit::uninit();
    static mut SLOTS: MaybeUninit<[PodSlot; POD_SLOTS]> = MaybeUninit::uninit();
    static mut FILES: MaybeUninit<[FileEntry; FILE_ENTRIES]> = MaybeUninit::uninit();
    static mut SCRATCH: MaybeUninit<Scratch> = MaybeUninit::uninit();
    static mut APP: MaybeUninit<App> = MaybeUninit::uninit();
    // SAFETY: called once, from `main`, before anything else touches these statics; each
    // `&mut` is unique and handed on for good.
    unsafe {
        let store = &mut *addr_of_mut!(STORE);
        let slots = init_each(&mut *addr_of_mut!(SLOTS), PodSlot::EMPTY);
        let files = init_each(&mut *addr_of_mut!(FILES), FileEntry::EMPTY);
        let scratch = (*addr_of_mut!(SCRATCH)).write(Scratch::default());
        let tasks = (*addr_of_mut!(TASKS)).write(TaskRuntime::new());
        let server = (*addr_of_mut!(SERVER)).write(Server::new());
        let app = (*addr_of_mut!(APP)).write(App::new(slots, files, scratch, store, tasks));
        (app, server)
    }
}

/// Initialise every element of a static array in place (no array-sized stack temporary).
fn init_each<T: Clone, const N: usize>(
    array: &'static mut MaybeUninit<[T; N]>,
    value: T,
) -> &'static mut [T; N] {
    let first: *mut T = array.as_mut_ptr().cast();
    for i in 0..N {
        // SAFETY: `i < N`, so the pointer is inside the array; each element is written
        // once, before the array is used.
        unsafe { first.add(i).write(value.clone()) };
    }
    // SAFETY: every element was initialised above.
    unsafe { array.assume_init_mut() }
}
