//! CNI: giving a pod's network namespace its network with the standard plugins.
//!
//! This module deals with the Container Network Interface as the container runtimes
//! drive it (CNI spec 1.0, the plugin protocol over environment and stdin/stdout):
//! finding the network configuration (the first `.conflist`, `.conf` or `.json` file of
//! `--cni-conf-dir` in name order, as containerd takes it; keel's own default when the
//! directory holds none, see [`default`]), finding plugin binaries in `--cni-bin-dir`,
//! and running `ADD` (every plugin in order, each given the previous one's result),
//! `CHECK` (in order, given the ADD result) and `DEL` (in reverse order, given the ADD
//! result). Capabilities the runtime provides (`portMappings`) go to the plugins that
//! declare them, in `runtimeConfig`. A plugin's error (its JSON `msg` and `details`, or
//! its stderr) comes back as the error's text, which the pod's status shows.
//!
//! Nothing here keeps state: the caller stores the configuration it used and the ADD
//! result beside the pod ([`crate::runtime`]'s network record), so DEL and CHECK use
//! what ADD used even after the conf dir changed or the agent restarted.

pub mod default;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The CNI version keel speaks and writes in its default network.
pub const CNI_VERSION: &str = "1.0.0";
/// The interface name inside the pod (the kubelet's and containerd's).
pub const IFNAME: &str = "eth0";
/// File name extensions of network configuration files, as libcni reads them.
const CONF_EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// Where networks and plugins are found (`--cni-conf-dir`, `--cni-bin-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// Network configuration directory (default `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Plugin directories, searched in order (default `/opt/cni/bin`, then `/usr/lib/cni`
    /// where Debian's containernetworking-plugins installs them).
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

/// A CNI failure, for the pod's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CniError(pub String);

fn fail(m: impl Into<String>) -> CniError {
    CniError(m.into())
}

/// A host port mapping (the `portMappings` capability of the portmap plugin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the node.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Node address to bind (empty: every address).
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// One pod's attachment to a network: what every plugin call is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: keel uses the sandbox's id.
    pub container_id: String,
    /// `CNI_NETNS`: the pod's network namespace (a bind-mounted file).
    pub netns: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, …).
    pub args: Vec<(String, String)>,
    /// `runtimeConfig.portMappings`.
    pub port_mappings: Vec<PortMapping>,
}

/// A network configuration list: the file it came from and its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkList {
    /// The file read.
    pub file: PathBuf,
    /// The conflist (a single-plugin `.conf` is turned into a list of one, as libcni
    /// does).
    pub config: Value,
}

impl NetworkList {
    /// The network's `name`.
    pub fn name(&self) -> &str {
        self.config["name"].as_str().unwrap_or("")
    }

    fn version(&self) -> &str {
        self.config["cniVersion"].as_str().unwrap_or(CNI_VERSION)
    }

    fn plugins(&self) -> &[Value] {
        self.config["plugins"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Parses one configuration file's bytes (`.conflist`, or a single plugin).
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<NetworkList, CniError> {
        let at = file.display();
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| fail(format!("network configuration {at}: {e}")))?;
        if !v.is_object() {
            return Err(fail(format!(
                "network configuration {at}: not a JSON object"
            )));
        }
        let config = if v.get("plugins").is_some() {
            v
        } else if v.get("type").is_some() {
            // A single-plugin .conf: libcni's ConfListFromConf.
            json!({
                "cniVersion": v["cniVersion"].clone(),
                "name": v["name"].clone(),
                "plugins": [v],
            })
        } else {
            return Err(fail(format!(
                "network configuration {at}: neither a conflist (\"plugins\") nor a plugin configuration (\"type\")"
            )));
        };
        let name_ok = config["name"].as_str().is_some_and(|n| !n.is_empty());
        if !name_ok {
            return Err(fail(format!("network configuration {at}: no \"name\"")));
        }
        let plugins = config["plugins"].as_array();
        if plugins.is_none_or(|p| p.is_empty()) {
            return Err(fail(format!(
                "network configuration {at}: \"plugins\" is empty or not a list"
            )));
        }
        for (i, p) in plugins.into_iter().flatten().enumerate() {
            if p["type"].as_str().is_none_or(str::is_empty) {
                return Err(fail(format!(
                    "network configuration {at}: plugins[{i}] has no \"type\""
                )));
            }
        }
        Ok(NetworkList {
            file: file.to_path_buf(),
            config,
        })
    }
}

/// The configuration files of `dir`, in the order libcni sorts them.
pub fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for e in rd {
        let p = e?.path();
        let ext_ok = p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| CONF_EXTENSIONS.contains(&x));
        if ext_ok && p.is_file() {
            files.push(p);
        }
    }
    crate::sort_by(&mut files, Ord::cmp);
    Ok(files)
}

/// The commands of the plugin protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Check,
    Del,
}

impl Cmd {
    fn as_str(self) -> &'static str {
        match self {
            Cmd::Add => "ADD",
            Cmd::Check => "CHECK",
            Cmd::Del => "DEL",
        }
    }
}

impl CniConfig {
    /// The network to use: the first configuration file of the conf dir. When the dir
    /// holds none, keel writes its default network there first ([`default::write`]).
    pub fn load(&self) -> Result<NetworkList, CniError> {
        let dir = &self.conf_dir;
        let list = |dir: &Path| {
            conf_files(dir).map_err(|e| {
                fail(format!(
                    "reading CNI configuration directory {}: {e}",
                    dir.display()
                ))
            })
        };
        let mut files = list(dir)?;
        if files.is_empty() {
            default::write(dir)?;
            files = list(dir)?;
        }
        let Some(first) = files.first() else {
            return Err(fail(format!(
                "no network configuration in {}",
                dir.display()
            )));
        };
        let bytes = std::fs::read(first).map_err(|e| fail(format!("{}: {e}", first.display())))?;
        NetworkList::parse(first, &bytes)
    }

    /// The binary of plugin `ty`, searched in the bin dirs in order.
    pub fn find_plugin(&self, ty: &str) -> Result<PathBuf, CniError> {
        if ty.contains('/') || ty.is_empty() {
            return Err(fail(format!("invalid plugin type {ty:?}")));
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                let dirs: Vec<String> = self
                    .bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                fail(format!(
                    "failed to find plugin {ty:?} in path [{}] (install the CNI plugins: Debian apt-get install containernetworking-plugins, or set --cni-bin-dir)",
                    dirs.join(" ")
                ))
            })
    }

    /// Runs ADD for every plugin of `net` in order; returns the final result. On failure
    /// `partial` holds the result of the last plugin that succeeded: the DEL that undoes
    /// them needs it (the firewall plugin, for one, removes its rules by the addresses
    /// it names). `progress` gets each plugin's result as it finishes, before the next
    /// plugin runs, so the caller can keep it for a DEL after a crash.
    pub fn add(
        &self,
        net: &NetworkList,
        att: &Attachment,
        partial: &mut Option<Value>,
        mut progress: impl FnMut(&Value) -> Result<(), CniError>,
    ) -> Result<Value, CniError> {
        for p in net.plugins() {
            let r = self.exec(Cmd::Add, net, p, att, partial.as_ref())?;
            *partial = Some(r);
            if let Some(r) = partial.as_ref() {
                progress(r)?;
            }
        }
        partial
            .clone()
            .ok_or_else(|| fail(format!("network {} has no plugins", net.name())))
    }

    /// Runs CHECK for every plugin of `net` in order, given the ADD `result`.
    pub fn check(
        &self,
        net: &NetworkList,
        att: &Attachment,
        result: &Value,
    ) -> Result<(), CniError> {
        if net.version().starts_with("0.1")
            || net.version().starts_with("0.2")
            || net.version().starts_with("0.3")
        {
            // CHECK came with 0.4.0; older networks cannot be checked.
            return Ok(());
        }
        for p in net.plugins() {
            self.exec(Cmd::Check, net, p, att, Some(result))?;
        }
        Ok(())
    }

    /// Runs DEL for every plugin of `net` in reverse order, given the ADD `result` if
    /// there was one. Every plugin runs even when one fails; the first error is returned.
    /// A plugin whose binary is missing is skipped: it cannot have set anything up.
    pub fn del(
        &self,
        net: &NetworkList,
        att: &Attachment,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first = None;
        for p in net.plugins().iter().rev() {
            if self.find_plugin(p["type"].as_str().unwrap_or("")).is_err() {
                continue;
            }
            if let Err(e) = self.exec(Cmd::Del, net, p, att, result) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// One plugin call.
    fn exec(
        &self,
        cmd: Cmd,
        net: &NetworkList,
        plugin: &Value,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<Value, CniError> {
        let ty = plugin["type"].as_str().unwrap_or("");
        let bin = self.find_plugin(ty)?;
        let mut conf = plugin.clone();
        conf["cniVersion"] = json!(net.version());
        conf["name"] = json!(net.name());
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        // Capabilities: a plugin gets the runtime's value of each one it declares.
        if plugin["capabilities"]["portMappings"] == json!(true) {
            conf["runtimeConfig"] = json!({ "portMappings": att.port_mappings });
        }
        if let Some(o) = conf.as_object_mut() {
            o.remove("capabilities");
        }
        let stdin = serde_json::to_vec(&conf).map_err(|e| fail(e.to_string()))?;
        let args: Vec<String> = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let path = std::env::join_paths(&self.bin_dirs).map_err(|e| fail(e.to_string()))?;
        let mut child = Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", cmd.as_str())
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_ARGS", args.join(";"))
            .env("CNI_PATH", path)
            // iptables and friends are found through PATH by the plugins.
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("running CNI plugin {}: {e}", bin.display())))?;
        if let Some(mut i) = child.stdin.take() {
            // A plugin that exits without reading its stdin is reported by its status.
            i.write_all(&stdin).ok();
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for CNI plugin {}: {e}", bin.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(fail(plugin_error(ty, cmd, &stdout, stderr.trim())));
        }
        if cmd != Cmd::Add {
            return Ok(Value::Null);
        }
        serde_json::from_slice(stdout.as_bytes()).map_err(|e| {
            fail(format!(
                "CNI plugin {ty} ADD gave a result that is not JSON ({e}): {}",
                stdout.trim()
            ))
        })
    }
}

/// The text of a failed plugin call: the spec's error object (`code`, `msg`,
/// `details`) if the plugin printed one, else its output.
fn plugin_error(ty: &str, cmd: Cmd, stdout: &str, stderr: &str) -> String {
    let what = format!("CNI plugin {ty} failed {}", cmd.as_str());
    match serde_json::from_slice::<Value>(stdout.as_bytes()) {
        Ok(v) if v.get("msg").is_some() => {
            let mut m = format!("{what}: {}", v["msg"].as_str().unwrap_or(""));
            if let Some(d) = v["details"].as_str().filter(|d| !d.is_empty()) {
                m += &format!(" ({d})");
            }
            if let Some(c) = v["code"].as_u64() {
                m += &format!(" [code {c}]");
            }
            m
        }
        _ => {
            let text = [stdout.trim(), stderr]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            format!("{what}: {text}")
        }
    }
}

/// The pod IPs of an ADD result (`ips[].address`, prefix length dropped), IPv4 first as
/// the kubelet orders `podIPs`.
pub fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    crate::sort_by_key(&mut ips, |ip| ip.contains(':'));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_plugin_conf_becomes_a_list_of_one() {
        let n = NetworkList::parse(
            Path::new("10-a.conf"),
            br#"{"cniVersion":"0.4.0","name":"a","type":"bridge","bridge":"x"}"#,
        )
        .unwrap();
        assert_eq!(n.name(), "a");
        assert_eq!(n.plugins().len(), 1);
        assert_eq!(n.plugins()[0]["bridge"], "x");
        assert_eq!(n.version(), "0.4.0");
    }

    #[test]
    fn bad_configurations_name_the_file_and_the_fault() {
        let bad = |s: &str| {
            NetworkList::parse(Path::new("/d/x.conflist"), s.as_bytes())
                .unwrap_err()
                .0
        };
        assert!(bad("{").contains("/d/x.conflist"));
        assert!(bad(r#"{"name":"n","plugins":[]}"#).contains("\"plugins\" is empty"));
        assert!(bad(r#"{"name":"n","plugins":[{"x":1}]}"#).contains("plugins[0] has no \"type\""));
        assert!(bad(r#"{"plugins":[{"type":"bridge"}]}"#).contains("no \"name\""));
        assert!(bad(r#"{"name":"n"}"#).contains("neither a conflist"));
    }

    #[test]
    fn the_first_file_in_name_order_is_used_and_other_names_are_skipped() {
        let d = std::env::temp_dir().join(format!("keel-cni-conf-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for (f, name) in [
            ("20-b.conflist", "b"),
            ("10-a.conf", "a"),
            ("05-z.txt", "z"),
        ] {
            std::fs::write(
                d.join(f),
                format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge"}}"#),
            )
            .unwrap();
        }
        let cfg = CniConfig {
            conf_dir: d.clone(),
            bin_dirs: vec![],
        };
        assert_eq!(cfg.load().unwrap().name(), "a");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_missing_plugin_names_itself_and_the_directories() {
        let cfg = CniConfig {
            conf_dir: PathBuf::from("/nonexistent"),
            bin_dirs: vec![PathBuf::from("/nonexistent/bin")],
        };
        let e = cfg.find_plugin("bridge").unwrap_err().0;
        assert!(
            e.contains("failed to find plugin \"bridge\" in path [/nonexistent/bin]"),
            "{e}"
        );
    }

    #[test]
    fn plugin_errors_carry_msg_details_and_code() {
        let m = plugin_error(
            "bridge",
            Cmd::Add,
            r#"{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range 10.1.0.0/30"}"#,
            "",
        );
        assert_eq!(
            m,
            "CNI plugin bridge failed ADD: no IP addresses available (range 10.1.0.0/30) [code 11]"
        );
        assert_eq!(
            plugin_error("x", Cmd::Del, "", "boom"),
            "CNI plugin x failed DEL: boom"
        );
    }

    #[test]
    fn result_ips_drop_the_prefix_and_put_ipv4_first() {
        let r = json!({"ips":[{"address":"fd00::5/64"},{"address":"10.1.0.5/16","gateway":"10.1.0.1"}]});
        assert_eq!(result_ips(&r), vec!["10.1.0.5", "fd00::5"]);
        assert!(result_ips(&json!({})).is_empty());
    }
}
