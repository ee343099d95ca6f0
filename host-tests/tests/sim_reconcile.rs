//! Scenario tests: reconciling files and pods (SPEC 3.1–3.8).

use keel_core::platform::Signal;
use keel_core::status::{Event, FileState, StopReason};
use keel_host_tests::sim::*;
use keel_host_tests::sim_test;

type W<'s> = World<'s, FakeSource, FakeRuntime>;

/// Checks after every step that no two pod UIDs of one pod name have live containers.
fn run_checked(w: &mut W<'_>, secs: u64) {
    let until = w.now + Duration::from_secs(secs);
    while w.next_at() <= until {
        w.step();
        let mut by_name: std::collections::BTreeMap<String, std::collections::BTreeSet<&str>> =
            Default::default();
        for c in w.rt.containers.values().filter(|c| c.is_live()) {
            by_name.entry(c.full_name()).or_default().insert(&c.pod_uid);
        }
        for (n, uids) in by_name {
            assert!(
                uids.len() <= 1,
                "two instances of {n} at {}: {uids:?}",
                t(w.now)
            );
        }
    }
    w.now = until;
}

sim_test! {
    fn new_file_creates_pod() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.run_for(5);
        w.write("web.yaml", P::new("web", "nginx:1").yaml());
        w.run_for(1);
        assert_eq!(w.rt.start_times("app"), vec![5_000]);
        assert!(w.rt.sandboxes.len() == 1);
        assert!(matches!(w.file_state("web.yaml"), Some(FileState::Pod(_))));
    }
}

sim_test! {
    fn removed_file_terminates_gracefully() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.write("web.yaml", P::new("web", "nginx:1").yaml());
        w.run_for(10);
        w.delete("web.yaml");
        w.run_for(60);
        assert_eq!(w.rt.signals, vec![(at(10), "app".to_string(), Signal::Stop)]);
        assert!(w.rt.containers.is_empty() && w.rt.sandboxes.is_empty());
        let terms = w.events_where(|e| matches!(e, Event::PodTerminating { reason: StopReason::Deleted, .. }));
        let removed = w.events_where(|e| matches!(e, Event::PodRemoved { .. }));
        assert_eq!((terms.len(), removed.len()), (1, 1));
        assert_eq!(w.file_state("web.yaml"), None);
    }
}

sim_test! {
    fn bad_edit_keeps_last_good_running_and_restarting() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.write("web.yaml", P::new("web", "nginx:1").yaml());
        w.run_for(10);
        w.write("web.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n");
        w.run_for(10);
        let rejected = w.events_where(|e| matches!(e, Event::ManifestRejected { kept_running: true, .. }));
        assert_eq!(rejected.len(), 1, "{:#?}", w.trace);
        assert!(matches!(w.file_state("web.yaml"), Some(FileState::Rejected { kept: Some(_), .. })));
        assert!(w.pod("web").unwrap().1.rejection().is_some());
        // It keeps being restarted by its policy from the last good spec.
        w.rt.exit("web", "app", 1, false);
        w.run_for(5);
        assert_eq!(w.rt.start_times("app"), vec![0, 20_000]);
        assert_eq!(w.rt.live("web", "app").unwrap().1.image, "nginx:1");
        // And survives many re-scans.
        w.run_for(200);
        assert_eq!(w.rt.live_count(), 1);
    }
}

sim_test! {
    fn bad_edit_then_fix() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        let good = P::new("web", "nginx:1");
        w.write("web.yaml", good.yaml());
        w.run_for(10);
        w.write("web.yaml", "kind: Pod\napiVersion: v1\nmetadata: [broken\n");
        w.run_for(10);
        // Fixed back to the same pod: nothing restarts, the rejection clears.
        w.write("web.yaml", good.yaml());
        w.run_for(10);
        assert_eq!(w.rt.starts.len(), 1);
        assert!(matches!(w.file_state("web.yaml"), Some(FileState::Pod(_))));
        assert!(w.pod("web").unwrap().1.rejection().is_none());
        // Broken again, then fixed to a new version: replaced.
        w.write("web.yaml", "kind: Pod\n");
        w.run_for(10);
        w.write("web.yaml", P::new("web", "nginx:2").yaml());
        w.run_for(10);
        assert_eq!(w.rt.live("web", "app").unwrap().1.image, "nginx:2");
        assert_eq!(w.rt.starts.len(), 2);
    }
}

sim_test! {
    fn identical_rewrite_is_noop() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        let p = P::new("web", "nginx:1").grace(5);
        w.write("web.yaml", p.yaml());
        w.run_for(10);
        let uid = w.pod("web").unwrap().1.uid().to_string();
        w.write("web.yaml", p.yaml());
        w.run_for(10);
        w.write("web.yaml", format!("# a comment\n\n{}", p.yaml()));
        w.run_for(10);
        w.write("web.yaml", p.json());
        w.run_for(10);
        assert!(w.src.log.iter().filter(|l| l.contains("read web.yaml")).count() >= 4);
        assert_eq!(w.rt.starts.len(), 1);
        assert!(w.rt.signals.is_empty());
        assert_eq!(w.pod("web").unwrap().1.uid(), uid);
    }
}

sim_test! {
    fn edit_gives_new_uid_after_old_fully_terminated_restart_count_zero() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("slow:1", Plan { ignore_stop: true, ..Plan::FOREVER });
        w.write("web.yaml", P::new("web", "slow:1").grace(5).yaml());
        w.run_for(1);
        w.rt.exit("web", "app", 1, false);
        w.run_for(1);
        w.rt.exit("web", "app", 1, false);
        w.run_for(20);
        let old_uid = w.pod("web").unwrap().1.uid().to_string();
        assert_eq!(w.pod("web").unwrap().1.containers()[0].restart_count, 2);
        let edit_at = w.now;
        w.write("web.yaml", P::new("web", "slow:2").grace(5).yaml());
        run_checked(&mut w, 30);
        let s = w.rt.starts.last().unwrap().clone();
        assert_ne!(s.pod_uid, old_uid);
        assert_eq!(s.restart_count, 0);
        // SIGTERM ignored: SIGKILL at the grace period, then the new pod starts.
        assert_eq!(s.at, edit_at + Duration::from_secs(5));
        let kill = w.rt.signals.iter().find(|(_, _, s)| *s == Signal::Kill).unwrap();
        assert_eq!(kill.0, edit_at + Duration::from_secs(5));
        let removed = w.rt.log.iter().position(|l| l.contains("remove_sandbox")).unwrap();
        let started = w.rt.log.iter().position(|l| l.contains("start web-node1/app rc=0") && l.contains(&s.pod_uid[..8])).unwrap();
        assert!(removed < started, "old pod fully removed before the new one starts");
        assert_eq!(w.pod("web").unwrap().1.containers()[0].restart_count, 0);
    }
}

sim_test! {
    fn fixed_uid_edit_restarts_changed_container_only() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        let uid = "0b2f7c1e-0000-4000-8000-000000000001";
        let p = |img_b: &str, args_c: &[&str]| {
            P::empty("web")
                .uid(uid)
                .container(C::new("a", "a:1"))
                .container(C::new("b", img_b))
                .container(C::new("c", "c:1").args(args_c))
        };
        w.write("web.yaml", p("b:1", &["x"]).yaml());
        w.run_for(10);
        let (ha, _) = w.rt.live("web", "a").unwrap();
        w.write("web.yaml", p("b:2", &["x"]).yaml());
        w.run_for(10);
        assert_eq!(w.rt.live("web", "b").unwrap().1.image, "b:2");
        assert_eq!(w.rt.live("web", "a").unwrap().0, ha, "a untouched");
        assert_eq!(w.pod("web").unwrap().1.uid(), uid);
        // keel: an args change restarts that container too.
        let (hc, _) = w.rt.live("web", "c").unwrap();
        w.write("web.yaml", p("b:2", &["y"]).yaml());
        w.run_for(10);
        assert_ne!(w.rt.live("web", "c").unwrap().0, hc);
        assert_eq!(w.rt.live("web", "a").unwrap().0, ha);
        let changed: Vec<u8> = w
            .events_where(|e| matches!(e, Event::ContainerSpecChanged { .. }))
            .iter()
            .map(|(_, e)| match e { Event::ContainerSpecChanged { container, .. } => *container, _ => 9 })
            .collect();
        assert_eq!(changed, vec![1, 2]);
        assert_eq!(w.rt.starts.len(), 5);
        assert!(w.events_where(|e| matches!(e, Event::PodTerminating { .. })).is_empty());
    }
}

sim_test! {
    fn duplicate_name_first_file_wins() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.src.write("b.yaml", P::new("web", "from-b").yaml());
        w.src.write("a.yaml", P::new("web", "from-a").yaml());
        w.run_for(50);
        assert_eq!(w.rt.live("web", "app").unwrap().1.image, "from-a");
        assert!(matches!(w.file_state("b.yaml"), Some(FileState::Duplicate(_))));
        assert_eq!(w.events_where(|e| matches!(e, Event::ManifestDuplicate { .. })).len(), 1, "reported once");
        // The winner goes away: the duplicate takes over.
        w.delete("a.yaml");
        run_checked(&mut w, 50);
        assert_eq!(w.rt.live("web", "app").unwrap().1.image, "from-b");
    }
}

sim_test! {
    fn file_sorting_first_supersedes_a_running_duplicate() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.write("m.yaml", P::new("web", "from-m").yaml());
        w.run_for(10);
        w.write("a.yaml", P::new("web", "from-a").yaml());
        run_checked(&mut w, 50);
        assert_eq!(w.rt.live("web", "app").unwrap().1.image, "from-a");
        assert_eq!(w.events_where(|e| matches!(e, Event::PodTerminating { reason: StopReason::Superseded, .. })).len(), 1);
        assert!(matches!(w.file_state("m.yaml"), Some(FileState::Duplicate(_))));
    }
}

sim_test! {
    fn rename_restarts_pod() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.write("web.yaml", P::new("web", "nginx:1").yaml());
        w.run_for(10);
        let uid = w.pod("web").unwrap().1.uid().to_string();
        w.rename("web.yaml", "web-renamed.yaml");
        run_checked(&mut w, 40);
        let (_, c) = w.rt.live("web", "app").unwrap();
        assert_ne!(c.pod_uid, uid);
        assert_eq!(w.rt.starts.len(), 2);
        assert!(matches!(w.file_state("web-renamed.yaml"), Some(FileState::Pod(_))));
    }
}

sim_test! {
    fn one_instance_per_full_name() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("slow", Plan { ignore_stop: true, ..Plan::FOREVER });
        w.write("web.yaml", P::new("web", "slow").grace(8).yaml());
        run_checked(&mut w, 5);
        // Edit, rename and duplicate in quick succession while the old one is slow to stop.
        w.write("web.yaml", P::new("web", "slow").grace(8).label("v", "2").yaml());
        run_checked(&mut w, 1);
        w.rename("web.yaml", "x.yaml");
        run_checked(&mut w, 1);
        w.write("a.yaml", P::new("web", "slow").grace(8).label("v", "3").yaml());
        run_checked(&mut w, 60);
        assert_eq!(w.rt.live_count(), 1);
        assert!(matches!(w.file_state("a.yaml"), Some(FileState::Pod(_))));
        // A different namespace is a different full name: both run.
        w.write("other.yaml", P::new("web", "slow").namespace("other").yaml());
        run_checked(&mut w, 5);
        assert_eq!(w.rt.live_count(), 2);
    }
}

sim_test! {
    fn capacity_full_rejects_newcomer_only() {
        let mut st = Storage::new(2, 64);
        let mut w = World::fake(&mut st);
        w.write("a.yaml", P::new("a", "img").yaml());
        w.write("b.yaml", P::new("b", "img").yaml());
        w.run_for(5);
        w.write("c.yaml", P::new("c", "img").yaml());
        w.run_for(30);
        assert_eq!(w.file_state("c.yaml"), Some(FileState::NoCapacity));
        assert!(!w.events_where(|e| matches!(e, Event::CapacityFull { .. })).is_empty());
        assert!(w.rt.signals.is_empty(), "nothing running disturbed");
        assert_eq!(w.rt.live_count(), 2);
        w.delete("a.yaml");
        w.run_for(10);
        assert!(w.rt.live("c-", "app").is_some());
        assert!(w.rt.live("b-", "app").is_some());
    }
}

sim_test! {
    fn edit_while_still_starting() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("init", Plan::exits(30, 0));
        w.write("web.yaml", P::new("web", "app:1").init(C::new("setup", "init")).yaml());
        w.run_for(5);
        assert_eq!(w.pod("web").unwrap().1.phase(), keel_core::status::Phase::Pending);
        w.write("web.yaml", P::new("web", "app:2").init(C::new("setup", "init")).yaml());
        run_checked(&mut w, 60);
        assert_eq!(w.rt.live("web", "app").unwrap().1.image, "app:2");
        assert_eq!(w.rt.start_times("app"), vec![5_000 + 30_000]);
        assert_eq!(w.rt.start_times("setup"), vec![0, 5_000]);
    }
}
