//! `grpc` probes: one unary call of the standard health service,
//! `grpc.health.v1.Health/Check`, over HTTP/2 without TLS (h2c with prior knowledge), as
//! the kubelet makes it. The probe passes when the response's status is `SERVING`.
//!
//! The client is hand-written and minimal (no crate for one call): it sends the
//! connection preface, its SETTINGS, one HEADERS frame (HPACK literals, no Huffman, no
//! dynamic table) and one DATA frame; it answers the server's SETTINGS and PING, and reads
//! frames until the stream ends. Response headers and trailers are not decoded: a
//! failed call (unknown service, `grpc-status` other than OK) carries no response
//! message, so the probe fails for want of a `SERVING` status. Frames are bounded by
//! HTTP/2's default maximum frame size, the response message by [`MAX_MESSAGE`].

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The method called.
pub const PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;
/// HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`, which this client does not raise.
const MAX_FRAME: usize = 16_384;
/// Bytes of response messages kept (a health response is a few bytes).
pub const MAX_MESSAGE: usize = 4096;
/// The stream of the call.
const STREAM: u32 = 1;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// How a health check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service reported this status (1 is `SERVING`).
    Status(u64),
    /// No status: connection, protocol or call error, timeout.
    Error(String),
}

impl Outcome {
    /// Whether the probe passed.
    pub fn ok(&self) -> bool {
        *self == Outcome::Status(SERVING)
    }
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `flags` (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A string literal, not Huffman-coded.
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The request's header block.
fn header_block(authority: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(0x83); // :method POST (static table 3)
    b.push(0x86); // :scheme http (static table 6)
                  // Literal without indexing, name from the static table: :path (4), :authority (1).
    hpack_int(&mut b, 0x00, 4, 4);
    hpack_str(&mut b, PATH);
    hpack_int(&mut b, 0x00, 4, 1);
    hpack_str(&mut b, authority);
    for (k, v) in [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", super::USER_AGENT),
    ] {
        b.push(0x00); // literal without indexing, new name
        hpack_str(&mut b, k);
        hpack_str(&mut b, v);
    }
    b
}

/// A protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The gRPC message of `HealthCheckRequest { service }`: uncompressed flag, length,
/// protobuf (field 1, length-delimited; omitted when empty, as protobuf does).
fn request_message(service: &str) -> Vec<u8> {
    let mut pb = Vec::new();
    if !service.is_empty() {
        pb.push(0x0a);
        varint(&mut pb, service.len() as u64);
        pb.extend_from_slice(service.as_bytes());
    }
    let mut m = vec![0u8];
    m.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    m.extend_from_slice(&pb);
    m
}

/// The status in a `HealthCheckResponse` (field 1, varint; 0 `UNKNOWN` when absent).
/// Unknown fields are skipped as protobuf requires.
fn response_status(pb: &[u8]) -> Result<u64, String> {
    fn read_varint(pb: &[u8], i: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *pb.get(*i).ok_or("truncated varint")?;
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    let mut status = 0;
    let mut i = 0;
    while i < pb.len() {
        let key = read_varint(pb, &mut i)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = read_varint(pb, &mut i)?,
            (_, 0) => {
                read_varint(pb, &mut i)?;
            }
            (_, 1) => i += 8,
            (_, 2) => {
                let n = read_varint(pb, &mut i)? as usize;
                i = i.checked_add(n).ok_or("length overflow")?;
            }
            (_, 5) => i += 4,
            (_, t) => return Err(format!("unsupported wire type {t}")),
        }
    }
    if i > pb.len() {
        return Err("truncated field".into());
    }
    Ok(status)
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads exactly `buf.len()` bytes before `until`.
fn read_full(s: &mut TcpStream, buf: &mut [u8], until: Instant) -> Result<(), String> {
    let mut n = 0;
    while n < buf.len() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut buf[n..]) {
            Ok(0) => return Err("connection closed".into()),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Checks `service` ("" for the server as a whole) at host:port within `timeout`.
pub fn check(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    match call(host, port, service, timeout) {
        Ok(status) => Outcome::Status(status),
        Err(e) => Outcome::Error(format!("{}{PATH}: {e}", super::host_port(host, port))),
    }
}

fn call(host: &str, port: u16, service: &str, timeout: Duration) -> Result<u64, String> {
    let until = Instant::now() + timeout;
    let authority = super::host_port(host, port);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let left = until
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    s.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_ENABLE_PUSH = 0.
    frame(&mut out, SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]);
    frame(
        &mut out,
        HEADERS,
        END_HEADERS,
        STREAM,
        &header_block(&authority),
    );
    frame(
        &mut out,
        DATA,
        END_STREAM,
        STREAM,
        &request_message(service),
    );
    s.write_all(&out).map_err(|e| e.to_string())?;

    let mut message: Vec<u8> = Vec::new();
    loop {
        let mut head = [0u8; 9];
        read_full(&mut s, &mut head, until)?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes over the maximum {MAX_FRAME}"));
        }
        let mut payload = vec![0u8; len];
        read_full(&mut s, &mut payload, until)?;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                s.write_all(&ack).map_err(|e| e.to_string())?;
            }
            PING if flags & ACK == 0 => {
                let mut pong = Vec::new();
                frame(&mut pong, PING, ACK, 0, &payload);
                s.write_all(&pong).map_err(|e| e.to_string())?;
            }
            GOAWAY => return Err("the server sent GOAWAY".into()),
            RST_STREAM if stream == STREAM => return Err("the server reset the call".into()),
            DATA if stream == STREAM => {
                let body = if flags & PADDED != 0 {
                    let pad = *payload.first().ok_or("empty padded frame")? as usize;
                    payload
                        .get(1..len.checked_sub(pad).ok_or("bad padding")?)
                        .ok_or("bad padding")?
                } else {
                    &payload[..]
                };
                if message.len() + body.len() > MAX_MESSAGE {
                    return Err(format!("response over {MAX_MESSAGE} bytes"));
                }
                message.extend_from_slice(body);
            }
            _ => {}
        }
        if stream == STREAM && flags & END_STREAM != 0 && matches!(kind, DATA | HEADERS) {
            break;
        }
    }
    // One length-prefixed message: flag 0 (uncompressed), 4-byte length, protobuf.
    let Some((&[flag, a, b, c, d], rest)) = message.split_first_chunk::<5>() else {
        return Err("no response message (the call failed)".into());
    };
    if flag != 0 {
        return Err("compressed response".into());
    }
    let n = u32::from_be_bytes([a, b, c, d]) as usize;
    let pb = rest.get(..n).ok_or("truncated response message")?;
    response_status(pb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_follow_rfc_7541_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix.
        let mut b = Vec::new();
        hpack_int(&mut b, 0, 5, 10);
        assert_eq!(b, [10]);
        b.clear();
        hpack_int(&mut b, 0, 5, 1337);
        assert_eq!(b, [31, 154, 10]);
    }

    #[test]
    fn request_and_response_messages_encode_as_protobuf() {
        assert_eq!(request_message(""), [0, 0, 0, 0, 0]);
        assert_eq!(request_message("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(response_status(&[0x08, 0x01]), Ok(1));
        assert_eq!(response_status(&[]), Ok(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(response_status(&[0x12, 1, 0xff, 0x08, 0x02]), Ok(2));
        assert!(response_status(&[0x08]).is_err());
    }
}
