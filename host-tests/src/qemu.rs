//! Host driver for the keel firmware under QEMU (`lm3s6965evb`).
//!
//! This module deals with everything a firmware test needs from the host side:
//!
//! - building the firmware ([`build_firmware`]: `cargo build --release` in `hal-qemu/`,
//!   once per test process);
//! - starting QEMU ([`Qemu::start`]) with semihosting on, so the firmware's defmt log comes
//!   out on QEMU's stdout, and UART0 connected as a TCP client to a socket the driver
//!   listens on (`-serial tcp:127.0.0.1:PORT,nodelay=on`);
//! - decoding that log with defmt-decoder against the ELF's table into [`LogLine`]s;
//! - speaking the management protocol of [`keel_core::mgmt`] over the UART;
//! - reading flash and RAM figures from the ELF's section headers ([`ImageSize`]).
//!
//! QEMU is killed when the [`Qemu`] is dropped, so a failing (panicking) test never
//! leaves it running, and every wait has a timeout well under the 10 s a test may take.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use keel_core::mgmt::{
    self, FileStatus, FrameDecoder, PodStatus, Request, Response, Status, MAX_RESPONSE_LEN,
    PROTOCOL_VERSION,
};
use keel_core::status::Event;

/// How long a request waits for its response by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long QEMU gets to boot and connect its UART.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The firmware's main binary.
pub const FIRMWARE: &str = "keel-qemu";

/// Start of the log line [`FIRMWARE`] prints once UART0 is ready for requests.
pub const READY: &str = "keel-qemu up";

/// What went wrong while driving QEMU.
#[derive(Debug)]
pub enum DriverError {
    /// Building the firmware failed (cargo's output attached).
    Build(String),
    /// Starting QEMU or talking to it failed.
    Io(io::Error),
    /// Nothing arrived in time.
    Timeout(&'static str),
    /// QEMU exited while we waited for something else.
    Exited(ExitStatus),
    /// A frame from the firmware did not decode.
    BadFrame(String),
    /// The ELF did not hold what we need (defmt table, sections).
    Elf(String),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Build(out) => write!(f, "firmware build failed:\n{out}"),
            DriverError::Io(e) => write!(f, "i/o: {e}"),
            DriverError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            DriverError::Exited(s) => write!(f, "QEMU exited: {s}"),
            DriverError::BadFrame(e) => write!(f, "bad frame from firmware: {e}"),
            DriverError::Elf(e) => write!(f, "ELF: {e}"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<io::Error> for DriverError {
    fn from(e: io::Error) -> Self {
        DriverError::Io(e)
    }
}

/// Result of the driver's operations.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// `hal-qemu/`, the firmware's own workspace.
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hal-qemu")
}

/// Where `cargo build --release` in `hal-qemu/` puts binary `bin`.
pub fn elf_path(bin: &str) -> PathBuf {
    firmware_dir()
        .join("target/thumbv7m-none-eabi/release")
        .join(bin)
}

/// Build the firmware (all its binaries) once per process; later calls return the
/// first result.
pub fn build_firmware() -> Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // The outer cargo's flags and target dir are for the host build; the firmware
            // takes its own from hal-qemu/.cargo/config.toml.
            // The checkout's path is remapped to a constant so that the few panic-location
            // strings the firmware carries, and so its size, do not depend on where the
            // repository is cloned (the size test asserts a budget to the byte). Cargo
            // appends these rustflags to the board's own from .cargo/config.toml.
            // The cargo registry's source directories are remapped too (to `/r`): shorter
            // and the same on every machine, whatever its CARGO_HOME.
            let fw = firmware_dir();
            let root = fw
                .canonicalize()
                .unwrap_or(fw)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let mut flags = vec![format!("--remap-path-prefix={}=/keel", root.display())];
            let cargo_home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
            if let Some(src) = cargo_home.map(|h| h.join("registry/src")) {
                for e in std::fs::read_dir(src).into_iter().flatten().flatten() {
                    flags.push(format!("--remap-path-prefix={}=/r", e.path().display()));
                }
            }
            let list: Vec<String> = flags.iter().map(|f| format!("{f:?}")).collect();
            let remap = format!("target.thumbv7m-none-eabi.rustflags=[{}]", list.join(","));
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--quiet", "--config", &remap])
                .current_dir(firmware_dir())
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET")
                .output()
                .map_err(|e| format!("running cargo: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        })
        .clone()
        .map_err(DriverError::Build)
}

/// One decoded defmt log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Firmware time, as the firmware's `defmt::timestamp!` printed it (milliseconds).
    pub timestamp: String,
    /// `TRACE` … `ERROR`, or empty for `println`.
    pub level: String,
    /// The formatted message.
    pub message: String,
    /// `file:line` of the log statement, when the ELF has it.
    pub location: Option<String>,
}

impl LogLine {
    /// The firmware timestamp in milliseconds (the firmware prints `{=u64:ms}`, which
    /// defmt renders as seconds with three decimals).
    pub fn ms(&self) -> u64 {
        let (s, frac) = self
            .timestamp
            .split_once('.')
            .unwrap_or((&self.timestamp, "0"));
        let frac = format!("{frac:0<3}");
        s.trim().parse::<u64>().unwrap_or(0) * 1000 + frac[..3].parse::<u64>().unwrap_or(0)
    }
}

/// A whole status snapshot, assembled from the paginated replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The summary.
    pub status: Status,
    /// Pods in use, by slot.
    pub pods: Vec<PodStatus>,
    /// Manifest files, sorted by name.
    pub files: Vec<FileStatus>,
}

impl Snapshot {
    /// The pod whose name is `name` (the firmware suffixes names with `-qemu`; either form
    /// matches).
    pub fn pod(&self, name: &str) -> Option<&PodStatus> {
        let suffixed = format!("{name}-qemu");
        self.pods
            .iter()
            .find(|p| p.name.as_str() == name || p.name.as_str() == suffixed)
    }

    /// The file called `name`.
    pub fn file(&self, name: &str) -> Option<&FileStatus> {
        self.files.iter().find(|f| f.name.as_str() == name)
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "uptime {} ms, {} of {} pod slots used, {} files, {} manifests stored",
            self.status.uptime_ms,
            self.status.pods,
            self.status.slots,
            self.status.files,
            self.status.manifests
        )?;
        for p in &self.pods {
            write!(
                f,
                "  pod {} (slot {}, uid {}) {}",
                p.name,
                p.slot,
                p.uid,
                p.phase.as_str()
            )?;
            if let Some(r) = p.terminating {
                write!(f, ", terminating ({r:?})")?;
            }
            writeln!(f)?;
            for c in &p.containers {
                writeln!(
                    f,
                    "    {}{}: {:?}, restarts {}, ready {}, last {:?}",
                    if c.init { "init " } else { "" },
                    c.name,
                    c.state,
                    c.restart_count,
                    c.ready,
                    c.last
                )?;
            }
        }
        for file in &self.files {
            match file.state {
                keel_core::status::FileState::Rejected { error, kept } => writeln!(
                    f,
                    "  file {}: rejected: {} at {} (line {}, col {}){}",
                    file.name,
                    error.kind,
                    error.path,
                    error.mark.line,
                    error.mark.column,
                    if kept.is_some() { ", old pod kept" } else { "" }
                )?,
                state => writeln!(f, "  file {}: {state:?}", file.name)?,
            }
        }
        Ok(())
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:<5} {}", self.timestamp, self.level, self.message)?;
        if let Some(loc) = &self.location {
            write!(f, "  ({loc})")?;
        }
        Ok(())
    }
}

type SharedLog = Arc<(Mutex<Vec<LogLine>>, Condvar)>;

/// A running QEMU with the firmware; killed on drop.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    uart: TcpStream,
    frames: FrameDecoder<{ MAX_RESPONSE_LEN * 2 }>,
    responses: VecDeque<Result<Vec<u8>, mgmt::FrameError>>,
    log: SharedLog,
    stdout_reader: Option<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Qemu {
    /// Build the firmware if needed and boot binary `bin` (usually [`FIRMWARE`]).
    pub fn start(bin: &str) -> Result<Self> {
        build_firmware()?;
        let elf_path = elf_path(bin);
        let elf = std::fs::read(&elf_path)?;
        let table = defmt_decoder::Table::parse(&elf)
            .map_err(|e| DriverError::Elf(e.to_string()))?
            .ok_or_else(|| DriverError::Elf("no defmt table".into()))?;
        let locations = table.get_locations(&elf).unwrap_or_default();

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mut child = Command::new("qemu-system-arm")
            .args(["-cpu", "cortex-m3", "-machine", "lm3s6965evb", "-nographic"])
            // -nographic would put the monitor on stdio, into the defmt stream.
            .args(["-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-kernel")
            .arg(&elf_path)
            .arg("-serial")
            .arg(format!("tcp:127.0.0.1:{port},nodelay=on"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                DriverError::Io(io::Error::new(
                    e.kind(),
                    format!("starting qemu-system-arm (is it installed?): {e}"),
                ))
            })?;

        let log: SharedLog = Arc::default();
        let stdout = child.stdout.take().expect("stdout is piped");
        let sink = Arc::clone(&log);
        let stdout_reader = thread::spawn(move || decode_log(stdout, table, locations, sink));

        let uart = match accept(&listener, &mut child) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        uart.set_nodelay(true)?;
        Ok(Self {
            child,
            uart,
            frames: FrameDecoder::new(),
            responses: VecDeque::new(),
            log,
            stdout_reader: Some(stdout_reader),
            exit: None,
        })
    }

    /// Write raw bytes to the UART (for malformed-frame tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.uart.write_all(bytes)?;
        Ok(())
    }

    /// Send one request frame without waiting for the response.
    pub fn send(&mut self, request: &Request<'_>) -> Result<()> {
        let bytes =
            postcard::to_stdvec_cobs(request).map_err(|e| DriverError::BadFrame(e.to_string()))?;
        self.send_raw(&bytes)
    }

    /// Wait up to `timeout` for the next response frame.
    pub fn recv(&mut self, timeout: Duration) -> Result<Response> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.responses.pop_front() {
                let frame = frame.map_err(|e| DriverError::BadFrame(format!("{e:?}")))?;
                return mgmt::decode_response(&frame)
                    .map_err(|e| DriverError::BadFrame(e.to_string()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DriverError::Timeout("a response"));
            }
            if let Some(status) = self.child.try_wait()? {
                self.exit = Some(status);
                return Err(DriverError::Exited(status));
            }
            self.uart
                .set_read_timeout(Some(left.min(Duration::from_millis(100))))?;
            let mut buf = [0u8; 1024];
            match self.uart.read(&mut buf) {
                Ok(0) => return Err(DriverError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    let mut input = &buf[..n];
                    while let Some(frame) = self.frames.feed(&mut input) {
                        self.responses.push_back(frame.map(<[u8]>::to_vec));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send `request` and wait ([`REQUEST_TIMEOUT`]) for its response.
    pub fn request(&mut self, request: &Request<'_>) -> Result<Response> {
        self.send(request)?;
        self.recv(REQUEST_TIMEOUT)
    }

    /// Start [`FIRMWARE`], wait for its boot line and open the session (`Hello`).
    pub fn boot() -> Result<Self> {
        let mut q = Self::start(FIRMWARE)?;
        // Bytes sent before the firmware has set up UART0 are lost (enabling the PL011
        // FIFO flushes it), so wait for its boot line.
        q.wait_for_log(READY, CONNECT_TIMEOUT)?;
        match q.request(&Request::Hello {
            version: PROTOCOL_VERSION,
        })? {
            Response::Hello { version } if version == PROTOCOL_VERSION => Ok(q),
            other => Err(DriverError::BadFrame(format!("hello: {other:?}"))),
        }
    }

    /// Put a manifest; the firmware's reply (`Ok` or an error).
    pub fn put(&mut self, name: &str, bytes: &[u8]) -> Result<Response> {
        self.request(&Request::PutManifest { name, bytes })
    }

    /// Delete a manifest; the firmware's reply.
    pub fn delete(&mut self, name: &str) -> Result<Response> {
        self.request(&Request::DeleteManifest { name })
    }

    /// A whole status snapshot: the summary, then every pod slot and every file page.
    pub fn snapshot(&mut self) -> Result<Snapshot> {
        let status = match self.request(&Request::GetStatus)? {
            Response::Status(s) => s,
            other => return Err(DriverError::BadFrame(format!("status: {other:?}"))),
        };
        let mut pods = Vec::new();
        for slot in 0..status.slots {
            match self.request(&Request::GetPod { slot })? {
                Response::Pod(Some(p)) => pods.push(p),
                Response::Pod(None) => {}
                other => return Err(DriverError::BadFrame(format!("pod: {other:?}"))),
            }
        }
        let mut files = Vec::new();
        loop {
            match self.request(&Request::GetFiles {
                from: files.len() as u8,
            })? {
                Response::Files(page) => {
                    let done = page.files.is_empty()
                        || files.len() + page.files.len() >= usize::from(page.total);
                    files.extend(page.files);
                    if done {
                        break;
                    }
                }
                other => return Err(DriverError::BadFrame(format!("files: {other:?}"))),
            }
        }
        Ok(Snapshot {
            status,
            pods,
            files,
        })
    }

    /// Poll the status (every 50 ms) until `ok` holds for a snapshot or `timeout` passes;
    /// the timeout error names what was awaited and shows the last snapshot.
    pub fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut(&Snapshot) -> bool,
    ) -> Result<Snapshot> {
        let deadline = Instant::now() + timeout;
        loop {
            let snap = self.snapshot()?;
            if ok(&snap) {
                return Ok(snap);
            }
            if Instant::now() >= deadline {
                return Err(DriverError::BadFrame(format!(
                    "timed out waiting for {what}; last status:\n{snap}"
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every event the firmware still keeps with a sequence number at or after `after`.
    pub fn events(&mut self, mut after: u32) -> Result<Vec<(u32, Event)>> {
        let mut out = Vec::new();
        loop {
            match self.request(&Request::GetEvents { after })? {
                Response::Events(page) => {
                    let n = page.events.len() as u32;
                    out.extend((page.first..).zip(page.events));
                    after = page.first + n;
                    if n == 0 || after >= page.next {
                        return Ok(out);
                    }
                }
                other => return Err(DriverError::BadFrame(format!("events: {other:?}"))),
            }
        }
    }

    /// Log lines whose message contains `needle`, in order.
    pub fn log_matching(&self, needle: &str) -> Vec<LogLine> {
        self.log()
            .into_iter()
            .filter(|l| l.message.contains(needle))
            .collect()
    }

    /// Wait until at least `n` log lines contain `needle`; returns them.
    pub fn wait_for_logs(&self, needle: &str, n: usize, timeout: Duration) -> Result<Vec<LogLine>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.log_matching(needle);
            if lines.len() >= n {
                return Ok(lines);
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout("log lines"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The stack high-water mark: `(used, total)` bytes.
    pub fn stack(&mut self) -> Result<(u32, u32)> {
        match self.request(&Request::GetStack)? {
            Response::Stack { used, total } => Ok((used, total)),
            other => Err(DriverError::BadFrame(format!("stack: {other:?}"))),
        }
    }

    /// The log so far.
    pub fn log(&self) -> Vec<LogLine> {
        self.log.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait up to `timeout` for a log line whose message contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<LogLine> {
        let deadline = Instant::now() + timeout;
        let (lines, cond) = &*self.log;
        let mut guard = lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(line) = guard.iter().find(|l| l.message.contains(needle)) {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DriverError::Timeout("a log line"));
            }
            guard = cond
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait up to `timeout` for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit.or(self.child.try_wait()?) {
                self.exit = Some(status);
                // Let the log reader see the end of stdout.
                if let Some(reader) = self.stdout_reader.take() {
                    let _ = reader.join();
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout("QEMU to exit"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(reader) = self.stdout_reader.take() {
            let _ = reader.join();
        }
        if thread::panicking() {
            eprintln!("--- firmware log ---");
            for line in self.log() {
                eprintln!("{line}");
            }
        }
    }
}

/// Accept QEMU's UART connection, giving up when QEMU exits or after [`CONNECT_TIMEOUT`].
fn accept(listener: &TcpListener, child: &mut Child) -> Result<TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(status) = child.try_wait()? {
            return Err(DriverError::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(DriverError::Timeout("QEMU to connect the UART"));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Decode QEMU's stdout (defmt frames only) into `sink` until EOF.
fn decode_log(
    mut stdout: impl Read,
    table: defmt_decoder::Table,
    locations: defmt_decoder::Locations,
    sink: SharedLog,
) {
    let mut decoder = table.new_stream_decoder();
    let mut buf = [0u8; 1024];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.received(&buf[..n]);
        loop {
            let line = match decoder.decode() {
                Ok(frame) => LogLine {
                    timestamp: frame
                        .display_timestamp()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    level: frame
                        .level()
                        .map(|l| l.as_str().to_uppercase())
                        .unwrap_or_default(),
                    message: frame.display_message().to_string(),
                    location: locations
                        .get(&frame.index())
                        .map(|l| format!("{}:{}", l.file.display(), l.line)),
                },
                Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
                Err(defmt_decoder::DecodeError::Malformed) => LogLine {
                    timestamp: String::new(),
                    level: "HOST".into(),
                    message: "malformed defmt frame".into(),
                    location: None,
                },
            };
            let (lines, cond) = &*sink;
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            cond.notify_all();
        }
    }
}

/// Flash and RAM taken by a firmware image, from its ELF section headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// Code and read-only data (`.vector_table`, `.text`, `.rodata`, …), bytes.
    pub text: u64,
    /// Initialised statics (`.data`): in flash and copied to RAM at boot, bytes.
    pub data: u64,
    /// Zeroed and uninitialised statics (`.bss`, `.uninit`), bytes.
    pub bss: u64,
}

impl ImageSize {
    /// Start of the lm3s6965's SRAM; allocated sections below it are in flash.
    const RAM_START: u64 = 0x2000_0000;

    /// Read the section headers of `elf`.
    pub fn of_elf(elf: &[u8]) -> Result<Self> {
        use object::{Object, ObjectSection, SectionFlags, SectionKind};
        let file = object::File::parse(elf).map_err(|e| DriverError::Elf(e.to_string()))?;
        let mut size = ImageSize {
            text: 0,
            data: 0,
            bss: 0,
        };
        for section in file.sections() {
            let alloc = match section.flags() {
                SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
                _ => false,
            };
            if !alloc || section.size() == 0 {
                continue;
            }
            if section.address() < Self::RAM_START {
                size.text += section.size();
            } else if matches!(
                section.kind(),
                SectionKind::UninitializedData | SectionKind::UninitializedTls
            ) {
                size.bss += section.size();
            } else {
                size.data += section.size();
            }
        }
        Ok(size)
    }

    /// Bytes of flash: text plus the initial values of `.data`.
    pub fn flash(&self) -> u64 {
        self.text + self.data
    }

    /// Bytes of RAM taken by statics: `.data` plus `.bss`.
    pub fn static_ram(&self) -> u64 {
        self.data + self.bss
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flash {} B ({:.1} KiB: text {} + data {}), static RAM {} B ({:.1} KiB: data {} + bss {})",
            self.flash(),
            self.flash() as f64 / 1024.0,
            self.text,
            self.data,
            self.static_ram(),
            self.static_ram() as f64 / 1024.0,
            self.data,
            self.bss
        )
    }
}

/// A pod manifest for the firmware: `spec` is YAML indented by two spaces (the body of
/// `spec:`).
pub fn pod(name: &str, spec: &str) -> Vec<u8> {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{spec}").into_bytes()
}

/// A one-container firmware pod running task `image` with `args`; `extra` goes before
/// `containers:` in the spec.
pub fn task_pod(name: &str, image: &str, args: &[&str], extra: &str) -> Vec<u8> {
    let args: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    pod(
        name,
        &format!(
            "{extra}  containers:\n  - name: main\n    image: {image}\n    args: [{}]\n",
            args.join(", ")
        ),
    )
}

/// The firmware's size and its stack high-water mark after several scenarios' worth of
/// work (crash loop, exits, init container, liveness probe, replace, delete, a bad
/// manifest): (image size, peak stack used, stack size), in bytes. The figures of
/// hal-qemu/README.md; the qemu test checks them against the budget and `cargo xtask
/// bench` records them.
pub fn size_and_peak_stack() -> Result<(ImageSize, u32, u32)> {
    build_firmware()?;
    let size = ImageSize::of_elf(&std::fs::read(elf_path(FIRMWARE))?)?;
    let mut q = Qemu::boot()?;
    let put = |q: &mut Qemu, name: &str, bytes: &[u8]| match q.put(name, bytes)? {
        Response::Ok => Ok(()),
        other => Err(DriverError::BadFrame(format!("put {name}: {other:?}"))),
    };
    let wait = Duration::from_secs(4);
    let blink = pod(
        "blink",
        "  containers:\n  - name: blink\n    image: task:forever\n",
    );
    let never = "  restartPolicy: Never\n";
    put(
        &mut q,
        "a.yaml",
        &task_pod("a", "task:crash", &["after=50"], ""),
    )?;
    put(
        &mut q,
        "b.yaml",
        &task_pod("b", "task:exit", &["code=1"], never),
    )?;
    let spec = "  initContainers:\n  - name: setup\n    image: task:exit\n  containers:\n  - name: main\n    image: task:forever\n    args: [\"unhealthy-after=200\"]\n    livenessProbe:\n      exec:\n        command: [\"health\"]\n      periodSeconds: 1\n      failureThreshold: 1\n";
    put(&mut q, "c.yaml", &pod("c", spec))?;
    put(&mut q, "d.yaml", &blink)?;
    put(&mut q, "e.yaml", &blink)?;
    put(&mut q, "bad.yaml", b"kind: Pod\nspec: [")?;
    q.wait_for_log("Liveness probe failed", Duration::from_secs(3))?;
    put(&mut q, "d.yaml", &task_pod("d", "task:forever", &["x"], ""))?;
    q.delete("a.yaml")?;
    q.wait_status("a gone", wait, |s| s.pod("a").is_none())?;
    q.snapshot()?;
    let (used, total) = q.stack()?;
    Ok((size, used, total))
}

/// Example manifests for [`demo`]: shapes of the static pods in the repository's `examples/`
/// (a long-running service, a crash-looping one, a one-shot job, a pod with an init
/// container and a liveness probe, and a broken manifest), with firmware tasks as images.
pub const DEMO_MANIFESTS: &[(&str, &str)] = &[
    (
        "web.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: server\n    image: task:forever\n",
    ),
    (
        "flaky.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: flaky\nspec:\n  containers:\n  - name: worker\n    image: task:crash\n    args: [\"after=100\"]\n",
    ),
    (
        "job.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: job\nspec:\n  restartPolicy: Never\n  containers:\n  - name: run\n    image: task:exit\n    env:\n    - name: EXIT_CODE\n      value: \"0\"\n    - name: AFTER_MS\n      value: \"500\"\n",
    ),
    (
        "db.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db\nspec:\n  initContainers:\n  - name: migrate\n    image: task:exit\n    args: [\"after=300\"]\n  containers:\n  - name: db\n    image: task:forever\n    args: [\"unhealthy-after=1500\"]\n    livenessProbe:\n      exec:\n        command: [\"health\"]\n      periodSeconds: 1\n      failureThreshold: 1\n",
    ),
    (
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\nspec:\n  containers:\n  - name: c\n    image: [1]\n",
    ),
];

/// `cargo xtask qemu`: build the firmware, boot it in QEMU, push [`DEMO_MANIFESTS`],
/// print the decoded firmware log as it arrives for `seconds`, then the status snapshot.
pub fn demo(seconds: u64) -> Result<()> {
    println!("building the firmware (hal-qemu, release) and booting it in QEMU…");
    let mut q = Qemu::boot()?;
    for (name, yaml) in DEMO_MANIFESTS {
        println!("push {name}");
        match q.put(name, yaml.as_bytes())? {
            Response::Ok => {}
            other => println!("  refused: {other:?}"),
        }
    }
    let mut shown = 0;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(100));
        let log = q.log();
        for line in &log[shown..] {
            // The protocol chatter is noise here; show the firmware's own lines.
            if !line.message.starts_with("req ") {
                println!("{line}");
            }
        }
        shown = log.len();
    }
    println!("\n{}", q.snapshot()?);
    Ok(())
}
