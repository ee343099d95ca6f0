//! The systemd unit keel ships (`keel agent --print-systemd-unit`).
//!
//! This module deals with what systemd must know to run the agent the way SPEC 4.6
//! promises: `KillMode=process`, so stopping or restarting the service signals the agent
//! alone and the shims and containers it started keep running for the next agent to
//! adopt; `Delegate=yes`, so systemd leaves the cgroups below the service to keel; a
//! restart on failure; and the agent's own OOM score adjustment below every pod's (the
//! kubelet's -999). The ExecStart line is the running binary with the flags given.

/// The unit for a `keel` binary at `exe` run with `args` (the `keel agent` flags).
pub fn systemd_unit(exe: &std::path::Path, args: &[String]) -> String {
    let mut exec = vec![quote(&exe.display().to_string()), "agent".to_string()];
    if args.is_empty() {
        exec.extend([
            "--pod-manifest-path".into(),
            "/etc/kubernetes/manifests".into(),
        ]);
    } else {
        exec.extend(args.iter().map(|a| quote(a)));
    }
    format!(
        "\
[Unit]
Description=keel: Kubernetes static pods without a control plane
Wants=network-online.target
After=network-online.target

[Service]
ExecStart={}
Restart=always
RestartSec=5
# Stopping or restarting the service signals the agent only: the per-container shims and
# the containers keep running, and the next agent adopts them (SPEC 4.6).
KillMode=process
# keel manages the cgroups below its service and its pods' cgroups itself.
Delegate=yes
# The agent outlives every pod under memory pressure, as the kubelet (-999).
OOMScoreAdjust=-999
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
",
        exec.join(" ")
    )
}

/// An ExecStart word, quoted when systemd would split or expand it.
fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    if plain {
        w.to_string()
    } else {
        let escaped = w
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_keeps_pods_running_when_stopped() {
        let u = systemd_unit(
            std::path::Path::new("/usr/local/bin/keel"),
            &["--config".into(), "/var/lib/kubelet/config.yaml".into()],
        );
        assert!(u.contains("\nKillMode=process\n"), "{u}");
        assert!(u.contains("\nDelegate=yes\n"), "{u}");
        assert!(
            u.contains(
                "ExecStart=/usr/local/bin/keel agent --config /var/lib/kubelet/config.yaml\n"
            ),
            "{u}"
        );
        let u = systemd_unit(std::path::Path::new("/k"), &[]);
        assert!(u.contains("ExecStart=/k agent --pod-manifest-path /etc/kubernetes/manifests\n"));
        assert_eq!(quote("a b$%"), "\"a b$$%%\"");
    }
}
