//! `keel image import|ls|rm`: the local image store.
//!
//! This module deals with the image commands. They open the store under `--root-dir`
//! directly (the store locks itself), so they work whether or not an agent runs; a running
//! agent notices an import through inotify and starts pods that were waiting for it.

use crate::image::ImageStore;
use std::path::PathBuf;

/// Usage.
pub const USAGE: &str = "\
usage: keel image import [--root-dir DIR] [--name REF] FILE|DIR
       keel image ls [--root-dir DIR]
       keel image rm [--root-dir DIR] REF...

import takes an OCI archive, a docker archive (docker save), an OCI layout directory, or a
plain rootfs tarball (then --name is required, like docker import).";

/// Runs `keel image …`; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let mut root = PathBuf::from("/var/lib/keel");
    let mut name: Option<String> = None;
    let mut rest: Vec<String> = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        match flag.as_str() {
            "--root-dir" | "--name" => {
                let Some(v) = inline.or_else(|| it.next().cloned()) else {
                    eprintln!("keel image: {flag} needs a value\n{USAGE}");
                    return 2;
                };
                if flag == "--root-dir" {
                    root = PathBuf::from(v);
                } else {
                    name = Some(v);
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
            match store.import(std::path::Path::new(path), name.as_deref()) {
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
                println!("{:<50} {:<20} {:>10}", "REFERENCE", "IMAGE ID", "SIZE");
                for i in list {
                    let id = i.id.trim_start_matches("sha256:");
                    println!(
                        "{:<50} {:<20} {:>10}",
                        i.reference,
                        &id[..12.min(id.len())],
                        human(i.size)
                    );
                }
                0
            }
            Err(e) => {
                eprintln!("keel image ls: {e}");
                1
            }
        },
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

fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", units[u])
}
