//! Scenario tests: the agent restarting (SPEC 4.6).

use keel_core::machine::Settings;
use keel_core::platform::Signal;
use keel_core::status::Event;
use keel_host_tests::sim::*;
use keel_host_tests::sim_test;

/// Runs a first agent for `secs`, lets `outage` change things, and starts a second agent over
/// the same source and runtime.
fn restart_agent(
    prep: impl FnOnce(&mut World<'_, FakeSource, FakeRuntime>),
    outage: impl FnOnce(&mut FakeSource, &mut FakeRuntime),
    check: impl FnOnce(&mut World<'_, FakeSource, FakeRuntime>),
) {
    let mut st1 = Storage::new(8, 64);
    let mut w1 = World::fake(&mut st1);
    prep(&mut w1);
    let (mut src, mut rt, now) = w1.into_parts();
    outage(&mut src, &mut rt);
    rt.forget_changes();
    rt.log.push("--- agent restart ---".into());
    let mut st2 = Storage::new(8, 64);
    let mut w2 = World::at(
        &mut st2,
        src,
        rt,
        Settings::DEFAULT,
        now + Duration::from_secs(5),
    );
    check(&mut w2);
}

sim_test! {
    fn adoption_after_restart_keeps_containers_and_counts() {
        restart_agent(
            |w| {
                w.write("p.yaml", P::empty("p").init(C::new("setup", "init")).container(C::new("app", "img")).yaml());
                w.rt.plan("init", Plan::exits(1, 0));
                w.run_for(5);
                w.rt.exit("p", "app", 1, false);
                w.run_for(1);
                w.rt.exit("p", "app", 1, false);
                w.run_for(30);
                assert_eq!(w.rt.starts.len(), 4);
            },
            |_, _| {},
            |w| {
                let starts = w.rt.starts.len();
                w.run_for(60);
                assert_eq!(w.rt.starts.len(), starts, "nothing restarted\n{}", w.rt.log.join("\n"));
                assert!(w.rt.signals.is_empty());
                assert_eq!(w.events_where(|e| matches!(e, Event::ContainerAdopted { .. })).len(), 1);
                let s = w.pod("p").unwrap().1;
                assert_eq!(s.containers()[1].restart_count, 2);
                assert_eq!(s.phase(), keel_core::status::Phase::Running);
                // It keeps counting from there.
                w.rt.exit("p", "app", 1, false);
                w.run_for(30);
                assert_eq!(w.rt.starts.last().unwrap().restart_count, 3);
            },
        );
    }
}

sim_test! {
    fn orphans_removed_after_restart() {
        restart_agent(
            |w| {
                w.write("p.yaml", P::new("p", "img").yaml());
                w.write("q.yaml", P::new("q", "img").yaml());
                w.run_for(5);
            },
            |src, _| src.delete("q.yaml"),
            |w| {
                w.run_for(30);
                assert!(w.rt.live("p-", "app").is_some());
                assert!(w.rt.live("q-", "app").is_none());
                assert_eq!(w.rt.containers.len(), 1);
                assert_eq!(w.rt.sandboxes.len(), 1);
                assert_eq!(w.events_where(|e| matches!(e, Event::OrphanRemoved)).len(), 1);
            },
        );
    }
}

sim_test! {
    fn slow_orphan_is_killed_after_min_grace() {
        restart_agent(
            |w| {
                w.rt.plan("stubborn", Plan { ignore_stop: true, ..Plan::FOREVER });
                w.write("q.yaml", P::new("q", "stubborn").yaml());
                w.run_for(5);
            },
            |src, _| src.delete("q.yaml"),
            |w| {
                let t0 = w.now;
                w.run_for(30);
                let sigs: Vec<(Instant, Signal)> = w.rt.signals.iter().map(|(t, _, s)| (*t, *s)).collect();
                assert_eq!(sigs, vec![(t0, Signal::Stop), (t0 + Duration::from_secs(2), Signal::Kill)]);
                assert!(w.rt.containers.is_empty() && w.rt.sandboxes.is_empty());
            },
        );
    }
}

sim_test! {
    fn exit_during_outage_recorded_on_adoption() {
        restart_agent(
            |w| {
                w.write("p.yaml", P::new("p", "img").yaml());
                w.run_for(5);
            },
            |_, rt| rt.exit("p", "app", 3, false),
            |w| {
                w.run_for(30);
                let c = w.pod("p").unwrap().1.containers()[0];
                let last = c.last.expect("exit recorded");
                assert_eq!(last.code, 3);
                assert_eq!(c.restart_count, 1);
                assert_eq!(w.rt.starts.last().unwrap().restart_count, 1);
                assert_eq!(w.rt.containers.len(), 1, "the exited container was removed\n{}", w.rt.log.join("\n"));
                assert_eq!(w.events_where(|e| matches!(e, Event::ContainerExited { code: 3, .. })).len(), 1);
            },
        );
    }
}

sim_test! {
    fn edit_during_outage_replaces_the_pod_one_instance_at_a_time() {
        restart_agent(
            |w| {
                w.rt.plan("stubborn", Plan { ignore_stop: true, ..Plan::FOREVER });
                w.write("p.yaml", P::new("p", "stubborn").yaml());
                w.run_for(5);
            },
            |src, _| src.write("p.yaml", P::new("p", "stubborn").label("v", "2").yaml()),
            |w| {
                let t0 = w.now;
                let old_uid = w.rt.live("p", "app").unwrap().1.pod_uid.clone();
                while w.now < t0 + Duration::from_secs(20) {
                    w.step();
                    let uids: std::collections::BTreeSet<_> =
                        w.rt.containers.values().filter(|c| c.is_live()).map(|c| c.pod_uid.clone()).collect();
                    assert!(uids.len() <= 1, "two instances at {}\n{}", t(w.now), w.rt.log.join("\n"));
                }
                assert_ne!(w.rt.live("p", "app").unwrap().1.pod_uid, old_uid);
            },
        );
    }
}
