//! `keel image pull REF [--platform os/arch]`: fetches an image from its registry (or the
//! mirrors `<root>/registries.yaml` names) into the store under the root dir, with or
//! without an agent running (the store locks itself; a running agent sees the new image).
//!
//! On a terminal the progress is one line per layer, redrawn in place with bytes and
//! rate as `docker pull` shows it; otherwise (a pipe, a log) it is plain lines, one per
//! event worth keeping: endpoint tried or failed, manifest resolved, each layer present,
//! resumed or verified.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use crate::image::registry::{self, LayerState, PullEvent, PullOptions, PullProgress};
use crate::image::{ImageStore, RegistryConfig};

/// Pulls `reference` into the store under `root`; returns the exit code.
pub fn run(root: &Path, reference: &str, platform: Option<&str>) -> i32 {
    let mut opts = PullOptions::default();
    if let Some(p) = platform {
        match registry::Platform::parse(p) {
            Ok(p) => opts.platform = p,
            Err(e) => {
                eprintln!("keel image pull: {e}");
                return 2;
            }
        }
    }
    let store = match ImageStore::open(root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel image pull: {e}");
            return 1;
        }
    };
    let config = match RegistryConfig::load(root) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel image pull: {e}");
            return 1;
        }
    };
    let tty = std::io::stderr().is_terminal();
    let progress = Display::new(tty);
    let started = Instant::now();
    match registry::pull(&store, &config, reference, &opts, &progress) {
        Ok(p) => {
            progress.finish();
            println!(
                "pulled {} {} (id {}) from {}: {} layer(s) fetched ({}), {} reused, {:.1} s",
                p.reference,
                p.manifest_digest,
                short(&p.id),
                p.endpoint,
                p.layers_fetched,
                human(p.bytes_fetched),
                p.layers_reused,
                started.elapsed().as_secs_f64()
            );
            0
        }
        Err(e) => {
            progress.finish();
            eprintln!("keel image pull: {e}");
            1
        }
    }
}

/// One layer's line on a terminal.
#[derive(Debug)]
struct Line {
    digest: String,
    size: u64,
    done: u64,
    state: &'static str,
    since: Instant,
    from: u64,
}

#[derive(Debug)]
struct Display {
    tty: bool,
    lines: Mutex<(Vec<Line>, usize)>,
}

impl Display {
    fn new(tty: bool) -> Display {
        Display {
            tty,
            lines: Mutex::new((Vec::new(), 0)),
        }
    }

    fn finish(&self) {
        if self.tty {
            self.redraw(true);
        }
    }

    /// Redraws the layer lines in place (`drawn` lines were printed last time).
    fn redraw(&self, _final: bool) {
        let mut g = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let (lines, drawn) = &mut *g;
        let mut out = String::new();
        if *drawn > 0 {
            out.push_str(&format!("\x1b[{}A", *drawn));
        }
        for l in lines.iter() {
            let secs = l.since.elapsed().as_secs_f64().max(0.001);
            let rate = (l.done.saturating_sub(l.from)) as f64 / secs;
            let rate = if l.state == "downloading" {
                format!(" {}/s", human(rate as u64))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "\x1b[2K{}: {:<12} {:>10} / {:<10}{rate}\n",
                short(&l.digest),
                l.state,
                human(l.done),
                human(l.size)
            ));
        }
        *drawn = lines.len();
        let mut err = std::io::stderr().lock();
        let _best_effort = err.write_all(out.as_bytes()).and_then(|()| err.flush());
    }
}

impl PullProgress for Display {
    fn event(&self, e: &PullEvent<'_>) {
        let plain = |s: String| {
            if !self.tty {
                eprintln!("{s}");
            }
        };
        match e {
            PullEvent::Trying { endpoint, mirror } => eprintln!(
                "trying {endpoint}{}",
                if *mirror { " (mirror)" } else { "" }
            ),
            PullEvent::EndpointFailed { endpoint, error } => {
                eprintln!("{endpoint}: failed: {error}");
                self.lines.lock().unwrap_or_else(|p| p.into_inner()).1 = 0;
            }
            PullEvent::Resolved {
                digest,
                layers,
                bytes,
            } => {
                eprintln!("manifest {digest}: {layers} layer(s), {}", human(*bytes));
                self.lines
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .clear();
            }
            PullEvent::Layer {
                digest,
                size,
                done,
                state,
            } => {
                let word = match state {
                    LayerState::Present => "present",
                    LayerState::Staged => "staged",
                    LayerState::Fetching { .. } => "downloading",
                    LayerState::Verified => "verified",
                };
                match state {
                    LayerState::Present => plain(format!("layer {digest}: already present")),
                    LayerState::Staged => plain(format!(
                        "layer {digest}: already fetched by an interrupted pull"
                    )),
                    LayerState::Fetching { resumed_at } if *done == *resumed_at => {
                        if *resumed_at > 0 {
                            plain(format!(
                                "layer {digest}: resuming at {} of {}",
                                human(*resumed_at),
                                human(*size)
                            ));
                        } else {
                            plain(format!("layer {digest}: fetching {}", human(*size)));
                        }
                    }
                    LayerState::Fetching { .. } => {}
                    LayerState::Verified => plain(format!("layer {digest}: verified")),
                }
                if self.tty {
                    {
                        let mut g = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                        let lines = &mut g.0;
                        match lines.iter_mut().find(|l| l.digest == *digest) {
                            Some(l) => {
                                if let LayerState::Fetching { resumed_at } = state {
                                    if *done == *resumed_at {
                                        l.since = Instant::now();
                                        l.from = *resumed_at;
                                    }
                                }
                                l.done = *done;
                                l.state = word;
                            }
                            None => lines.push(Line {
                                digest: digest.to_string(),
                                size: *size,
                                done: *done,
                                state: word,
                                since: Instant::now(),
                                from: *done,
                            }),
                        }
                    }
                    self.redraw(false);
                }
            }
            PullEvent::Unpacking => eprintln!("unpacking"),
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..12.min(hex.len())]
}

/// Bytes for people: `1.5MiB`.
pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", units[u])
}
