//! Where an import reads its members from: a directory (an OCI layout or an unpacked
//! docker archive) or a tar archive, indexed once so members are read in place by
//! offset, without extracting the archive anywhere. Member names come from untrusted
//! documents (`docker save`'s manifest.json), so both kinds refuse names that climb out
//! with `..` or are absolute, and the tar kind resolves symlinks inside the archive's own
//! namespace only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{ImageError, Result};

/// How many symlinks/hardlinks one lookup may follow inside an archive.
const MAX_LINK_HOPS: usize = 40;

/// A collection of named members an import reads from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A directory on the host.
    Dir(PathBuf),
    /// An uncompressed tar archive and its member index.
    Tar(TarIndex),
}

/// The regular files and links of a tar archive, by normalised name.
#[derive(Debug)]
pub(crate) struct TarIndex {
    path: PathBuf,
    files: HashMap<String, (u64, u64)>,
    symlinks: HashMap<String, String>,
    hardlinks: HashMap<String, String>,
}

/// Normalises a member name: drops `.` and empty components; `None` for `..` or absolute.
fn normalise(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl TarIndex {
    /// Reads the headers of the tar at `path`. Fails if it is not a tar.
    pub(crate) fn build(path: &Path) -> Result<TarIndex> {
        let file = File::open(path).map_err(ImageError::io(path))?;
        let mut archive = tar::Archive::new(file);
        let mut idx = TarIndex {
            path: path.to_path_buf(),
            files: HashMap::new(),
            symlinks: HashMap::new(),
            hardlinks: HashMap::new(),
        };
        for entry in archive.entries_with_seek().map_err(ImageError::io(path))? {
            let entry = entry.map_err(ImageError::io(path))?;
            let Ok(name) = std::str::from_utf8(&entry.path_bytes()).map(str::to_string) else {
                continue;
            };
            let Some(name) = normalise(&name) else {
                continue;
            };
            let link = || {
                entry
                    .link_name_bytes()
                    .and_then(|l| String::from_utf8(l.into_owned()).ok())
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    idx.files
                        .insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink => {
                    if let Some(l) = link() {
                        idx.symlinks.insert(name, l);
                    }
                }
                tar::EntryType::Link => {
                    if let Some(l) = link() {
                        idx.hardlinks.insert(name, l);
                    }
                }
                _ => {}
            }
        }
        Ok(idx)
    }

    /// Whether the archive holds no member at all (so is probably not a tar).
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.symlinks.is_empty() && self.hardlinks.is_empty()
    }

    /// Finds the regular file `name` refers to, following links inside the archive.
    fn lookup(&self, name: &str) -> Option<(u64, u64)> {
        let mut cur = normalise(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(&f) = self.files.get(&cur) {
                return Some(f);
            }
            if let Some(t) = self.hardlinks.get(&cur) {
                cur = normalise(t.trim_start_matches('/'))?;
                continue;
            }
            let t = self.symlinks.get(&cur)?;
            let joined = if let Some(abs) = t.strip_prefix('/') {
                abs.to_string()
            } else {
                match cur.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{t}"),
                    None => t.clone(),
                }
            };
            cur = resolve_dots(&joined)?;
        }
        None
    }
}

/// Resolves `..` lexically; `None` if it climbs above the root.
fn resolve_dots(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Source {
    /// The file or directory this source reads from.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Source::Dir(p) => p,
            Source::Tar(t) => &t.path,
        }
    }

    /// Whether member `name` exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => normalise(name).is_some_and(|n| d.join(n).is_file()),
            Source::Tar(t) => t.lookup(name).is_some(),
        }
    }

    fn missing(&self, name: &str) -> ImageError {
        ImageError::Missing {
            archive: self.path().to_path_buf(),
            name: name.to_string(),
        }
    }

    /// Opens member `name` for reading.
    pub(crate) fn open(&self, name: &str) -> Result<Box<dyn Read>> {
        match self {
            Source::Dir(d) => {
                let rel = normalise(name).ok_or_else(|| self.missing(name))?;
                let p = d.join(rel);
                match File::open(&p) {
                    Ok(f) => Ok(Box::new(f)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.missing(name)),
                    Err(e) => Err(ImageError::io(p)(e)),
                }
            }
            Source::Tar(t) => {
                let (offset, size) = t.lookup(name).ok_or_else(|| self.missing(name))?;
                let mut f = File::open(&t.path).map_err(ImageError::io(&t.path))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(ImageError::io(&t.path))?;
                Ok(Box::new(f.take(size)))
            }
        }
    }

    /// Reads member `name` (a JSON document) into memory, up to the JSON size limit.
    pub(crate) fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open(name)?
            .take(super::oci::MAX_JSON_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(ImageError::io(self.path().join(name)))?;
        if buf.len() as u64 > super::oci::MAX_JSON_BYTES {
            return Err(ImageError::Invalid {
                what: format!("{}: {name}", self.path().display()),
                reason: "JSON document larger than 16 MiB".into(),
            });
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_climb_out() {
        assert_eq!(normalise("./a//b/"), Some("a/b".into()));
        assert_eq!(normalise("../a"), None);
        assert_eq!(normalise("/etc/passwd"), None);
        assert_eq!(resolve_dots("a/../../b"), None);
        assert_eq!(resolve_dots("a/b/../c"), Some("a/c".into()));
    }
}
