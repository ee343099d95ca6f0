//! `keel image pull|import|ls|rm`: the local image store.
//!
//! This module deals with the image commands. They open the store under `--root-dir`
//! (default `$KEEL_ROOT_DIR`, else /var/lib/keel) directly (the store locks itself), so
//! they work whether or not an agent runs; a running agent notices an import through
//! inotify and starts pods that were waiting for it. `pull` is in [`super::image_pull`].

use crate::image::{ImageChanges, ImageStore};
use std::path::PathBuf;

/// Usage.
pub const USAGE: &str = "\
usage: keel image pull [--root-dir DIR] [--platform OS/ARCH[/VARIANT]] REF
       keel image import [--root-dir DIR] [--name REF] [--change 'CMD [\"sh\"]']... FILE|DIR
       keel image ls [--root-dir DIR]
       keel image verify [--root-dir DIR] [REF...]
       keel image rm [--root-dir DIR] REF...

pull fetches REF (by tag or @sha256: digest) from its registry, or from the mirrors in
DIR/registries.yaml, with credentials from there or from a docker config.json.
import takes an OCI archive, a docker archive (docker save), an OCI layout directory, or a
plain rootfs tarball (then --name is required, like docker import); --change sets a
rootfs image's CMD, ENTRYPOINT, ENV, WORKDIR, USER or STOPSIGNAL (repeatable).
ls shows each image's size (config and layers as stored) and when a container last
started from it (an agent records it; images unused longest go first when the agent's
image garbage collection frees disk space), and names on stderr any image whose stored
manifest or config no longer matches its digest or whose layer blob is gone (exit 1).
verify hashes every blob of REF (default: every image) against its digest and checks its
layers are unpacked; a pull or import of the image repairs what it reports.
--root-dir defaults to $KEEL_ROOT_DIR, else /var/lib/keel.";

/// The root dir when `--root-dir` is not given: `$KEEL_ROOT_DIR`, else /var/lib/keel.
pub fn default_root_dir() -> PathBuf {
    std::env::var_os("KEEL_ROOT_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/keel"))
}

/// Runs `keel image …`; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let mut root = default_root_dir();
    let mut name: Option<String> = None;
    let mut platform: Option<String> = None;
    let mut changes = ImageChanges::default();
    let mut rest: Vec<String> = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        match flag.as_str() {
            "--root-dir" | "--name" | "--platform" | "--change" | "-c" => {
                let Some(v) = inline.or_else(|| it.next().cloned()) else {
                    eprintln!("keel image: {flag} needs a value\n{USAGE}");
                    return 2;
                };
                match flag.as_str() {
                    "--root-dir" => root = PathBuf::from(v),
                    "--name" => name = Some(v),
                    "--platform" => platform = Some(v),
                    _ => {
                        if let Err(e) = changes.apply(&v) {
                            eprintln!("keel image: --change {e}");
                            return 2;
                        }
                    }
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            f if f.starts_with('-') => {
                eprintln!("keel image: unknown flag {f}\n{USAGE}");
                return 2;
            }
            _ => rest.push(a.clone()),
        }
    }
    let sub = args.first().map(String::as_str);
    if platform.is_some() && sub != Some("pull") {
        eprintln!("keel image: --platform applies to pull only\n{USAGE}");
        return 2;
    }
    if !changes.is_empty() && sub != Some("import") {
        eprintln!("keel image: --change applies to import only\n{USAGE}");
        return 2;
    }
    if sub == Some("pull") {
        let [reference] = rest.as_slice() else {
            eprintln!("keel image pull: one REF expected\n{USAGE}");
            return 2;
        };
        return super::image_pull::run(&root, reference, platform.as_deref());
    }
    let store = match ImageStore::open(&root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel image: {e}");
            return 1;
        }
    };
    match args.first().map(String::as_str) {
        Some("import") => {
            let [path] = rest.as_slice() else {
                eprintln!("keel image import: one FILE or DIR expected\n{USAGE}");
                return 2;
            };
            match store.import_with_changes(std::path::Path::new(path), name.as_deref(), &changes) {
                Ok(refs) => {
                    for r in refs {
                        println!("imported {r}");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("keel image import: {e}");
                    1
                }
            }
        }
        Some("ls") => match store.list() {
            Ok(list) => {
                let now = std::time::SystemTime::now();
                let header = ["REFERENCE", "IMAGE ID", "SIZE", "LAST USED"];
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|i| {
                        let id = i.id.trim_start_matches("sha256:");
                        vec![
                            i.reference.clone(),
                            id[..12.min(id.len())].to_string(),
                            super::image_pull::human(i.size),
                            // When a container last started from it (the agent records it).
                            i.last_used.map_or_else(
                                || "never".to_string(),
                                |t| {
                                    let ago = now.duration_since(t).unwrap_or_default();
                                    format!("{} ago", super::client::human_duration(ago))
                                },
                            ),
                        ]
                    })
                    .collect();
                let width = super::client::widths(&header, &rows);
                println!("{}", super::client::line(&header, &width));
                for r in &rows {
                    println!("{}", super::client::line(r, &width));
                }
                let mut code = 0;
                for i in &list {
                    if let Some(d) = &i.damage {
                        eprintln!("keel image ls: {}: {d}", i.reference);
                        code = 1;
                    }
                }
                code
            }
            Err(e) => {
                eprintln!("keel image ls: {e}");
                1
            }
        },
        Some("verify") => {
            let refs = if rest.is_empty() {
                match store.list() {
                    Ok(l) => l.into_iter().map(|i| i.reference).collect(),
                    Err(e) => {
                        eprintln!("keel image verify: {e}");
                        return 1;
                    }
                }
            } else {
                rest.clone()
            };
            let mut code = 0;
            for r in &refs {
                match store.verify(r) {
                    Ok(problems) if problems.is_empty() => println!("{r}: ok"),
                    Ok(problems) => {
                        for p in problems {
                            eprintln!("keel image verify: {r}: {p}");
                        }
                        code = 1;
                    }
                    Err(e) => {
                        eprintln!("keel image verify: {r}: {e}");
                        code = 1;
                    }
                }
            }
            code
        }
        Some("rm") => {
            if rest.is_empty() {
                eprintln!("keel image rm: name at least one image\n{USAGE}");
                return 2;
            }
            let mut code = 0;
            for r in &rest {
                match store.remove(r) {
                    Ok(removed) => println!("removed {}", removed.reference),
                    Err(e) => {
                        eprintln!("keel image rm: {r}: {e}");
                        code = 1;
                    }
                }
            }
            code
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}
