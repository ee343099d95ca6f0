//! CRI container logs (SPEC 5.3): splitting a stream into lines, formatting each as
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <text>`, and rotating the file by size.
//!
//! Lines longer than [`MAX_LINE`] are cut into `P` (partial) records followed by a final
//! `F` record, as containerd does; text left without a newline when the stream ends is
//! written as a `P` record.
//!
//! Rotation scheme: the live file is `<n>.log`. Before a write would take it past
//! `max_size`, `<n>.log.<k>` is renamed to `<n>.log.<k+1>` (the oldest, `<n>.log.<max_files-1>`,
//! is overwritten), `<n>.log` becomes `<n>.log.1`, and a fresh `<n>.log` is started. So
//! at most `max_files` files exist, `.1` the newest rotated one. Numbered suffixes
//! rather than the kubelet's timestamps keep the order obvious without parsing.
//!
//! Across restarts ([`prune`]): a container's directory holds at most `max_files` files
//! in all, the oldest (earlier runs first) deleted when a run starts or rotates, as the
//! kubelet's `containerLogMaxFiles` bounds what a container leaves on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Longest line kept in one record; longer lines are split into partial records.
/// 16 KiB matches containerd's default and bounds the shim's buffers.
pub const MAX_LINE: usize = 16 * 1024;
/// Default size at which the live log file rotates (SPEC 5.3: 10 MiB).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of log files kept, the live one included (SPEC 5.3: 5).
pub const DEFAULT_MAX_FILES: u32 = 5;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    /// The name used in the log record.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Cuts a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`; `emit(text, partial)` is called for each complete line (without its
    /// newline, `partial == false`) and for each [`MAX_LINE`] chunk of an overlong one.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) if self.buf.len() + nl <= MAX_LINE => {
                    if self.buf.is_empty() {
                        emit(&data[..nl], false);
                    } else {
                        self.buf.extend_from_slice(&data[..nl]);
                        emit(&self.buf, false);
                        self.buf.clear();
                    }
                    data = &data[nl + 1..];
                }
                _ => {
                    let room = MAX_LINE - self.buf.len();
                    let take = room.min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == MAX_LINE {
                        emit(&self.buf, true);
                        self.buf.clear();
                    }
                }
            }
        }
    }

    /// Ends the stream: text left without a newline is emitted as partial.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            emit(&self.buf, true);
            self.buf.clear();
        }
    }
}

/// Writes CRI log records to a file, rotating it by size.
#[derive(Debug)]
pub struct CriLogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl CriLogWriter {
    /// Opens (appending to) the live log file at `path`, creating its directory.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
        })
    }

    /// Writes one record: `time stream F|P text\n`.
    pub fn write_record(
        &mut self,
        time: &str,
        stream: Stream,
        partial: bool,
        text: &[u8],
    ) -> io::Result<()> {
        let mut rec = Vec::with_capacity(time.len() + text.len() + 12);
        rec.extend_from_slice(time.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_str().as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(text);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotated(&self, k: u32) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(format!(".{k}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files > 1 {
            for k in (1..self.max_files - 1).rev() {
                let from = self.rotated(k);
                if from.exists() {
                    fs::rename(&from, self.rotated(k + 1))?;
                }
            }
            fs::rename(&self.path, self.rotated(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.size = 0;
        if let Some(dir) = self.path.parent() {
            prune(dir, self.max_files as usize)?;
        }
        Ok(())
    }
}

/// Where a log file name stands in a container's history: (run, rotation), `<n>.log`
/// being `(n, 0)` and `<n>.log.<k>` `(n, k)`; `None` for other names.
fn log_age(name: &str) -> Option<(u64, u64)> {
    let (run, rest) = name.split_once(".log")?;
    let run: u64 = run.parse().ok()?;
    let k = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        Some(k) => k.parse().ok()?,
        None => return None,
    };
    Some((run, k))
}

/// Deletes the oldest log files of a container's directory `dir` (earlier runs first,
/// higher rotation numbers first within a run) until at most `keep` are left; other
/// files are left alone. Returns how many it deleted.
pub fn prune(dir: &Path, keep: usize) -> io::Result<usize> {
    let mut files: Vec<((u64, u64), PathBuf)> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                let age = log_age(&e.file_name().to_string_lossy())?;
                Some((age, e.path()))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // Oldest first: lower run, then higher rotation number.
    files.sort_by(|a, b| a.0 .0.cmp(&b.0 .0).then(b.0 .1.cmp(&a.0 .1)));
    let extra = files.len().saturating_sub(keep);
    for (_, p) in files.iter().take(extra) {
        match fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |t, p| out.push((t.to_vec(), p)));
        }
        s.finish(|t, p| out.push((t.to_vec(), p)));
        out
    }

    #[test]
    fn lines_across_chunks_are_joined() {
        let out = split(&[b"hel", b"lo\nwor", b"ld\n"]);
        assert_eq!(
            out,
            vec![(b"hello".to_vec(), false), (b"world".to_vec(), false)]
        );
    }

    #[test]
    fn text_without_newline_at_eof_is_partial() {
        assert_eq!(
            split(&[b"a\nb"]),
            vec![(b"a".to_vec(), false), (b"b".to_vec(), true)]
        );
    }

    #[test]
    fn overlong_line_is_split_into_partials_then_full() {
        let mut line = vec![b'x'; MAX_LINE + 10];
        line.push(b'\n');
        let out = split(&[&line]);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].0.len(), out[0].1), (MAX_LINE, true));
        assert_eq!((out[1].0.len(), out[1].1), (10, false));
    }

    #[test]
    fn prune_keeps_the_newest_files_across_runs() {
        let dir = std::env::temp_dir().join(format!("keel-prune-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for f in [
            "0.log",
            "1.log.2",
            "1.log.1",
            "1.log",
            "2.log",
            "10.log",
            "notes.txt",
        ] {
            fs::write(dir.join(f), "x").unwrap();
        }
        assert_eq!(prune(&dir, 3).unwrap(), 3);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1.log", "10.log", "2.log", "notes.txt"]);
        assert_eq!(prune(&dir.join("absent"), 1).unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("keel-crilog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("0.log");
        let mut w = CriLogWriter::open(&path, 100, 3).unwrap();
        for i in 0..20 {
            let text = format!("line {i:02} {}", "y".repeat(40));
            w.write_record("T", Stream::Stdout, false, text.as_bytes())
                .unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["0.log", "0.log.1", "0.log.2"]);
        let live = fs::read_to_string(&path).unwrap();
        assert!(live.starts_with("T stdout F line 19"), "{live}");
        let prev = fs::read_to_string(dir.join("0.log.1")).unwrap();
        assert!(prev.contains("line 18"), "{prev}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
