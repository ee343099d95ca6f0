//! DNS: the pod's `/etc/resolv.conf`, as the kubelet forms it and containerd writes it.
//!
//! This module deals with the resolver configuration a pod's containers see. keel has no
//! cluster DNS, so it follows the kubelet's `GetPodDNS` (pkg/kubelet/network/dns/dns.go)
//! for a kubelet without `clusterDNS`: `Default`, `ClusterFirst` and
//! `ClusterFirstWithHostNet` start from the host's resolver configuration (read as
//! `parseResolvConf` reads it: every `nameserver`, the last `search` line with trailing
//! dots removed, the last `options` line), `None` from nothing; a `dnsConfig` is appended
//! (`appendDNSConfig`: nameservers and searches added with duplicates dropped, options
//! merged by name with the pod's value winning); then `formDNSConfigFitsLimits` keeps at
//! most 3 nameservers and at most 32 searches of at most 253 characters each and 2048
//! together, saying what it left out. The file is written as containerd's
//! `parseDNSOptions` writes it (`search`, then `nameserver` lines, then `options`).

use keel_core::manifest::model::{DnsPolicy, Pod};

/// Kubernetes' `MaxDNSNameservers`: the resolver reads no more (glibc's MAXNS).
const MAX_NAMESERVERS: usize = 3;
/// Kubernetes' `MaxDNSSearchPaths` (the expanded limit, on since v1.28).
const MAX_SEARCHES: usize = 32;
/// Kubernetes' `MaxDNSSearchListChars`: the search line without its keyword.
const MAX_SEARCH_CHARS: usize = 2048;
/// Kubernetes' `DNS1123SubdomainMaxLength`: longer search paths abort some resolvers.
const MAX_SEARCH_LEN: usize = 253;

/// A resolver configuration: what a `resolv.conf` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` addresses, in order.
    pub servers: Vec<String>,
    /// The `search` list.
    pub searches: Vec<String>,
    /// `options`, each `name` or `name:value`.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Reads `text` as the kubelet's `parseResolvConf` does: comments skipped, every
    /// `nameserver` kept, the last `search` line (trailing dots removed) and the last
    /// `options` line win; every other line (`domain`, `sortlist`) is ignored.
    pub fn parse(text: &str) -> ResolvConf {
        let mut r = ResolvConf::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.servers.extend(words.next().map(str::to_string)),
                Some("search") => {
                    r.searches = words
                        .map(|s| s.strip_suffix('.').unwrap_or(s).to_string())
                        .collect()
                }
                Some("options") => r.options = words.map(str::to_string).collect(),
                _ => {}
            }
        }
        r
    }

    /// The file, as containerd's `parseDNSOptions` writes it; `None` when there is
    /// nothing to write (containerd then copies the host's file, and so does keel's
    /// runtime).
    pub fn render(&self) -> Option<String> {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out += &format!("search {}\n", self.searches.join(" "));
        }
        for s in &self.servers {
            out += &format!("nameserver {s}\n");
        }
        if !self.options.is_empty() {
            out += &format!("options {}\n", self.options.join(" "));
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Appends `extra` to `list`, leaving out what is already there (`omitDuplicates`).
fn append_unique<'a>(list: &mut Vec<String>, extra: impl IntoIterator<Item = &'a str>) {
    for v in extra {
        if !list.iter().any(|x| x == v) {
            list.push(v.to_string());
        }
    }
}

/// `mergeDNSOptions`: options by name, a later value replacing an earlier one (the
/// kubelet's map has no order; keel keeps each name where it first appeared).
fn merge_options<'a>(
    base: &[String],
    pod: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match merged.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => merged.push((name.to_string(), value.to_string())),
    };
    for o in base {
        let (name, value) = o.split_once(':').unwrap_or((o, ""));
        set(name, value);
    }
    for (name, value) in pod {
        set(name, value.unwrap_or(""));
    }
    merged
        .into_iter()
        .map(|(n, v)| if v.is_empty() { n } else { format!("{n}:{v}") })
        .collect()
}

/// The resolver configuration of pod `p` on a host whose own is `host` (see
/// [`crate::runtime::host_resolv_conf`]), and what the limits left out, in the
/// kubelet's words (its `DNSConfigForming` warnings).
pub fn pod_resolv_conf(p: &Pod, host: &str) -> (ResolvConf, Vec<String>) {
    let mut r = if p.spec.dns_policy == Some(DnsPolicy::None) {
        ResolvConf::default()
    } else {
        ResolvConf::parse(host)
    };
    if let Some(c) = &p.spec.dns_config {
        append_unique(&mut r.servers, c.nameservers.iter().map(|s| p.s(*s)));
        append_unique(&mut r.searches, c.searches.iter().map(|s| p.s(*s)));
        let pod_options = c.options.iter().map(|o| (p.s(o.name), p.opt(o.value)));
        r.options = merge_options(&r.options, pod_options);
    }
    let mut warnings = Vec::new();
    if r.servers.len() > MAX_NAMESERVERS {
        r.servers.truncate(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            r.servers.join(" ")
        ));
    }
    let mut cut = r.searches.len() > MAX_SEARCHES;
    r.searches.truncate(MAX_SEARCHES);
    let before = r.searches.len();
    r.searches.retain(|s| s.len() <= MAX_SEARCH_LEN);
    cut |= r.searches.len() != before;
    // The line's length with its separating spaces; the last paths go first.
    while r.searches.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_SEARCH_CHARS + 1 {
        r.searches.pop();
        cut = true;
    }
    if cut {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            r.searches.join(" ")
        ));
    }
    (r, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::manifest::model::Pool;

    fn pod(yaml: &str) -> Box<Pod> {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n{yaml}"
        );
        let mut pod = Box::<Pod>::default();
        let mut scratch = Box::<Pool>::default();
        let ctx = keel_core::manifest::Context {
            node: "n",
            path: "/m/p.yaml",
            seen: "",
        };
        keel_core::manifest::prepare(
            text.as_bytes(),
            &ctx,
            &mut pod,
            &mut scratch,
            &mut |_| {},
            &mut |e| panic!("{e}"),
        )
        .unwrap();
        pod
    }

    const HOST: &str = "# generated\nnameserver 192.0.2.1\ndomain ignored.example\nsearch old.example\nsearch a.example. b.example\nnameserver 192.0.2.2\noptions rotate\noptions ndots:2 timeout:1\n";

    #[test]
    fn the_host_file_is_read_as_the_kubelet_reads_it() {
        let r = ResolvConf::parse(HOST);
        assert_eq!(r.servers, ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(
            r.searches,
            ["a.example", "b.example"],
            "last line, dots trimmed"
        );
        assert_eq!(r.options, ["ndots:2", "timeout:1"], "last line wins");
    }

    #[test]
    fn none_takes_the_dns_config_alone() {
        let p = pod("  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53]\n    searches: [ns1.svc.example, my.dns.search.suffix.]\n    options:\n    - {name: ndots, value: \"2\"}\n    - {name: edns0}\n");
        let (r, w) = pod_resolv_conf(&p, HOST);
        assert!(w.is_empty());
        assert_eq!(
            r.render().unwrap(),
            "search ns1.svc.example my.dns.search.suffix.\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn cluster_first_appends_the_dns_config_to_the_hosts() {
        let p = pod("  dnsConfig:\n    nameservers: [192.0.2.2, 192.0.2.9]\n    searches: [b.example, c.example]\n    options:\n    - {name: ndots, value: \"5\"}\n    - {name: edns0}\n");
        let (r, w) = pod_resolv_conf(&p, HOST);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(r.servers, ["192.0.2.1", "192.0.2.2", "192.0.2.9"]);
        assert_eq!(r.searches, ["a.example", "b.example", "c.example"]);
        assert_eq!(r.options, ["ndots:5", "timeout:1", "edns0"]);
    }

    #[test]
    fn without_dns_config_the_host_file_is_rewritten_in_the_runtimes_form() {
        let (r, w) = pod_resolv_conf(&pod(""), HOST);
        assert!(w.is_empty());
        assert_eq!(
            r.render().unwrap(),
            "search a.example b.example\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:2 timeout:1\n"
        );
        // An empty host file gives nothing to write: the runtime copies the host's.
        assert_eq!(pod_resolv_conf(&pod(""), "").0.render(), None);
    }

    #[test]
    fn limits_keep_three_nameservers_and_say_what_was_left_out() {
        let p = pod("  dnsConfig:\n    nameservers: [192.0.2.7, 192.0.2.8]\n");
        let (r, w) = pod_resolv_conf(&p, HOST);
        assert_eq!(r.servers, ["192.0.2.1", "192.0.2.2", "192.0.2.7"]);
        assert_eq!(w, ["Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 192.0.2.1 192.0.2.2 192.0.2.7"]);
    }

    #[test]
    fn limits_cut_the_search_line_from_its_end() {
        // 31 host paths of 9 characters plus 3 of the pod's: 32 kept.
        let host: Vec<String> = (0..31).map(|i| format!("h{i:02}.local")).collect();
        let p = pod("  dnsConfig:\n    searches: [p1.example, p2.example, p3.example]\n");
        let (r, w) = pod_resolv_conf(&p, &format!("search {}\n", host.join(" ")));
        assert_eq!(r.searches.len(), 32);
        assert_eq!(r.searches.last().unwrap(), "p1.example");
        assert!(
            w[0].starts_with("Search Line limits were exceeded"),
            "{w:?}"
        );
        // 2048 characters: nine paths of 250 make 2258; the last ones go.
        let long: Vec<String> = (0..9).map(|i| format!("{i}{}", "a".repeat(249))).collect();
        let (r, w) = pod_resolv_conf(&pod(""), &format!("search {}\n", long.join(" ")));
        assert_eq!(r.searches.len(), 8, "8 x 250 + 7 spaces = 2007");
        assert_eq!(w.len(), 1);
        // A path over 253 characters is dropped alone.
        let (r, _) = pod_resolv_conf(&pod(""), &format!("search a.example {}\n", "b".repeat(254)));
        assert_eq!(r.searches, ["a.example"]);
    }
}
