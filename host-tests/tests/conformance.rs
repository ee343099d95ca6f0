//! The runtime conformance suite (`keel_host_tests::conformance`) against each of keel's
//! three runtimes: the simulator's fake, the firmware's task table compiled for the host
//! from its own source file (plain Rust over keel-core), and the Linux runtime driving real
//! runc (as root, with the busybox image of the end-to-end tests); with
//! `KEEL_TEST_RUNTIME=crun` (a step of `cargo xtask test`) the same checks drive crun.

#[path = "../../hal-qemu/src/tasks.rs"]
#[allow(dead_code)]
mod tasks;

use keel_core::time::Instant;
use keel_host_tests::conformance::{check_all, Harness, Program};
use keel_host_tests::sim::{FakeRuntime, Plan, Sim};

/// The simulator's fake runtime on a simulated clock.
struct SimHarness {
    rt: FakeRuntime,
    now: Instant,
}

impl Harness for SimHarness {
    type R = FakeRuntime;
    fn rt(&mut self) -> &mut FakeRuntime {
        &mut self.rt
    }
    fn container(&self, name: &str, p: Program) -> String {
        let image = match p {
            Program::Forever => "img",
            Program::Exits3 => "exit3",
            Program::IgnoresStop => "stubborn",
        };
        format!("  - name: {name}\n    image: {image}\n")
    }
    fn pass(&mut self, ms: u64) {
        self.now = Instant(self.now.0 + ms);
        self.rt.set_now(self.now);
    }
    fn now(&self) -> Instant {
        self.now
    }
    fn patience_ms(&self) -> u64 {
        60_000
    }
    fn restart(&mut self) -> bool {
        // The fake's containers outlive the agent as runc's do: a copy of its state.
        self.rt = self.rt.clone();
        self.rt.forget_changes();
        true
    }
}

#[test]
fn sim_fake_runtime_keeps_the_contract() {
    let mut rt = FakeRuntime::new();
    rt.plan("exit3", Plan::exits(1, 3));
    rt.plan(
        "stubborn",
        Plan {
            ignore_stop: true,
            ..Plan::FOREVER
        },
    );
    check_all(&mut SimHarness {
        rt,
        now: Instant::ZERO,
    });
}

/// The firmware's task table, ticked by a simulated millisecond clock.
struct TaskHarness {
    rt: tasks::TaskRuntime,
    now: u64,
}

impl Harness for TaskHarness {
    type R = tasks::TaskRuntime;
    fn rt(&mut self) -> &mut tasks::TaskRuntime {
        &mut self.rt
    }
    fn container(&self, name: &str, p: Program) -> String {
        let (image, args) = match p {
            Program::Forever => ("task:forever", "[]"),
            Program::Exits3 => ("task:exit", "[\"code=3\", \"after=100\"]"),
            Program::IgnoresStop => ("task:forever", "[\"ignore-stop\"]"),
        };
        format!("  - name: {name}\n    image: {image}\n    args: {args}\n")
    }
    fn pass(&mut self, ms: u64) {
        self.now += ms;
        self.rt.tick(self.now, &mut |_| {});
    }
    fn now(&self) -> Instant {
        Instant(self.now)
    }
    fn patience_ms(&self) -> u64 {
        10_000
    }
    fn restart(&mut self) -> bool {
        // A firmware reset: nothing survives it.
        false
    }
}

#[test]
fn firmware_task_runtime_keeps_the_contract() {
    check_all(&mut TaskHarness {
        rt: tasks::TaskRuntime::new(),
        now: 0,
    });
}

mod linux {
    use super::*;
    use keel_host_tests::linux::{keel_bin, test_runtime, Node};
    use keel_linux::agent::adapter::LinuxRuntime;
    use keel_linux::agent::AgentRuntime;
    use keel_linux::image::ImageStore;
    use keel_linux::runtime::{RuncConfig, RuncRuntime};
    use std::sync::Arc;

    /// The Linux runtime over a test node's root (real runc, or the OCI runtime
    /// `KEEL_TEST_RUNTIME` names, real busybox image, real time). The node's drop removes whatever a failing check left behind.
    struct LinuxHarness {
        rt: LinuxRuntime,
        node: Node,
    }

    fn runtime(node: &Node) -> LinuxRuntime {
        let mut cfg = RuncConfig::new(&node.root, test_runtime(), keel_bin());
        cfg.pod_logs_dir = node.logs.clone();
        cfg.cgroup_parent = node.cgroup_parent();
        cfg.container_logs_dir = Some(node.dir.join("containers"));
        let runc = RuncRuntime::new(cfg).expect("runc runtime");
        let images = ImageStore::open(&node.root).expect("image store");
        LinuxRuntime::new(runc, images, Arc::new(tokio::sync::Notify::new()))
    }

    impl Harness for LinuxHarness {
        type R = LinuxRuntime;
        fn rt(&mut self) -> &mut LinuxRuntime {
            &mut self.rt
        }
        fn container(&self, name: &str, p: Program) -> String {
            let script = match p {
                Program::Forever => "trap 'exit 143' TERM; while true; do sleep 0.1; done",
                Program::Exits3 => "sleep 0.3; exit 3",
                Program::IgnoresStop => "trap '' TERM; while true; do sleep 0.1; done",
            };
            format!(
                "  - name: {name}\n    image: busybox:latest\n    command: [\"sh\", \"-c\", \"{script}\"]\n"
            )
        }
        fn pass(&mut self, ms: u64) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        fn now(&self) -> Instant {
            keel_linux::agent::clock::now()
        }
        fn patience_ms(&self) -> u64 {
            30_000
        }
        fn restart(&mut self) -> bool {
            // As the agent does on exit: let queued work (removals) finish, then a new
            // instance over the same root.
            self.rt.shutdown(std::time::Duration::from_secs(20));
            self.rt = runtime(&self.node);
            true
        }
    }

    #[test]
    fn linux_runtime_with_runc_keeps_the_contract() {
        let node = Node::new("conformance");
        let rt = runtime(&node);
        check_all(&mut LinuxHarness { rt, node });
    }
}
