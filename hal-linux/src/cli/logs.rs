//! `keel logs`: a container's output, read from its CRI log files.
//!
//! This module deals with finding a container's log files and printing what the
//! container wrote. The agent (over the control socket) says where the pod's logs are and
//! how many times the container has restarted; the files are read directly (SPEC 5.3):
//! `<log_dir>/<restartCount>.log` is the current run, `<restartCount-1>.log` the previous
//! one (`--previous`). Rotated pieces `<n>.log.<k>` (`.1` the newest, as the shim's
//! writer rotates them) are read oldest first, before `<n>.log`.
//!
//! Each record is `<time> <stdout|stderr> <F|P> <text>`; only the text is printed, and a
//! `P` (partial) record joins the next one without a newline. `-f` follows the live file
//! across rotations and, when the container restarts, moves on to the new run's file; it
//! ends when the pod is gone.

use super::client;
use crate::control::Client;
use crate::wire::{find_pod, ContainerInfo, PodInfo};
use keel_core::machine::State;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `-f` looks for new bytes. Short enough to feel live, long enough to cost
/// nothing; the agent is asked about restarts every [`FOLLOW_AGENT_EVERY`] looks.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Polls between two questions to the agent while following (about once a second).
pub const FOLLOW_AGENT_EVERY: u32 = 10;

/// One CRI log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// RFC 3339 time.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A `P` record: the line continues in the next record.
    pub partial: bool,
    /// The text, without the newline.
    pub text: &'a [u8],
}

/// Parses one line (without its `\n`) of a CRI log file.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    if !matches!(stream, "stdout" | "stderr") || time.is_empty() {
        return None;
    }
    // Tags are `F`, `P`, or `:`-separated lists starting with one of them.
    let partial = match tag.split(|&b| b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        partial,
        text,
    })
}

/// Turns CRI records into the container's text.
#[derive(Debug, Default)]
pub struct Renderer {
    /// Prefix each line with the time of its first record.
    pub timestamps: bool,
    /// Bytes of an unfinished line (no `\n` yet) carried to the next chunk.
    pending: Vec<u8>,
    /// The last record was partial: the next one continues its line.
    in_line: bool,
}

impl Renderer {
    /// A renderer.
    pub fn new(timestamps: bool) -> Self {
        Renderer {
            timestamps,
            ..Renderer::default()
        }
    }

    fn record(&mut self, line: &[u8], out: &mut Vec<u8>) {
        match parse_record(line) {
            Some(r) => {
                if self.timestamps && !self.in_line {
                    out.extend_from_slice(r.time.as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(r.text);
                if !r.partial {
                    out.push(b'\n');
                }
                self.in_line = r.partial;
            }
            // Not a CRI record: show it as it is rather than lose it.
            None => {
                out.extend_from_slice(line);
                out.push(b'\n');
                self.in_line = false;
            }
        }
    }

    /// Feeds bytes of a log file; complete records are rendered into `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            if self.pending.is_empty() {
                self.record(&data[..nl], out);
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&data[..nl]);
                self.record(&line, out);
            }
            data = &data[nl + 1..];
        }
        self.pending.extend_from_slice(data);
    }

    /// The end of a file that will not grow: a record cut short is rendered as it is.
    pub fn end_of_file(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.record(&line, out);
        }
    }

    /// The end of the output: close a line left open by a partial record.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.in_line {
            out.push(b'\n');
            self.in_line = false;
        }
    }
}

/// The live log file of run `n`.
pub fn live_file(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n}.log"))
}

/// Run `n`'s files in reading order: rotated pieces oldest first (`<n>.log.<k>`, highest
/// `k` first), then the live `<n>.log` (listed whether or not it exists).
pub fn run_files(dir: &Path, n: u32) -> Vec<PathBuf> {
    let prefix = format!("{n}.log.");
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let k: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((k, e.path()))
        })
        .collect();
    crate::sort_by_key(&mut rotated, |r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(live_file(dir, n));
    files
}

/// Picks the container: `-c NAME`, or the only app container; errors as kubectl words them.
pub fn pick<'a>(pod: &'a PodInfo, name: Option<&str>) -> Result<&'a ContainerInfo, String> {
    if let Some(n) = name {
        return pod
            .containers
            .iter()
            .find(|c| c.name == n)
            .ok_or_else(|| format!("container {n} is not valid for pod {}", pod.name));
    }
    let app: Vec<&ContainerInfo> = pod.containers.iter().filter(|c| !c.init).collect();
    match app.as_slice() {
        [one] => Ok(one),
        _ => {
            let names = |v: Vec<&ContainerInfo>| {
                v.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let init: Vec<&ContainerInfo> = pod.containers.iter().filter(|c| c.init).collect();
            let mut msg = format!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                pod.name,
                names(app)
            );
            if !init.is_empty() {
                msg += &format!(" or one of the init containers: [{}]", names(init));
            }
            Err(msg)
        }
    }
}

/// What to read: the run number, or why there is nothing.
pub fn which_run(pod: &PodInfo, c: &ContainerInfo, previous: bool) -> Result<u32, String> {
    let n = c.status.restart_count;
    if previous {
        return n.checked_sub(1).ok_or_else(|| {
            format!(
                "previous terminated container {:?} in pod {:?} not found",
                c.name, pod.name
            )
        });
    }
    Ok(n)
}

fn waiting_message(pod: &PodInfo, c: &ContainerInfo) -> String {
    let reason = match c.status.state {
        State::Waiting { reason, .. } => reason.as_str(),
        _ => "ContainerCreating",
    };
    format!(
        "container {:?} in pod {:?} is waiting to start: {reason}",
        c.name, pod.name
    )
}

/// Renders files in order; returns false if none of them exists. A record cut short at
/// the end of a rotated file is shown; at the end of the live file (`live_last`) it is
/// still being written and is left out.
fn print_files(
    files: &[PathBuf],
    live_last: bool,
    r: &mut Renderer,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut any = false;
    for (i, f) in files.iter().enumerate() {
        match std::fs::read(f) {
            Ok(bytes) => {
                any = true;
                r.feed(&bytes, out);
                if live_last && i + 1 == files.len() {
                    r.pending.clear();
                } else {
                    r.end_of_file(out);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", f.display()))),
        }
    }
    Ok(any)
}

/// Keeps the last `n` lines of rendered output.
fn tail(buf: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let mut seen = 0;
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &buf[i + 1..];
            }
        }
    }
    buf
}

/// An open live file being followed.
#[derive(Debug)]
struct Followed {
    path: PathBuf,
    file: File,
    ino: u64,
}

impl Followed {
    fn open(path: &Path) -> Option<Followed> {
        let file = File::open(path).ok()?;
        let ino = file.metadata().ok()?.ino();
        Some(Followed {
            path: path.to_owned(),
            file,
            ino,
        })
    }

    fn drain(&mut self, r: &mut Renderer, out: &mut Vec<u8>) -> io::Result<()> {
        let mut chunk = Vec::new();
        self.file.read_to_end(&mut chunk)?;
        r.feed(&chunk, out);
        Ok(())
    }

    /// The path now names another file (rotated away).
    fn rotated(&self) -> bool {
        std::fs::metadata(&self.path)
            .map(|m| m.ino() != self.ino)
            .unwrap_or(false)
    }
}

/// Follows the container's logs from run `n` on (already printed up to the live file's
/// current end, which `live` holds open). Returns when the pod or container is gone.
#[allow(clippy::too_many_arguments)]
fn follow(
    client: Client,
    socket: &Path,
    uid: &str,
    container: &str,
    mut n: u32,
    mut live: Option<Followed>,
    r: &mut Renderer,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut client = Some(client);
    let mut dir: Option<PathBuf> = None;
    let mut tick = 0u32;
    loop {
        let mut buf = Vec::new();
        if let Some(f) = live.as_mut() {
            f.drain(r, &mut buf)?;
            if f.rotated() {
                // The writer moved on to a fresh file: finish the old one, start the new.
                f.drain(r, &mut buf)?;
                r.end_of_file(&mut buf);
                live = Followed::open(&f.path.clone());
            }
        }
        out.write_all(&buf)?;
        out.flush()?;
        tick += 1;
        if tick % FOLLOW_AGENT_EVERY == 1 || FOLLOW_AGENT_EVERY <= 1 {
            // Ask the agent whether the pod is still there and how often it restarted.
            if client.is_none() {
                client = Client::connect(socket).ok();
            }
            if let Some(c) = client.as_mut() {
                match c.pods() {
                    Ok(pods) => {
                        let Some(pod) = pods.iter().find(|p| p.uid == uid) else {
                            break;
                        };
                        let Some(ci) = pod.containers.iter().find(|x| x.name == container) else {
                            break;
                        };
                        let d = PathBuf::from(&ci.log_dir);
                        if ci.status.restart_count > n {
                            let mut buf = Vec::new();
                            if let Some(f) = live.as_mut() {
                                f.drain(r, &mut buf)?;
                                r.end_of_file(&mut buf);
                            }
                            r.finish(&mut buf);
                            out.write_all(&buf)?;
                            n = ci.status.restart_count;
                            live = None;
                        }
                        dir = Some(d);
                    }
                    Err(_) => {
                        // The agent went away (restarting?): keep following the file and
                        // try to reconnect later.
                        client = None;
                    }
                }
            }
        }
        if live.is_none() {
            if let Some(d) = &dir {
                live = Followed::open(&live_file(d, n));
            }
        }
        std::thread::sleep(FOLLOW_POLL);
    }
    let mut buf = Vec::new();
    if let Some(f) = live.as_mut() {
        f.drain(r, &mut buf)?;
        r.end_of_file(&mut buf);
    }
    r.finish(&mut buf);
    out.write_all(&buf)?;
    out.flush()
}

/// `keel logs POD`.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
pub struct Args {
    /// The pod: full name, manifest name, NAMESPACE/NAME or UID
    #[arg(value_name = "POD")]
    pub pod: String,
    /// Keep printing what the container writes, across rotations and restarts
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous run of the container
    #[arg(short = 'p', long, conflicts_with = "follow")]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 time
    #[arg(long)]
    pub timestamps: bool,
    /// The container (needed when the pod has several)
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// Only the last N lines (-1: all)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Connection.
    #[command(flatten)]
    pub socket: super::SocketArg,
}

/// Runs `keel logs ARGS...`, writing to `out` and `err`. Returns the exit code.
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    super::run_sub("logs", args, out, err)
}

/// Runs `keel logs` with parsed arguments.
pub fn run_args(a: &Args, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let query = &a.pod;
    let tail_lines = match a.tail {
        None => None,
        Some(n) if n < 0 => None,
        Some(n) => Some(n as usize),
    };
    let (follow_on, previous) = (a.follow, a.previous);
    let socket = a.socket.path();
    let Some(c) = client::connect(&a.socket, "logs", err) else {
        return 1;
    };
    let mut c = c;
    let pods = match c.pods() {
        Ok(p) => p,
        Err(e) => return client::fail("logs", &e, err),
    };
    let node = c.info().node.clone();
    let pod = match find_pod(&pods, query, &node) {
        Ok(p) => p,
        Err(m) => {
            let _ = writeln!(err, "keel logs: {m}");
            return 1;
        }
    };
    let ci = match pick(pod, a.container.as_deref()) {
        Ok(c) => c,
        Err(m) => {
            let _ = writeln!(err, "keel logs: {m}");
            return 1;
        }
    };
    let n = match which_run(pod, ci, previous) {
        Ok(n) => n,
        Err(m) => {
            let _ = writeln!(err, "keel logs: {m}");
            return 1;
        }
    };
    let dir = PathBuf::from(&ci.log_dir);
    let files = run_files(&dir, n);
    let mut r = Renderer::new(a.timestamps);
    let mut buf = Vec::new();
    let (done, live) = files.split_at(files.len() - 1);
    let live_path = &live[0];
    let mut client = Some(c);
    let result = (|| -> io::Result<bool> {
        let mut any = print_files(done, false, &mut r, &mut buf)?;
        let mut followed = None;
        if follow_on {
            if let Some(mut f) = Followed::open(live_path) {
                any = true;
                f.drain(&mut r, &mut buf)?;
                followed = Some(f);
            }
        } else {
            any |= print_files(std::slice::from_ref(live_path), true, &mut r, &mut buf)?;
            r.finish(&mut buf);
        }
        if !any && !follow_on {
            return Ok(false);
        }
        let shown = match tail_lines {
            Some(t) => tail(&buf, t),
            None => &buf[..],
        };
        out.write_all(shown)?;
        out.flush()?;
        if follow_on {
            let (uid, name) = (pod.uid.clone(), ci.name.clone());
            if let Some(c) = client.take() {
                follow(c, &socket, &uid, &name, n, followed, &mut r, out)?;
            }
        }
        Ok(true)
    })();
    match result {
        Ok(true) => 0,
        Ok(false) => {
            let msg = match ci.status.state {
                State::Waiting { .. } | State::Creating { .. } if ci.status.last.is_none() => {
                    waiting_message(pod, ci)
                }
                _ => format!(
                    "no log file {} for container {:?}",
                    live_path.display(),
                    ci.name
                ),
            };
            let _ = writeln!(err, "keel logs: {msg}");
            1
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = writeln!(err, "keel logs: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(input: &[u8]) -> String {
        let mut r = Renderer::new(false);
        let mut out = Vec::new();
        r.feed(input, &mut out);
        r.end_of_file(&mut out);
        r.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn full_records_print_their_text_with_a_newline() {
        let log = b"2024-01-01T00:00:00.000000001Z stdout F hello world\n\
                    2024-01-01T00:00:00.000000002Z stderr F oops\n";
        assert_eq!(render(log), "hello world\noops\n");
    }

    #[test]
    fn partial_records_join_the_next_without_a_newline() {
        let log = b"t1 stdout P abc\nt2 stdout P def\nt3 stdout F ghi\nt4 stdout F \n";
        assert_eq!(render(log), "abcdefghi\n\n");
    }

    #[test]
    fn a_trailing_partial_record_is_closed_at_the_end() {
        assert_eq!(
            render(b"t1 stdout P no newline at exit\n"),
            "no newline at exit\n"
        );
    }

    #[test]
    fn text_keeps_its_spaces_and_malformed_lines_show_as_they_are() {
        assert_eq!(render(b"t stdout F  two  spaces \n"), " two  spaces \n");
        assert_eq!(render(b"garbage line\n"), "garbage line\n");
        assert_eq!(render(b"t stdout F:x tagged\n"), "tagged\n");
    }

    #[test]
    fn records_split_across_chunks_are_joined() {
        let mut r = Renderer::new(true);
        let mut out = Vec::new();
        r.feed(b"T1 stdout F he", &mut out);
        assert!(out.is_empty());
        r.feed(b"llo\nT2 stdout P a", &mut out);
        r.feed(b"b\nT3 stdout F c\n", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "T1 hello\nT2 abc\n");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 0), b"");
    }
}
