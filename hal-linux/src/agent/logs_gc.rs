//! Removing the CRI log directories of pods that are gone.
//!
//! This module deals with `<pod logs dir>/<namespace>_<name>_<uid>/` once its pod is
//! gone. The directory outlives the pod for a while (`--pod-log-retention`, default 60 s,
//! the kubelet's garbage-collection period), so `keel logs` and people can still read what
//! a deleted pod said last; then it is removed, whether the pod went through this agent or
//! while no agent ran (an agent killed between removing a pod and its logs leaves them to
//! the next one). Only directories of this node's static pods are touched: their names end
//! in `-<node>` (SPEC 2.4), so another tool's logs in a shared `/var/log/pods` are left
//! alone, as are the logs of any pod that still has a slot or a pod directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the agent looks for stale log directories.
pub const PERIOD: Duration = Duration::from_secs(10);

/// The pod UID of a log directory name `<namespace>_<name>_<uid>` whose pod name ends in
/// `-<node>`; `None` for any other name.
pub fn uid_of<'a>(dir_name: &'a str, node: &str) -> Option<&'a str> {
    let mut parts = dir_name.split('_');
    let (_ns, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || uid.is_empty() {
        return None;
    }
    let base = name.strip_suffix(node)?;
    base.ends_with('-').then_some(uid)
}

/// The newest modification time in `dir` and the two levels below it (container
/// directories and their log files): when the pod last wrote a log line.
fn last_write(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).ok()?.modified().ok()?;
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                if let Ok(t) = m.modified() {
                    newest = newest.max(t);
                }
                if m.is_dir() && depth < 1 {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    Some(newest)
}

/// Removes the log directories under `logs_dir` of this node's pods (`node`) that `live`
/// does not claim and that nothing wrote to for `retention`. Returns what was removed,
/// and what could not be, with why.
pub fn collect(
    logs_dir: &Path,
    node: &str,
    live: &dyn Fn(&str) -> bool,
    retention: Duration,
    now: SystemTime,
) -> (Vec<PathBuf>, Vec<String>) {
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(logs_dir) else {
        return (removed, failed);
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(uid) = name.to_str().and_then(|n| uid_of(n, node)) else {
            continue;
        };
        if live(uid) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let stale = last_write(&path)
            .is_some_and(|t| now.duration_since(t).unwrap_or(Duration::ZERO) >= retention);
        if !stale {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => failed.push(format!(
                "removing the log directory {} of a pod that is gone: {err}",
                path.display()
            )),
        }
    }
    (removed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-logs-gc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn only_this_nodes_static_pod_dirs_have_a_uid() {
        assert_eq!(uid_of("default_web-n1_abc", "n1"), Some("abc"));
        assert_eq!(uid_of("kube-system_etcd-n1_0123", "n1"), Some("0123"));
        assert_eq!(
            uid_of("default_web-n2_abc", "n1"),
            None,
            "another node's pod"
        );
        assert_eq!(uid_of("default_webn1_abc", "n1"), None, "no -<node> suffix");
        assert_eq!(uid_of("default_web-n1_", "n1"), None);
        assert_eq!(uid_of("default_web-n1_abc_x", "n1"), None);
        assert_eq!(uid_of("README", "n1"), None);
    }

    #[test]
    fn gone_pods_logs_go_after_the_retention_live_and_foreign_ones_stay() {
        let d = temp("collect");
        for n in [
            "default_gone-n1_u1",
            "default_live-n1_u2",
            "default_other-n2_u3",
        ] {
            std::fs::create_dir_all(d.join(n).join("main")).unwrap();
            std::fs::write(d.join(n).join("main/0.log"), "x\n").unwrap();
        }
        let live = |u: &str| u == "u2";
        let now = SystemTime::now();
        // Within the retention nothing goes.
        let (removed, failed) = collect(&d, "n1", &live, Duration::from_secs(60), now);
        assert!(
            removed.is_empty() && failed.is_empty(),
            "{removed:?} {failed:?}"
        );
        // After it, only the gone pod of this node.
        let later = now + Duration::from_secs(61);
        let (removed, failed) = collect(&d, "n1", &live, Duration::from_secs(60), later);
        assert_eq!(removed, vec![d.join("default_gone-n1_u1")]);
        assert!(failed.is_empty());
        assert!(d.join("default_live-n1_u2").exists());
        assert!(d.join("default_other-n2_u3").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_recent_log_write_keeps_an_old_directory() {
        let d = temp("recent");
        let pod = d.join("default_gone-n1_u1");
        std::fs::create_dir_all(pod.join("main")).unwrap();
        let f = pod.join("main/0.log");
        std::fs::write(&f, "x\n").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for p in [&pod, &pod.join("main")] {
            std::fs::File::open(p).unwrap().set_modified(old).unwrap();
        }
        // The log file itself was written just now: kept.
        let (removed, _) = collect(
            &d,
            "n1",
            &|_| false,
            Duration::from_secs(60),
            SystemTime::now(),
        );
        assert!(removed.is_empty());
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (removed, _) = collect(
            &d,
            "n1",
            &|_| false,
            Duration::from_secs(60),
            SystemTime::now(),
        );
        assert_eq!(removed, vec![pod]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
