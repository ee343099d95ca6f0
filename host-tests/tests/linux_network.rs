//! End-to-end tests of pod networking (issue 14): the real `keel` agent, real runc, the
//! real CNI plugins of Debian's containernetworking-plugins (/usr/lib/cni), real network
//! namespaces. Each test brings its own conf dir, bridge, subnet and host-local data dir
//! (keel's default network excepted, which is `keel0` by definition), so tests running
//! side by side never share an address; nothing leaves the machine (the bridge gateway,
//! loopback and the node's own address only).

use keel_host_tests::linux::{keel, keel_bin, Node, TestNet as Net, NODE};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
const PLUGINS: &str = "/usr/lib/cni";

fn require_plugins() {
    assert!(
        Path::new(PLUGINS).join("bridge").exists(),
        "network tests need the CNI plugins: apt-get install containernetworking-plugins (cargo xtask test installs it)"
    );
}

fn pod_ip(n: &Node, pod: &str) -> Option<String> {
    n.pod(pod)
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
}

fn node_ip() -> String {
    nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|a| a.address.and_then(|s| s.as_sockaddr_in().map(|s| s.ip())))
        .find(|ip| !ip.is_loopback())
        .expect("a non-loopback IPv4 address")
        .to_string()
}

/// An HTTP GET of `/` from this process; the body, or None.
fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn manifest(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n{body}")
}

/// A busybox web server pod serving `text` on `port` (and, with `host_port`, on the node).
fn web(name: &str, text: &str, port: u16, host_port: Option<u16>) -> String {
    let hp = host_port.map_or(String::new(), |h| format!("      hostPort: {h}\n"));
    manifest(
        name,
        &format!(
            "  hostAliases:\n  - ip: 10.9.9.9\n    hostnames: [alias-one, alias-two]\n  containers:\n  - name: main\n    image: busybox\n    command: [sh, -c, 'mkdir -p /www && echo {text} > /www/index.html && cat /etc/hosts /etc/resolv.conf /etc/hostname && echo POD_IP=$POD_IP && exec httpd -f -p {port} -h /www']\n    ports:\n    - containerPort: {port}\n{hp}    env:\n    - name: POD_IP\n      valueFrom:\n        fieldRef:\n          fieldPath: status.podIP\n"
        ),
    )
}

/// A pod that fetches `/` from `addr` (IP:port) every 0.3 s and logs what it got (busybox
/// nc: its static wget looks the service up through NSS and crashes).
fn client(name: &str, addr: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    manifest(
        name,
        &format!("  containers:\n  - name: main\n    image: busybox\n    command: [sh, -c, 'while true; do printf \"GET / HTTP/1.0\\r\\n\\r\\n\" | nc -w 2 {host} {port}; echo; sleep 0.3; done']\n"),
    )
}

#[test]
fn default_network_pods_reach_each_other_the_gateway_and_host_ports() {
    require_plugins();
    let mut n = Node::new("net-default");
    // An empty conf dir: keel writes its default network there.
    for f in std::fs::read_dir(&n.cni_conf).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    n.start();
    let port = 18000 + (std::process::id() % 1000) as u16;
    n.write("web.yaml", &web("web", "hello-from-web", 80, Some(port)));
    n.wait_running("web", "main");
    let conf = std::fs::read_to_string(n.cni_conf.join("10-keel.conflist"))
        .expect("keel wrote its default network");
    for needle in [
        "\"keel0\"",
        "host-local",
        "\"ipMasq\": true",
        "portmap",
        "firewall",
        "tuning",
    ] {
        assert!(
            conf.contains(needle),
            "default network lacks {needle}: {conf}"
        );
    }
    let ip = pod_ip(&n, "web").expect("web has a pod IP");
    let subnet = conf
        .split("\"subnet\": \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let net_prefix = subnet.split('.').take(2).collect::<Vec<_>>().join(".") + ".";
    assert!(ip.starts_with(&net_prefix), "pod IP {ip} in {subnet}");

    // keel pods -o wide shows it.
    let sock = n.socket.display().to_string();
    let (_, wide, _) = keel(&["pods", "-o", "wide", "--socket", &sock]);
    assert!(wide.lines().next().unwrap().contains(" IP "), "{wide}");
    assert!(wide.contains(&ip), "{wide}");

    // /etc/hosts, /etc/resolv.conf, /etc/hostname and fieldRef status.podIP.
    n.wait("web's files in its log", T, |n| {
        n.logs_of("web", "main").contains("POD_IP=")
    });
    let log = n.logs_of("web", "main");
    assert!(log.contains(&format!("POD_IP={ip}")), "{log}");
    assert!(log.contains("127.0.0.1\tlocalhost"), "{log}");
    assert!(log.contains(&format!("{ip}\tweb-{NODE}")), "{log}");
    assert!(log.contains("10.9.9.9\talias-one\talias-two"), "{log}");
    // /etc/hostname is the pod's name (the hosts line above ends in a tab, not a space).
    let hostname = format!("web-{NODE}");
    assert!(
        log.lines()
            .any(|l| l == hostname || l.ends_with(&format!(" {hostname}"))),
        "/etc/hostname {hostname} in the pod: {log}"
    );
    let host_resolv = keel_linux::runtime::host_resolv_conf();
    if let Some(first) = host_resolv.lines().find(|l| l.starts_with("nameserver")) {
        assert!(log.contains(first), "host's resolver in the pod: {log}");
    }

    // The pod serves on its IP, the node's port on 127.0.0.1 and the node IP.
    n.wait("web on its pod IP", T, |_| {
        http_get(&format!("{ip}:80")).is_some_and(|b| b.contains("hello-from-web"))
    });
    for host in ["127.0.0.1".to_string(), node_ip()] {
        n.wait(&format!("hostPort on {host}"), T, |_| {
            http_get(&format!("{host}:{port}")).is_some_and(|b| b.contains("hello-from-web"))
        });
    }

    // A server on the bridge gateway, reached from a pod (egress through the bridge).
    let gw = format!("{net_prefix}0.1");
    let listener = TcpListener::bind(format!("{gw}:0")).expect("listen on the bridge gateway");
    let gw_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhello-gw\r\n");
        }
    });
    n.write("a.yaml", &client("a", &format!("{ip}:80")));
    n.write("b.yaml", &client("b", &gw_addr.to_string()));
    n.wait_running("a", "main");
    n.wait_running("b", "main");
    n.wait("pod a reaches web by pod IP", T, |n| {
        n.logs_of("a", "main").contains("hello-from-web")
    });
    n.wait("pod b reaches the gateway", T, |n| {
        n.logs_of("b", "main").contains("hello-gw")
    });

    // A second pod asking for the same hostPort waits with a clear error.
    n.write("web2.yaml", &web("web2", "second", 80, Some(port)));
    n.wait("taken hostPort reported", T, |n| {
        n.container("web2", "main").is_some_and(|c| {
            c["state"]["waiting"]["reason"] == "ContainerCreating"
                && c["state"]["waiting"]["message"].as_str().is_some_and(|m| {
                    m.contains(&format!(
                        "hostPort {port}/TCP is already taken by pod default/web-{NODE}"
                    ))
                })
        })
    });
    for f in ["web.yaml", "web2.yaml", "a.yaml", "b.yaml"] {
        n.remove(f);
    }
    n.wait("pods gone", T, |n| {
        n.pods()["items"].as_array().is_some_and(|a| a.is_empty())
    });
    n.wait("hostPort released", T, |_| {
        http_get(&format!("127.0.0.1:{port}")).is_none()
    });
}

#[test]
fn a_conflist_of_the_operator_is_used_instead_of_the_default() {
    require_plugins();
    let mut n = Node::new("net-own");
    let net = Net::new(&n, "own", 71);
    net.install(&n);
    n.start();
    n.write("p.yaml", &web("p", "own", 8080, None));
    n.wait_running("p", "main");
    let ip = pod_ip(&n, "p").unwrap();
    assert!(ip.starts_with(&net.prefix()), "{ip} in {}", net.subnet);
    assert!(
        !n.cni_conf.join("10-keel.conflist").exists(),
        "no default written"
    );
    n.wait("served on the pod IP", T, |_| {
        http_get(&format!("{ip}:8080")).is_some_and(|b| b.contains("own"))
    });
    assert_eq!(net.veths(), 1);
    assert_eq!(net.allocations(), vec![ip.clone()]);
    n.remove("p.yaml");
    n.wait("pod gone", T, |n| n.pod("p").is_none());
    // The pod's worker finishes its removal (DEL) after the pod left the status.
    n.wait("no veth and no allocation", T, |_| {
        net.veths() == 0 && net.allocations().is_empty()
    });
    // bridge removes its NAT rules after releasing the address.
    n.wait("no rule", T, |_| net.rules().is_empty());
}

#[test]
fn a_missing_plugin_keeps_the_pod_creating_with_the_plugins_name() {
    require_plugins();
    let mut n = Node::new("net-missing");
    let net = Net::new(&n, "miss", 72);
    std::fs::write(
        n.cni_conf.join("10-e2e.conflist"),
        net.conflist(r#", {"type":"keel-no-such-plugin"}"#),
    )
    .unwrap();
    n.start();
    n.write("p.yaml", &client("p", "127.0.0.1:80"));
    n.wait("ContainerCreating with the plugin's error", T, |n| {
        n.container("p", "main").is_some_and(|c| {
            c["state"]["waiting"]["reason"] == "ContainerCreating"
                && c["state"]["waiting"]["message"].as_str().is_some_and(|m| {
                    m.contains("failed to find plugin \"keel-no-such-plugin\"")
                        && m.contains("retrying in")
                })
        })
    });
    assert_eq!(n.restarts("p", "main"), Some(0));
    // What the plugins before it set up was undone.
    assert_eq!(net.veths(), 0);
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    n.remove("p.yaml");
    n.wait("pod gone", T, |n| n.pod("p").is_none());
    n.wait("no rule", T, |_| net.rules().is_empty());
}

#[test]
fn a_hundred_pods_created_and_deleted_leave_no_veth_address_or_rule() {
    require_plugins();
    let mut n = Node::new("net-hundred");
    let net = Net::new(&n, "many", 73);
    net.install(&n);
    n.start();
    let start = Instant::now();
    for batch in 0..4 {
        for i in 0..25 {
            let name = format!("p{}", batch * 25 + i);
            n.write(
                &format!("{name}.yaml"),
                &manifest(&name, &format!("  containers:\n  - name: main\n    image: busybox\n    command: [sleep, '1000']\n    ports:\n    - containerPort: 80\n      hostPort: {}\n", 21000 + batch * 25 + i)),
            );
        }
        n.wait("a batch running", Duration::from_secs(120), |n| {
            (0..25).all(|i| {
                n.state(&format!("p{}", batch * 25 + i), "main")
                    .is_some_and(|(k, _)| k == "running")
            })
        });
        assert_eq!(net.veths(), 25);
        for i in 0..25 {
            n.remove(&format!("p{}.yaml", batch * 25 + i));
        }
        n.wait("the batch gone", Duration::from_secs(120), |n| {
            n.pods()["items"].as_array().is_some_and(|a| a.is_empty())
        });
    }
    n.wait("no veth and no allocation", T, |_| {
        net.veths() == 0 && net.allocations().is_empty()
    });
    // bridge removes its NAT rules after releasing the address.
    n.wait("no rule", T, |_| net.rules().is_empty());
    // The last worker releases its pin right after its DEL.
    n.wait("no netns pin left", T, |n| {
        !n.mounts().iter().any(|m| m.ends_with("/netns"))
    });
    eprintln!(
        "100 pods with hostPorts created and deleted in {:?}",
        start.elapsed()
    );
}

#[test]
fn an_agent_killed_between_add_and_start_adds_once_and_leaks_nothing() {
    require_plugins();
    let mut n = Node::new("net-kill");
    let net = Net::new(&n, "kill", 74);
    // The bridge plugin is wrapped to log every call; the keel binary the agent runs as
    // `keel pause` is wrapped to hold the first pause start until its agent is gone
    // (then it gives up without starting anything).
    let bin = n.dir.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = n.dir.join("calls.log");
    let marker = n.dir.join("held");
    let script = |path: &Path, body: String| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    script(
        &bin.join("bridge"),
        format!(
            "#!/bin/sh\necho \"$CNI_COMMAND $CNI_CONTAINERID\" >> {}\nexec {PLUGINS}/bridge\n",
            calls.display()
        ),
    );
    net.install(&n);
    let bins = format!("{}:{PLUGINS}", bin.display());
    // The agent runs `keel pause` from the path it was started from (and the shim from
    // beside it): a copy of keel, replaced by the wrapper once the agent runs.
    let real = n.dir.join("keel-real");
    let keel_copy = n.dir.join("keel");
    std::fs::copy(keel_bin(), &real).unwrap();
    std::fs::copy(keel_bin(), &keel_copy).unwrap();
    let shim = keel_linux::runtime::SHIM_BINARY;
    std::fs::copy(keel_bin().with_file_name(shim), n.dir.join(shim)).unwrap();
    let mut args = n.agent_args();
    args.extend(["--cni-bin-dir".to_string(), bins.clone()]);
    n.start_bin(&keel_copy, &args);
    script(
        &keel_copy,
        format!(
            "#!/bin/sh\nif [ \"$1\" = pause ] && [ ! -e {m} ]; then touch {m}; while kill -0 $PPID 2>/dev/null; do sleep 0.1; done; exit 1; fi\nexec {real} \"$@\"\n",
            m = marker.display(),
            real = real.display()
        ),
    );
    n.write("p.yaml", &web("p", "once", 8080, None));
    n.wait("pause start held after ADD", T, |_| marker.exists());
    n.signal_agent(nix::sys::signal::Signal::SIGKILL);
    let adds = || {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("ADD "))
            .count()
    };
    assert_eq!(adds(), 1);
    n.start_with(&["--cni-bin-dir", &bins]);
    n.wait_running("p", "main");
    let ip = pod_ip(&n, "p").unwrap();
    n.wait("served after the restart", T, |_| {
        http_get(&format!("{ip}:8080")).is_some_and(|b| b.contains("once"))
    });
    assert_eq!(
        adds(),
        1,
        "ADD ran again:\n{}",
        std::fs::read_to_string(&calls).unwrap()
    );
    assert_eq!(net.allocations(), vec![ip.clone()]);

    // Removed while the agent is down: the next agent runs DEL.
    n.signal_agent(nix::sys::signal::Signal::SIGKILL);
    n.remove("p.yaml");
    n.start_with(&["--cni-bin-dir", &bins]);
    n.wait("DEL by the next agent", T, |_| {
        std::fs::read_to_string(&calls).is_ok_and(|c| c.contains("DEL "))
    });
    n.wait("nothing left", T, |_| {
        net.veths() == 0 && net.allocations().is_empty()
    });
    // bridge removes its NAT rules after releasing the address.
    n.wait("no rule", T, |_| net.rules().is_empty());
    // The last worker releases its pin right after its DEL.
    n.wait("no netns pin left", T, |n| {
        !n.mounts().iter().any(|m| m.ends_with("/netns"))
    });
}

#[test]
fn the_nginx_static_example_serves_on_its_pod_ip_and_host_port_8080() {
    require_plugins();
    let mut n = Node::new("net-nginx");
    let net = Net::new(&n, "nginx", 75);
    net.install(&n);
    // A tiny stand-in for nginx:1.25: busybox httpd on port 80.
    let rootfs = n.dir.join("rootfs.tar");
    keel_linux::image::testutil::build_rootfs_tarball(&rootfs, false).unwrap();
    let root = n.root.display().to_string();
    let (code, out, err) = keel(&[
        "image",
        "import",
        "--root-dir",
        &root,
        "--name",
        "nginx:1.25",
        "--change",
        r#"CMD ["sh","-c","mkdir -p /www && echo nginx-static > /www/index.html && exec httpd -f -p 80 -h /www"]"#,
        &rootfs.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let example =
        std::fs::read_to_string(keel_host_tests::corpus::examples_dir().join("nginx-static.yaml"))
            .unwrap();
    n.start();
    n.write("nginx-static.yaml", &example);
    n.wait_running("nginx-static", "nginx");
    let pod = |n: &Node| {
        n.pods()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] == format!("nginx-static-{NODE}"))
            .cloned()
    };
    let ip = pod(&n).unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    n.wait("nginx on its pod IP", T, |_| {
        http_get(&format!("{ip}:80")).is_some_and(|b| b.contains("nginx-static"))
    });
    let with_port = example.replace(
        "    - containerPort: 80\n",
        "    - containerPort: 80\n      hostPort: 8080\n",
    );
    assert_ne!(with_port, example);
    n.write("nginx-static.yaml", &with_port);
    n.wait("nginx on the node's port 8080", T, |n| {
        pod(n).is_some_and(|p| p["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080)
            && http_get(&format!("{}:8080", node_ip())).is_some_and(|b| b.contains("nginx-static"))
    });
    n.wait("and on 127.0.0.1:8080", T, |_| {
        http_get("127.0.0.1:8080").is_some_and(|b| b.contains("nginx-static"))
    });
    n.remove("nginx-static.yaml");
    n.wait("pod gone", T, |n| pod(n).is_none());
    n.wait("no veth", T, |_| net.veths() == 0);
}

/// What a container printed between its `BEGIN` and `END` lines (CRI log lines, their
/// time, stream and tag taken off; each line newline-ended).
fn between_markers(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    let begin = lines.iter().position(|l| *l == "BEGIN")?;
    let end = begin + lines[begin..].iter().position(|l| *l == "END")?;
    Some(
        lines[begin + 1..end]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect(),
    )
}

#[test]
fn dns_config_makes_the_resolv_conf_a_container_sees() {
    require_plugins();
    let mut n = Node::new("net-dns");
    n.start();
    let show = "  containers:\n  - name: main\n    image: busybox\n    command: [sh, -c, 'echo BEGIN; cat /etc/resolv.conf; echo END; exec sleep 1000']\n";
    // dnsPolicy None: dnsConfig alone, written as containerd writes it.
    n.write(
        "none.yaml",
        &manifest(
            "none",
            &format!("  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.53, \"2001:db8::53\"]\n    searches: [ns1.svc.example, my.search.suffix.]\n    options:\n    - {{name: ndots, value: \"2\"}}\n    - {{name: edns0}}\n{show}"),
        ),
    );
    // ClusterFirst (the default) without cluster DNS: the node's resolver plus dnsConfig.
    n.write(
        "cf.yaml",
        &manifest(
            "cf",
            &format!("  dnsConfig:\n    searches: [extra.example]\n    options:\n    - {{name: ndots, value: \"3\"}}\n{show}"),
        ),
    );
    for p in ["none", "cf"] {
        n.wait(&format!("{p}'s resolv.conf in its log"), T, |n| {
            between_markers(&n.logs_of(p, "main")).is_some()
        });
    }
    assert_eq!(
        between_markers(&n.logs_of("none", "main")).unwrap(),
        "search ns1.svc.example my.search.suffix.\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2 edns0\n"
    );
    // The node's file as the kubelet reads it: every nameserver (at most 3), the last
    // search line without trailing dots, the last options line.
    let host = keel_linux::runtime::host_resolv_conf();
    let words = |key: &str| -> Vec<String> {
        host.lines()
            .rfind(|l| l.split_whitespace().next() == Some(key))
            .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let mut searches: Vec<String> = words("search")
        .iter()
        .map(|s| s.trim_end_matches('.').to_string())
        .collect();
    searches.push("extra.example".into());
    let mut options: Vec<String> = words("options")
        .into_iter()
        .filter(|o| !o.starts_with("ndots"))
        .collect();
    options.insert(
        words("options")
            .iter()
            .position(|o| o.starts_with("ndots"))
            .unwrap_or(options.len()),
        "ndots:3".into(),
    );
    let mut want = format!("search {}\n", searches.join(" "));
    for ns in host
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .take(3)
    {
        want += &format!("nameserver {ns}\n");
    }
    want += &format!("options {}\n", options.join(" "));
    assert_eq!(between_markers(&n.logs_of("cf", "main")).unwrap(), want);
    n.remove("none.yaml");
    n.remove("cf.yaml");
    n.wait("pods gone", T, |n| {
        n.pods()["items"].as_array().is_some_and(|a| a.is_empty())
    });
}

#[test]
fn an_exhausted_address_range_keeps_the_pod_creating_and_disturbs_no_other() {
    require_plugins();
    let mut n = Node::new("net-ipam");
    // A /30: the gateway takes .1, one pod .2, and nothing is left for a second.
    let mut net = Net::new(&n, "ipam", 76);
    net.subnet = "10.251.76.0/30".into();
    net.install(&n);
    n.start();
    let sleeper = |name: &str| {
        manifest(
            name,
            "  containers:\n  - name: main\n    image: busybox\n    command: [sleep, '1000']\n",
        )
    };
    n.write("a.yaml", &sleeper("a"));
    n.wait_running("a", "main");
    let ip = pod_ip(&n, "a").unwrap();
    assert_eq!(ip, "10.251.76.2");
    n.write("b.yaml", &sleeper("b"));
    n.wait("b waits with host-local's error", T, |n| {
        n.container("b", "main").is_some_and(|c| {
            c["state"]["waiting"]["reason"] == "ContainerCreating"
                && c["state"]["waiting"]["message"].as_str().is_some_and(|m| {
                    m.contains("no IP addresses available") && m.contains("retrying in")
                })
        })
    });
    // The running pod is not disturbed, and b's failed attempts left nothing behind.
    assert_eq!(n.state("a", "main").map(|(k, _)| k), Some("running".into()));
    assert_eq!(n.restarts("a", "main"), Some(0));
    assert_eq!(pod_ip(&n, "a"), Some(ip.clone()));
    assert_eq!(net.veths(), 1);
    assert_eq!(net.allocations(), vec![ip.clone()]);
    // Once a's address is free, b's next try takes it.
    n.remove("a.yaml");
    n.wait(
        "b running on the freed address",
        Duration::from_secs(180),
        |n| {
            n.state("b", "main").is_some_and(|(k, _)| k == "running")
                && pod_ip(n, "b").as_deref() == Some(ip.as_str())
        },
    );
    n.remove("b.yaml");
    n.wait("pods gone", T, |n| {
        n.pods()["items"].as_array().is_some_and(|a| a.is_empty())
    });
    n.wait("no veth and no allocation", T, |_| {
        net.veths() == 0 && net.allocations().is_empty()
    });
}

/// What the last container of `pod` printed between `BEGIN` and `END`, once its IP is
/// not `old`: (pod IP, the text).
fn shown_with_new_ip(n: &mut Node, pod: &str, old: &str, what: &str) -> (String, String) {
    let mut got = None;
    n.wait(what, Duration::from_secs(120), |n| {
        let ip = pod_ip(n, pod).filter(|ip| ip != old);
        let text = between_markers(&n.logs_of(pod, "main"));
        got = ip.zip(text).filter(|(ip, t)| t.contains(ip.as_str()));
        got.is_some()
    });
    got.unwrap()
}

/// The pod's `/etc/hosts` has its IP with its hostname (and nothing of the `old`
/// address), `fieldRef: status.podIP` gave the container the same address, and the pod
/// serves its hosts file on that address.
fn assert_shows_ip(n: &mut Node, shown: &str, ip: &str, old: Option<&str>) {
    let hosts: Vec<&str> = shown
        .lines()
        .filter(|l| !l.starts_with("POD_IP="))
        .collect();
    assert!(
        hosts.iter().any(|l| *l == format!("{ip}\tp-{NODE}")),
        "no '{ip}<TAB>p-{NODE}' line in /etc/hosts:\n{shown}"
    );
    if let Some(old) = old {
        assert!(
            !shown.contains(old),
            "the old address {old} is left:\n{shown}"
        );
    }
    assert!(shown.contains(&format!("POD_IP={ip}\n")), "{shown}");
    n.wait(&format!("the pod's hosts file served on {ip}"), T, |_| {
        http_get(&format!("{ip}:8080")).is_some_and(|b| b.contains(&format!("{ip}\t")))
    });
}

#[test]
fn a_pod_made_again_with_a_new_address_sees_it_in_its_hosts_file() {
    require_plugins();
    let mut n = Node::new("net-newip");
    let net = Net::new(&n, "newip", 79);
    net.install(&n);
    n.start();
    n.write(
        "p.yaml",
        &manifest(
            "p",
            "  containers:\n  - name: main\n    image: busybox\n    command: [sh, -c, 'echo BEGIN; cat /etc/hosts; echo POD_IP=$POD_IP; echo END; mkdir -p /www && cp /etc/hosts /www/index.html && exec httpd -f -p 8080 -h /www']\n    env:\n    - name: POD_IP\n      valueFrom:\n        fieldRef:\n          fieldPath: status.podIP\n",
        ),
    );
    let (first, shown) = shown_with_new_ip(&mut n, "p", "", "the pod's first address shown");
    assert_shows_ip(&mut n, &shown, &first, None);

    // The pause process killed while the agent is down: the next agent makes the sandbox
    // again, and host-local gives the next address.
    let uid = n.uid("p").unwrap();
    n.signal_agent(nix::sys::signal::Signal::SIGKILL);
    let pause = n
        .pause_processes()
        .into_iter()
        .find(|(u, _)| *u == uid)
        .expect("the pod's pause process")
        .1;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pause), nix::sys::signal::SIGKILL).unwrap();
    n.wait("pause gone", T, |_| {
        !keel_linux::runtime::util::process_alive(pause)
    });
    n.start();
    let (second, shown) = shown_with_new_ip(&mut n, "p", &first, "a new address after pause died");
    assert_shows_ip(&mut n, &shown, &second, Some(&first));

    assert_eq!(net.veths(), 1);
    assert_eq!(net.allocations(), vec![second.clone()]);

    n.remove("p.yaml");
    n.wait("pod gone", T, |n| n.pod("p").is_none());
    n.wait("no veth and no allocation", T, |_| {
        net.veths() == 0 && net.allocations().is_empty()
    });
    n.wait("no rule", T, |_| net.rules().is_empty());
}
