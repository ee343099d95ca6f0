//! Management protocol: the messages a management host exchanges with a keel agent over a
//! byte stream (the firmware's UART), and their framing.
//!
//! This module deals with three things, all allocation-free so firmware and host share
//! them unchanged:
//!
//! - the message types, [`Request`] (host → agent) and [`Response`] (agent → host), encoded
//!   with postcard;
//! - framing: each message is COBS-encoded and ends with one `0x00` byte. [`FrameDecoder`]
//!   collects bytes into a fixed buffer and yields whole decoded frames; a frame that does
//!   not fit is skipped up to its delimiter and reported as [`FrameError::TooLong`], so the
//!   stream resynchronises at the next `0x00`;
//! - classifying what went wrong with a frame as an [`ErrorCode`] the agent sends back.
//!   Nothing a host sends can make the decoder panic: every bad input is an error value.
//!
//! One request gets exactly one response, in order. A host starts with
//! [`Request::Hello`] and must check the version in the agent's [`Response::Hello`]
//! against [`PROTOCOL_VERSION`]; the agent answers `Hello` whatever version it is sent.
//!
//! Names travel as `&str` and manifest bytes as `&[u8]` borrowed from the frame buffer
//! (zero copy; the manifest store copies them once into its slot). That also lets the
//! agent report a name that is too long as [`ErrorCode::NameTooLong`] instead of a
//! generic decode failure.

use serde::{Deserialize, Serialize};

/// Version of this protocol. Bump on any change to the encoding of a message.
pub const PROTOCOL_VERSION: u16 = 2;

/// Longest manifest name, in bytes. Pod names are DNS labels (63) plus room for a suffix.
pub const MAX_NAME_LEN: usize = 64;

/// Largest manifest, in bytes. Matches one firmware store slot (2 KiB): real static-pod
/// manifests for firmware tasks are a few hundred bytes, and 8 slots of 2 KiB is the RAM
/// the firmware budget gives the store.
pub const MAX_MANIFEST_LEN: usize = 2048;

/// Most manifests one [`Response::Manifests`] lists; the firmware store holds 8.
pub const MAX_LISTED: usize = 8;

/// Largest encoded frame (COBS bytes, delimiter excluded) an agent must accept: a
/// `PutManifest` of [`MAX_MANIFEST_LEN`] bytes with a [`MAX_NAME_LEN`] name needs about
/// 2.13 KiB (payload + varints + one COBS byte per 254), rounded up to 2.5 KiB.
pub const MAX_FRAME_LEN: usize = 2560;

/// Largest encoded response (delimiter included). The biggest is a full manifest list.
pub const MAX_RESPONSE_LEN: usize = 1024;

/// Frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// A manifest name as the agent stores and lists it.
pub type Name = heapless::String<MAX_NAME_LEN>;

/// A request from the management host.
///
/// Append new variants at the end only, and bump [`REQUEST_VARIANTS`]: the variant index
/// is the wire tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Request<'a> {
    /// Open a session; the agent answers with its [`PROTOCOL_VERSION`].
    Hello {
        /// The host's protocol version.
        version: u16,
    },
    /// Liveness check; answered with [`Response::Pong`] carrying the same nonce.
    Ping {
        /// Echoed back.
        nonce: u32,
    },
    /// Create or replace the manifest called `name`.
    PutManifest {
        /// Manifest name, 1..=[`MAX_NAME_LEN`] bytes.
        name: &'a str,
        /// The manifest file's bytes (YAML or JSON), at most [`MAX_MANIFEST_LEN`].
        bytes: &'a [u8],
    },
    /// Remove the manifest called `name`.
    DeleteManifest {
        /// Manifest name.
        name: &'a str,
    },
    /// List stored manifests: [`Response::Manifests`].
    ListManifests,
    /// The agent's status summary: [`Response::Status`].
    GetStatus,
    /// Recent events with a sequence number at or after `after`: [`Response::Events`].
    GetEvents {
        /// First sequence number wanted (0: everything still kept).
        after: u32,
    },
    /// Stack high-water mark: [`Response::Stack`].
    GetStack,
    /// One pod slot's status: [`Response::Pod`] (status is paginated: one pod per frame).
    GetPod {
        /// Slot index, `0..Status::slots`.
        slot: u8,
    },
    /// Manifest files from index `from` on, at most [`FILES_PER_PAGE`]: [`Response::Files`].
    GetFiles {
        /// Index of the first file (files are sorted by name).
        from: u8,
    },
}

/// Number of [`Request`] variants; a frame whose tag is at or past this is
/// [`ErrorCode::UnknownRequest`].
pub const REQUEST_VARIANTS: u32 = 10;

/// The agent's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// No alloc to box the list; an agent builds one response at a time (~660 bytes).
#[allow(clippy::large_enum_variant)]
pub enum Response {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The agent's protocol version.
        version: u16,
    },
    /// Answer to [`Request::Ping`].
    Pong {
        /// The request's nonce.
        nonce: u32,
    },
    /// The request was carried out.
    Ok,
    /// The request (or frame) was refused; nothing changed.
    Error {
        /// Why.
        code: ErrorCode,
    },
    /// Answer to [`Request::ListManifests`].
    Manifests(heapless::Vec<ManifestInfo, MAX_LISTED>),
    /// Answer to [`Request::GetStatus`].
    Status(Status),
    /// Answer to [`Request::GetEvents`].
    Events(Events),
    /// Answer to [`Request::GetStack`]: bytes of stack ever used, of `total`.
    Stack {
        /// High-water mark in bytes.
        used: u32,
        /// Size of the stack region in bytes.
        total: u32,
    },
    /// Answer to [`Request::GetPod`]: `None` for an unused slot.
    Pod(Option<PodStatus>),
    /// Answer to [`Request::GetFiles`].
    Files(FilesPage),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorCode {
    /// The frame was not valid COBS, or not a valid postcard `Request`.
    Malformed,
    /// The frame was longer than [`MAX_FRAME_LEN`]; it was skipped.
    FrameTooLong,
    /// The frame's tag names no request this agent knows (a newer host?).
    UnknownRequest,
    /// The manifest is larger than [`MAX_MANIFEST_LEN`] (or the store's slot).
    ManifestTooLarge,
    /// The name is empty.
    NameEmpty,
    /// The name is longer than [`MAX_NAME_LEN`].
    NameTooLong,
    /// Every store slot is taken by another name.
    StoreFull,
    /// No manifest has that name.
    NotFound,
    /// This agent does not implement the request.
    Unsupported,
}

/// One stored manifest, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ManifestInfo {
    /// Its name.
    pub name: Name,
    /// Its size in bytes.
    pub len: u16,
    /// The store's change counter when it was last written.
    pub revision: u32,
}

/// Most containers one [`PodStatus`] carries: init and app containers of the firmware's
/// `small` configuration (1 + 1), with room to spare.
pub const MAX_STATUS_CONTAINERS: usize = 4;

/// Files per [`Response::Files`] page.
pub const FILES_PER_PAGE: usize = 4;

/// Events per [`Response::Events`].
pub const MAX_EVENTS: usize = 8;

/// A pod UID as reported.
pub type Uid = heapless::String<64>;

/// The agent's status summary; pods and files are fetched page by page with
/// [`Request::GetPod`] and [`Request::GetFiles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// Milliseconds since boot.
    pub uptime_ms: u64,
    /// Pod slots (ask [`Request::GetPod`] for `0..slots`).
    pub slots: u8,
    /// Slots in use.
    pub pods: u8,
    /// Manifest files the reconciler tracks (ask [`Request::GetFiles`]).
    pub files: u8,
    /// Manifests in the store.
    pub manifests: u8,
    /// The store's change counter.
    pub store_changes: u32,
    /// Events dropped from the reconciler's queue (not drained in time).
    pub events_dropped: u32,
    /// Sequence number the next event will get.
    pub next_event: u32,
}

/// A container's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ContainerState {
    /// Not running.
    Waiting {
        /// Why (Kubernetes reason).
        reason: crate::machine::WaitReason,
        /// The platform error behind a failed start.
        error: Option<crate::platform::PlatformErrorKind>,
    },
    /// Started, not yet confirmed running.
    Creating,
    /// Running since `started_at_ms`.
    Running {
        /// Milliseconds since boot.
        started_at_ms: u64,
    },
    /// Being stopped.
    Stopping,
    /// Finished for good.
    Terminated {
        /// Exit code.
        code: i32,
        /// Reason.
        reason: crate::machine::TermReason,
    },
}

/// One container's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ContainerStatus {
    /// Its name.
    pub name: Name,
    /// An init container?
    pub init: bool,
    /// Its state.
    pub state: ContainerState,
    /// Restarts so far.
    pub restart_count: u32,
    /// Ready.
    pub ready: bool,
    /// The previous run's exit code and reason.
    pub last: Option<(i32, crate::machine::TermReason)>,
}

/// One pod's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PodStatus {
    /// Slot index (events name pods by slot and generation).
    pub slot: u16,
    /// Id of the manifest file whose pod this is (`None` once its file is gone).
    pub file: Option<u32>,
    /// `metadata.name` (suffixed with the node name).
    pub name: Name,
    /// Pod UID.
    pub uid: Uid,
    /// Phase.
    pub phase: crate::status::Phase,
    /// Being terminated, and why.
    pub terminating: Option<crate::status::StopReason>,
    /// A newer version of its manifest was rejected (this one keeps running).
    pub rejected: bool,
    /// Containers, init containers first.
    pub containers: heapless::Vec<ContainerStatus, MAX_STATUS_CONTAINERS>,
}

/// One manifest file's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FileStatus {
    /// File (manifest) name.
    pub name: Name,
    /// Id used in events.
    pub id: u32,
    /// What became of it: pod, rejected (error kind, field path, line, column), ignored,
    /// duplicate, no capacity…
    pub state: crate::status::FileState,
}

/// A page of [`FileStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FilesPage {
    /// Files in all.
    pub total: u8,
    /// Files `from..from + files.len()`.
    pub files: heapless::Vec<FileStatus, FILES_PER_PAGE>,
}

/// Recent events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Events {
    /// Sequence number of `events[0]`.
    pub first: u32,
    /// Sequence number the next event will get.
    pub next: u32,
    /// Events, oldest first (at most [`MAX_EVENTS`]; older ones are gone).
    pub events: heapless::Vec<crate::status::Event, MAX_EVENTS>,
}

/// What a [`FrameDecoder`] found wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// More than the decoder's capacity before the delimiter; the frame was dropped.
    TooLong,
    /// Not valid COBS.
    BadCobs,
}

impl From<FrameError> for ErrorCode {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLong => ErrorCode::FrameTooLong,
            FrameError::BadCobs => ErrorCode::Malformed,
        }
    }
}

/// Collects a byte stream into COBS frames in a fixed `N`-byte buffer and decodes them in
/// place. `N` bounds the encoded frame length (delimiter excluded).
///
/// Empty frames (two delimiters in a row) are skipped, so a host may send a lone `0x00`
/// to flush a half-sent frame.
#[derive(Debug)]
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// Discard any partial frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// Bytes of a partial frame held so far.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// The frame buffer, to reuse between frames (for instance to encode the reply to the
    /// frame just handled, when the protocol is strictly request/response); `None` while a
    /// partial frame is held in it.
    pub fn spare(&mut self) -> Option<&mut [u8]> {
        if self.len == 0 && !self.overflowed {
            Some(&mut self.buf)
        } else {
            None
        }
    }

    /// Take bytes from the front of `input` until a frame ends; returns it (decoded) or
    /// its error. Returns `None` once `input` is empty with no frame complete. Call again
    /// with the rest of `input` after handling a frame.
    pub fn feed<'a>(&'a mut self, input: &mut &[u8]) -> Option<Result<&'a [u8], FrameError>> {
        while let Some((&byte, rest)) = input.split_first() {
            *input = rest;
            if byte == DELIMITER {
                if self.overflowed {
                    self.reset();
                    return Some(Err(FrameError::TooLong));
                }
                if self.len == 0 {
                    continue;
                }
                let len = core::mem::take(&mut self.len);
                return Some(match cobs_decode_in_place(&mut self.buf[..len]) {
                    Ok(n) => Ok(&self.buf[..n]),
                    Err(e) => Err(e),
                });
            }
            if self.overflowed {
                continue;
            }
            if self.len == N {
                self.overflowed = true;
                self.len = 0;
                continue;
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        None
    }
}

/// Decode COBS data (delimiter removed) in place; returns the decoded length.
fn cobs_decode_in_place(buf: &mut [u8]) -> Result<usize, FrameError> {
    let (mut r, mut w) = (0, 0);
    while r < buf.len() {
        let code = usize::from(buf[r]);
        if code == 0 {
            return Err(FrameError::BadCobs);
        }
        let end = r + code;
        if end > buf.len() {
            return Err(FrameError::BadCobs);
        }
        buf.copy_within(r + 1..end, w);
        w += code - 1;
        r = end;
        if code != 0xFF && r < buf.len() {
            buf[w] = 0;
            w += 1;
        }
    }
    Ok(w)
}

/// Encode `msg` as one frame (COBS, trailing delimiter included) into `out`.
pub fn encode_frame<'b, T: Serialize + ?Sized>(
    msg: &T,
    out: &'b mut [u8],
) -> Result<&'b mut [u8], postcard::Error> {
    postcard::to_slice_cobs(msg, out)
}

/// Decode a frame's payload (as yielded by [`FrameDecoder::feed`]) into a request,
/// classifying failures as the agent should report them.
pub fn decode_request(frame: &[u8]) -> Result<Request<'_>, ErrorCode> {
    match postcard::from_bytes::<Request<'_>>(frame) {
        Ok(req) => Ok(req),
        Err(_) => match leading_varint(frame) {
            Some(tag) if tag >= REQUEST_VARIANTS => Err(ErrorCode::UnknownRequest),
            _ => Err(ErrorCode::Malformed),
        },
    }
}

/// Decode a frame's payload into a response (the host side).
pub fn decode_response(frame: &[u8]) -> Result<Response, postcard::Error> {
    postcard::from_bytes(frame)
}

/// The postcard varint (u32) at the start of `bytes`, if well formed.
fn leading_varint(bytes: &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        value |= u32::from(b & 0x7F).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    fn frames<const N: usize>(
        dec: &mut FrameDecoder<N>,
        mut input: &[u8],
    ) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        while let Some(r) = dec.feed(&mut input) {
            out.push(r.map(<[u8]>::to_vec));
        }
        out
    }

    #[test]
    fn request_round_trips_through_a_frame() {
        let req = Request::PutManifest {
            name: "web",
            bytes: b"apiVersion: v1\0kind: Pod\n",
        };
        let mut buf = [0u8; 128];
        let enc = encode_frame(&req, &mut buf).unwrap();
        assert_eq!(enc.last(), Some(&DELIMITER));
        assert_eq!(enc.iter().filter(|&&b| b == 0).count(), 1);
        let mut dec = FrameDecoder::<64>::new();
        let mut input: &[u8] = enc;
        let frame = dec.feed(&mut input).unwrap().unwrap();
        assert_eq!(decode_request(frame), Ok(req));
        assert!(input.is_empty());
    }

    #[test]
    fn frames_split_across_feeds_and_back_to_back() {
        let mut buf = [0u8; 64];
        let a = encode_frame(&Request::Ping { nonce: 7 }, &mut buf)
            .unwrap()
            .to_vec();
        let b = encode_frame(&Request::GetStack, &mut buf).unwrap().to_vec();
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        let mut dec = FrameDecoder::<64>::new();
        let (first, second) = stream.split_at(3);
        assert!(frames(&mut dec, first).is_empty());
        let got = frames(&mut dec, second);
        assert_eq!(got.len(), 2);
        assert_eq!(
            decode_request(got[0].as_ref().unwrap()),
            Ok(Request::Ping { nonce: 7 })
        );
        assert_eq!(
            decode_request(got[1].as_ref().unwrap()),
            Ok(Request::GetStack)
        );
    }

    #[test]
    fn empty_frames_are_skipped() {
        let mut dec = FrameDecoder::<8>::new();
        assert!(frames(&mut dec, &[0, 0, 0]).is_empty());
    }

    #[test]
    fn overlong_frame_is_reported_once_and_stream_resyncs() {
        let mut dec = FrameDecoder::<8>::new();
        let mut stream = std::vec![0x55u8; 20];
        stream.push(0);
        let mut buf = [0u8; 16];
        stream.extend_from_slice(encode_frame(&Request::GetStatus, &mut buf).unwrap());
        let got = frames(&mut dec, &stream);
        assert_eq!(got[0], Err(FrameError::TooLong));
        assert_eq!(
            decode_request(got[1].as_ref().unwrap()),
            Ok(Request::GetStatus)
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn frame_of_exactly_capacity_is_accepted() {
        let mut dec = FrameDecoder::<4>::new();
        let got = frames(&mut dec, &[4, 1, 2, 3, 0]);
        assert_eq!(got, [Ok(std::vec![1, 2, 3])]);
        let got = frames(&mut dec, &[5, 1, 2, 3, 4, 0]);
        assert_eq!(got, [Err(FrameError::TooLong)]);
    }

    #[test]
    fn cobs_decodes_implicit_zeros_and_long_blocks() {
        let mut dec = FrameDecoder::<600>::new();
        assert_eq!(frames(&mut dec, &[1, 1, 1, 0]), [Ok(std::vec![0, 0])]);
        assert_eq!(
            frames(&mut dec, &[3, 0x11, 0x22, 2, 0x33, 0]),
            [Ok(std::vec![0x11, 0x22, 0, 0x33])]
        );
        let data: Vec<u8> = (1..=254u8).chain([7]).collect();
        let mut stream = std::vec![0xFF];
        stream.extend(1..=254u8);
        stream.extend([2, 7, 0]);
        assert_eq!(frames(&mut dec, &stream), [Ok(data)]);
    }

    #[test]
    fn bad_cobs_is_an_error_not_a_panic() {
        let mut dec = FrameDecoder::<16>::new();
        assert_eq!(frames(&mut dec, &[9, 1, 2, 0]), [Err(FrameError::BadCobs)]);
        // And the decoder still works afterwards.
        assert_eq!(frames(&mut dec, &[2, 9, 0]), [Ok(std::vec![9])]);
    }

    #[test]
    fn unknown_tag_and_garbage_are_classified() {
        assert_eq!(
            decode_request(&[REQUEST_VARIANTS as u8]),
            Err(ErrorCode::UnknownRequest)
        );
        assert_eq!(
            decode_request(&[0x80, 0x01]),
            Err(ErrorCode::UnknownRequest)
        );
        assert_eq!(decode_request(&[]), Err(ErrorCode::Malformed));
        assert_eq!(decode_request(&[0xFF; 6]), Err(ErrorCode::Malformed));
        // PutManifest whose byte length runs past the frame.
        assert_eq!(
            decode_request(&[2, 1, b'a', 50, 1]),
            Err(ErrorCode::Malformed)
        );
        // Name that is not UTF-8.
        assert_eq!(decode_request(&[2, 1, 0xFF, 0]), Err(ErrorCode::Malformed));
    }

    #[test]
    fn request_variants_matches_the_last_tag() {
        let mut buf = [0u8; 8];
        let enc = postcard::to_slice(&Request::GetFiles { from: 0 }, &mut buf).unwrap();
        assert_eq!(u32::from(enc[0]), REQUEST_VARIANTS - 1);
    }

    #[test]
    fn largest_put_fits_max_frame_len() {
        let name = "n".repeat(MAX_NAME_LEN);
        let bytes = std::vec![0xAB; MAX_MANIFEST_LEN];
        let mut buf = std::vec![0u8; 4096];
        let enc = encode_frame(
            &Request::PutManifest {
                name: &name,
                bytes: &bytes,
            },
            &mut buf,
        )
        .unwrap();
        assert!(
            enc.len() - 1 <= MAX_FRAME_LEN,
            "{} > {MAX_FRAME_LEN}",
            enc.len() - 1
        );
    }

    #[test]
    fn largest_response_fits_max_response_len() {
        let mut list = heapless::Vec::new();
        for _ in 0..MAX_LISTED {
            let name = Name::try_from("n".repeat(MAX_NAME_LEN).as_str()).unwrap();
            list.push(ManifestInfo {
                name,
                len: u16::MAX,
                revision: u32::MAX,
            })
            .unwrap();
        }
        let mut buf = [0u8; MAX_RESPONSE_LEN];
        let enc = encode_frame(&Response::Manifests(list.clone()), &mut buf).unwrap();
        let mut dec = FrameDecoder::<MAX_RESPONSE_LEN>::new();
        let mut input: &[u8] = enc;
        let frame = dec.feed(&mut input).unwrap().unwrap();
        assert_eq!(decode_response(frame), Ok(Response::Manifests(list)));
    }

    fn round_trip_within_budget(resp: Response) {
        let mut buf = [0u8; MAX_RESPONSE_LEN];
        let enc = encode_frame(&resp, &mut buf).expect("fits MAX_RESPONSE_LEN");
        let mut dec = FrameDecoder::<MAX_RESPONSE_LEN>::new();
        let mut input: &[u8] = enc;
        let frame = dec.feed(&mut input).unwrap().unwrap();
        assert_eq!(decode_response(frame), Ok(resp));
    }

    fn long(n: usize) -> Name {
        Name::try_from("n".repeat(n).as_str()).unwrap()
    }

    #[test]
    fn largest_status_pages_fit_max_response_len() {
        use crate::machine::{TermReason, WaitReason};
        use crate::manifest::{Error, ErrorKind};
        use crate::platform::PlatformErrorKind;
        use crate::status::{Event, FileState, Phase, PodId, StopReason};
        let id = PodId {
            slot: 7,
            generation: u32::MAX,
        };
        let mut containers = heapless::Vec::new();
        for i in 0..MAX_STATUS_CONTAINERS {
            let state = if i % 2 == 0 {
                ContainerState::Waiting {
                    reason: WaitReason::CreateContainerConfigError,
                    error: Some(PlatformErrorKind::ImageNotPresent),
                }
            } else {
                ContainerState::Terminated {
                    code: i32::MIN,
                    reason: TermReason::OOMKilled,
                }
            };
            containers
                .push(ContainerStatus {
                    name: long(63),
                    init: true,
                    state,
                    restart_count: u32::MAX,
                    ready: true,
                    last: Some((i32::MIN, TermReason::Error)),
                })
                .unwrap();
        }
        round_trip_within_budget(Response::Pod(Some(PodStatus {
            slot: u16::MAX,
            file: Some(u32::MAX),
            name: long(MAX_NAME_LEN),
            uid: Uid::try_from("u".repeat(64).as_str()).unwrap(),
            phase: Phase::Running,
            terminating: Some(StopReason::Superseded),
            rejected: true,
            containers,
        })));
        let error = Error::new(
            ErrorKind::DuplicateKey,
            crate::manifest::path::FieldPath::of(&[crate::manifest::path::Seg::Index(u16::MAX); 8]),
            crate::manifest::Mark {
                line: u32::MAX,
                column: u32::MAX,
            },
        );
        let mut files = heapless::Vec::new();
        for _ in 0..FILES_PER_PAGE {
            files
                .push(FileStatus {
                    name: long(MAX_NAME_LEN),
                    id: u32::MAX,
                    state: FileState::Rejected {
                        error,
                        kept: Some(id),
                    },
                })
                .unwrap();
        }
        round_trip_within_budget(Response::Files(FilesPage { total: 255, files }));
        let mut events = heapless::Vec::new();
        for _ in 0..MAX_EVENTS {
            events
                .push(Event::ManifestRejected {
                    file: u32::MAX,
                    error,
                    kept_running: true,
                })
                .unwrap();
        }
        round_trip_within_budget(Response::Events(Events {
            first: u32::MAX,
            next: u32::MAX,
            events,
        }));
    }
}
