//! The management server: reads protocol frames from UART0, carries out each request
//! against the manifest store and the reconciler, and writes one response frame per
//! request. A put or delete that changes the store tells the reconciler to re-scan.
//!
//! Bad input never stops it: a frame that is too long, not COBS, not a known request or
//! not a valid one gets [`Response::Error`] with the matching [`ErrorCode`], and the next
//! frame is handled as usual. Every request is logged (manifest bytes are not).

use embedded_io::Write;
use keel_core::mgmt::{
    decode_request, encode_frame, ErrorCode, FrameDecoder, ManifestInfo, Name, Request, Response,
    MAX_FRAME_LEN, PROTOCOL_VERSION,
};

use crate::app::App;
use crate::store::PutOutcome;
use crate::uart::Uart0;
use crate::{clock, stack};

/// Bytes moved from the UART ring per step: small, so it lives on the stack cheaply.
const CHUNK: usize = 64;

/// Protocol state: the frame decoder and the response being built (~3.2 KiB, so make it a
/// `static`: cortex-m-rt's `#[entry]` turns `static mut` locals into
/// `&'static mut`). The response lives here rather than on the stack because the largest
/// one (a manifest list) is ~660 bytes and the stack is the scarcer budget. The protocol is
/// strictly request/response, so the reply is encoded into the frame decoder's buffer once
/// the request in it has been handled (no separate transmit buffer).
#[derive(Debug)]
pub struct Server {
    frames: FrameDecoder<MAX_FRAME_LEN>,
    response: Response,
    handled: u32,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with no partial frame.
    pub const fn new() -> Self {
        Self {
            frames: FrameDecoder::new(),
            // Variant 0 with zero fields: keeps the whole `static` in `.bss`, not flash.
            response: Response::Hello { version: 0 },
            handled: 0,
        }
    }

    /// Requests answered since boot (including error replies).
    pub fn handled(&self) -> u32 {
        self.handled
    }

    /// Handle every complete frame among the bytes waiting on `uart`; returns without
    /// waiting once the ring is empty.
    #[inline(never)] // Its chunk buffer stays out of the main loop's frame, under every step.
    pub fn poll(&mut self, uart: &mut Uart0, app: &mut App) {
        let mut chunk = [0u8; CHUNK];
        loop {
            let n = uart.try_read(&mut chunk);
            if n == 0 {
                return;
            }
            let mut input = &chunk[..n];
            while let Some(frame) = self.frames.feed(&mut input) {
                match frame.map_err(ErrorCode::from).and_then(decode_request) {
                    Ok(request) => handle(request, app, &mut self.response),
                    Err(code) => {
                        defmt::warn!("bad frame: {}", code);
                        self.response = Response::Error { code };
                    }
                }
                self.handled = self.handled.wrapping_add(1);
                // The frame just handled is done with: its buffer (MAX_FRAME_LEN, more than
                // MAX_RESPONSE_LEN) takes the encoded reply.
                let encoded = match self.frames.spare() {
                    Some(tx) => encode_frame(&self.response, tx).ok(),
                    None => None,
                };
                match encoded {
                    Some(bytes) => {
                        let Ok(()) = uart.write_all(bytes);
                    }
                    // Unreachable while MAX_RESPONSE_LEN covers the largest response (a
                    // keel-core test checks it); log rather than leave the host waiting.
                    None => defmt::error!("response does not fit MAX_RESPONSE_LEN"),
                }
            }
        }
    }
}

/// Carry out one request, leaving the response in `out`.
#[inline(never)] // Keeps its locals out of the long-lived frame of the main loop.
pub fn handle(request: Request<'_>, app: &mut App, out: &mut Response) {
    let result = match request {
        Request::Hello { version } => {
            defmt::info!("req Hello v{=u16}", version);
            Ok(Response::Hello {
                version: PROTOCOL_VERSION,
            })
        }
        Request::Ping { nonce } => {
            defmt::info!("req Ping {=u32}", nonce);
            Ok(Response::Pong { nonce })
        }
        Request::PutManifest { name, bytes } => {
            defmt::info!("req PutManifest {=str} ({=usize} bytes)", name, bytes.len());
            app.store.put(name, bytes).map(|outcome| {
                defmt::info!("manifest {=str}: {=str}", name, outcome.as_str());
                if outcome != PutOutcome::Unchanged {
                    app.notify_changed();
                }
                Response::Ok
            })
        }
        Request::DeleteManifest { name } => {
            defmt::info!("req DeleteManifest {=str}", name);
            app.store.delete(name).map(|()| {
                app.notify_changed();
                Response::Ok
            })
        }
        Request::ListManifests => {
            defmt::info!("req ListManifests");
            // Built in place in `out`: a list on the stack would cost ~660 bytes.
            *out = Response::Manifests(heapless::Vec::new());
            let Response::Manifests(list) = out else {
                unreachable!()
            };
            for e in app.store.list() {
                let info = ManifestInfo {
                    name: Name::try_from(e.name).unwrap_or_default(),
                    len: e.len as u16,
                    revision: e.revision,
                };
                if list.push(info).is_err() {
                    break; // More slots than MAX_LISTED: list the first ones.
                }
            }
            return;
        }
        Request::GetStatus => {
            defmt::info!("req GetStatus");
            Ok(Response::Status(app.status(clock::now_ms())))
        }
        Request::GetEvents { after } => {
            defmt::debug!("req GetEvents {=u32}", after);
            Ok(Response::Events(app.log.page(after)))
        }
        Request::GetPod { slot } => {
            defmt::debug!("req GetPod {=u8}", slot);
            // Built in place in `out`, like the manifest list.
            *out = Response::Pod(None);
            let Response::Pod(pod) = out else {
                unreachable!()
            };
            app.pod_status(usize::from(slot), pod);
            return;
        }
        Request::GetFiles { from } => {
            defmt::debug!("req GetFiles {=u8}", from);
            Ok(Response::Files(app.files_page(usize::from(from))))
        }
        Request::GetStack => {
            let (used, total) = stack::usage();
            defmt::info!("req GetStack: {=u32} of {=u32} bytes used", used, total);
            Ok(Response::Stack { used, total })
        }
    };
    *out = result.unwrap_or_else(|e| {
        let code = ErrorCode::from(e);
        defmt::warn!("refused: {}", code);
        Response::Error { code }
    });
}
