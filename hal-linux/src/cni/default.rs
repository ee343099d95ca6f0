//! keel's default network, written when the CNI conf dir holds none.
//!
//! This module deals with choosing and writing `10-keel.conflist`: a bridge `keel0` with
//! host-local IPAM on a private /16 that collides with none of the host's routes or
//! addresses (routes through `keel0` itself excepted), or the subnet `keel0` already has
//! when it exists (the bridge plugin refuses a bridge whose address differs from its
//! gateway's, so a rewritten file must keep it even if another interface has since taken
//! a route into it), `ipMasq` for egress, `portmap` for `hostPort`,
//! `firewall` and `tuning` — what podman's default network gives, from the plugins
//! Debian's `containernetworking-plugins` ships.

use super::{CniError, CNI_VERSION};
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;

/// The file keel writes.
pub const FILE_NAME: &str = "10-keel.conflist";
/// The network's name (also host-local's data directory name).
pub const NETWORK_NAME: &str = "keel";
/// The bridge.
pub const BRIDGE: &str = "keel0";

/// Candidate subnets, in order: podman's 10.88/16 first, then its neighbours, then the
/// 172.16/12 block's upper end (clear of docker's 172.17–172.29 defaults).
const CANDIDATES: &[(u8, u8)] = &[
    (10, 88),
    (10, 89),
    (10, 90),
    (10, 91),
    (10, 92),
    (10, 93),
    (10, 94),
    (10, 95),
    (172, 30),
    (172, 31),
];

/// An IPv4 prefix: network address and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net(pub u32, pub u8);

impl Net {
    fn mask(self) -> u32 {
        if self.1 == 0 {
            0
        } else {
            u32::MAX << (32 - self.1 as u32)
        }
    }
    /// Whether the two prefixes share an address.
    pub fn overlaps(self, o: Net) -> bool {
        let m = self.mask() & o.mask();
        self.0 & m == o.0 & m
    }
}

/// The host's IPv4 routes (from `/proc/net/route`) and interface addresses, except those
/// of the interface `skip`; the default route (0/0) is left out, as a /16 inside it is
/// the point of a private subnet.
pub fn host_prefixes(skip: &str) -> Vec<Net> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[0] == skip {
                continue;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
            if let (Some(dst), Some(mask)) = (hex(f[1]), hex(f[7])) {
                let len = mask.count_ones() as u8;
                if len > 0 {
                    out.push(Net(dst, len));
                }
            }
        }
    }
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs.filter(|a| a.interface_name != skip) {
            if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
                out.push(Net(u32::from(sin.ip()), 32));
            }
        }
    }
    out
}

/// The IPv4 subnet of interface `name`, if it exists and has an address.
pub fn interface_subnet(name: &str) -> Option<Net> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs.filter(|a| a.interface_name == name) {
        let ip = a
            .address
            .as_ref()
            .and_then(|s| s.as_sockaddr_in())
            .map(|s| u32::from(s.ip()));
        let mask = a
            .netmask
            .as_ref()
            .and_then(|s| s.as_sockaddr_in())
            .map(|s| u32::from(s.ip()));
        if let (Some(ip), Some(mask)) = (ip, mask) {
            return Some(Net(ip & mask, mask.count_ones() as u8));
        }
    }
    None
}

/// The first candidate /16 that overlaps none of `taken`.
pub fn choose_subnet(taken: &[Net]) -> Option<Net> {
    CANDIDATES
        .iter()
        .map(|&(a, b)| Net(u32::from(Ipv4Addr::new(a, b, 0, 0)), 16))
        .find(|c| !taken.iter().any(|t| t.overlaps(*c)))
}

/// The default conflist for `subnet`.
pub fn conflist(subnet: Net) -> serde_json::Value {
    let s = format!("{}/{}", Ipv4Addr::from(subnet.0), subnet.1);
    json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": s }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "firewall" },
            { "type": "tuning" }
        ]
    })
}

/// Writes the default network into `dir` (created if missing), atomically.
pub fn write(dir: &Path) -> Result<(), CniError> {
    let e = |what: &str, p: &Path, err: std::io::Error| {
        CniError(format!("{what} {}: {err}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|err| e("creating", dir, err))?;
    let existing = interface_subnet(BRIDGE);
    let subnet = existing.or_else(|| choose_subnet(&host_prefixes(BRIDGE))).ok_or_else(|| {
        CniError(format!(
            "no free private /16 for the default network: every candidate collides with a host route; write a network configuration into {}",
            dir.display()
        ))
    })?;
    let body =
        serde_json::to_vec_pretty(&conflist(subnet)).map_err(|err| CniError(err.to_string()))?;
    let path = dir.join(FILE_NAME);
    crate::runtime::util::write_atomic(&path, &body).map_err(|err| e("writing", &path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        let (a, l) = s.split_once('/').unwrap();
        Net(
            u32::from(a.parse::<Ipv4Addr>().unwrap()),
            l.parse().unwrap(),
        )
    }

    #[test]
    fn the_subnet_avoids_host_routes_and_addresses() {
        assert_eq!(choose_subnet(&[]), Some(net("10.88.0.0/16")));
        assert_eq!(
            choose_subnet(&[net("10.0.0.0/8")]),
            Some(net("172.30.0.0/16"))
        );
        assert_eq!(
            choose_subnet(&[net("10.88.7.1/32"), net("10.89.0.0/24")]),
            Some(net("10.90.0.0/16"))
        );
        assert_eq!(
            choose_subnet(&[net("0.0.0.0/1")]),
            Some(net("172.30.0.0/16"))
        );
        assert_eq!(choose_subnet(&[net("0.0.0.0/1"), net("128.0.0.0/1")]), None);
    }

    #[test]
    fn the_default_network_has_every_plugin_the_readme_lists() {
        let c = conflist(net("10.88.0.0/16"));
        let types: Vec<&str> = c["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "firewall", "tuning"]);
        assert_eq!(c["plugins"][0]["bridge"], BRIDGE);
        assert_eq!(c["plugins"][0]["ipMasq"], true);
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.88.0.0/16"
        );
    }
}
