//! Scenario tests: the agent restarting (SPEC 4.6).

use keel_core::machine::Settings;
use keel_core::machine::State;
use keel_core::platform::{RunState, Signal};
use keel_core::reconcile::MAX_ORPHANS;
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

/// What a container was before the restart: pod, name, restart count, state, start time.
type Before = (String, String, u32, RunState, u64);

/// Runs a first agent with `pods` pods (each one init container, then `sidecar` when
/// set, then the app containers `apps`), exits every container a few times (a different
/// number per pod and container), then restarts it after `outage`: the second agent's
/// world goes to `check`.
fn restart_many(
    pods: usize,
    sidecar: Option<&str>,
    apps: &[&str],
    outage: impl FnOnce(&mut FakeSource, &mut FakeRuntime),
    check: impl FnOnce(&mut World<'_, FakeSource, FakeRuntime>, &[Before]),
) {
    let mut st1 = Storage::new(pods, pods + 8);
    let mut w1 = World::fake(&mut st1);
    w1.rt.plan("init", Plan::exits(1, 0));
    for i in 0..pods {
        let mut p = P::empty(&format!("p{i}")).init(C::new("setup", "init"));
        if let Some(s) = sidecar {
            p = p.init(C::new(s, "img").sidecar());
        }
        for a in apps {
            p = p.container(C::new(a, "img"));
        }
        w1.write(&format!("p{i}.yaml"), p.policy("OnFailure").yaml());
    }
    w1.run_for(5);
    // Restart counts that differ per pod and container.
    let names: Vec<&str> = sidecar.into_iter().chain(apps.iter().copied()).collect();
    for i in 0..pods {
        for (n, name) in names.iter().enumerate() {
            for _ in 0..(i + n) % 3 {
                w1.rt.exit(&format!("p{i}-"), name, 1 + n as i32, false);
                w1.run_for(1);
            }
        }
    }
    w1.run_for(120);
    let (mut src, mut rt, now) = w1.into_parts();
    outage(&mut src, &mut rt);
    rt.forget_changes();
    let before: Vec<_> = rt
        .containers
        .values()
        .map(|c| {
            (
                c.pod_name.clone(),
                c.name.clone(),
                c.restart_count,
                c.state,
                c.started_at.0,
            )
        })
        .collect();
    let mut st2 = Storage::new(pods, pods + 8);
    let mut w2 = World::at(
        &mut st2,
        src,
        rt,
        Settings::DEFAULT,
        now + Duration::from_secs(5),
    );
    check(&mut w2, &before);
}

sim_test! {
    fn adoption_of_many_pods_keeps_every_container_and_runs_no_init_again() {
        // 40 pods x 4 containers: more than any fixed adoption list held.
        restart_many(
            40,
            None,
            &["a", "b", "c"],
            |_, rt| {
                // One container of one pod exits with its code while the agent is away.
                let h = rt.live("p7-", "b").unwrap().0;
                rt.finish(h, 3, false);
            },
            |w, before| {
                assert_eq!(before.len(), 120, "the init containers were removed once done");
                let starts = w.rt.starts.len();
                w.run_for(30);
                let adopted = w.events_where(|e| matches!(e, Event::ContainerAdopted { .. }));
                assert_eq!(adopted.len(), 120);
                // Only the container that exited during the outage restarts (OnFailure, 3).
                let new: Vec<_> = w.rt.starts[starts..].iter().map(|s| (s.pod_name.clone(), s.name.clone(), s.restart_count)).collect();
                assert_eq!(new.len(), 1, "{new:?}");
                assert!(new[0].0.starts_with("p7-") && new[0].1 == "b", "{new:?}");
                for (pod, name, count, state, _) in before.iter().cloned() {
                    let short = pod.split('-').next().unwrap().to_string();
                    let (_, slot) = w.pod(&short).unwrap();
                    assert!(matches!(slot.containers()[0].state, State::Terminated(t) if t.code == 0), "{pod}: init not run again");
                    let k = 1 + ["a", "b", "c"].iter().position(|n| *n == name).unwrap();
                    let c = slot.containers()[k];
                    match state {
                        RunState::Exited { code, .. } => {
                            assert_eq!(c.last.map(|t| t.code), Some(code), "{pod}/{name}");
                            assert_eq!(c.restart_count, count + 1, "{pod}/{name}");
                        }
                        _ => assert_eq!(c.restart_count, count, "{pod}/{name}"),
                    }
                }
            },
        );
    }
}

sim_test! {
    fn adoption_of_110_pods_with_sidecars_keeps_counts_exit_codes_and_start_times() {
        // The kubelet's default pod limit, each pod an init container, a native sidecar
        // and two app containers: 440 containers, 330 of them live across the restart.
        let pods = 110;
        let names = ["side", "a", "b"];
        restart_many(
            pods,
            Some("side"),
            &names[1..],
            |_, rt| {
                // Containers that exit with their code while the agent is away.
                for (pod, name, code) in [("p3-", "a", 7), ("p50-", "side", 9), ("p109-", "b", 4)] {
                    let h = rt.live(pod, name).unwrap().0;
                    rt.finish(h, code, false);
                }
            },
            |w, before| {
                assert_eq!(before.len(), pods * 3, "the init containers were removed once done");
                let starts = w.rt.starts.len();
                w.run_for(1);
                // 330 adoption events overflow the event queue between drains: what did
                // not fit is counted (the containers' states below are what matters).
                let adopted = w.events_where(|e| matches!(e, Event::ContainerAdopted { .. }));
                let dropped = w.rec.counters().events_dropped as usize;
                assert!(adopted.len() + dropped >= pods * 3, "{} + {dropped}", adopted.len());
                for (pod, name, count, state, started) in before.iter().cloned() {
                    let short = pod.split('-').next().unwrap().to_string();
                    let (_, slot) = w.pod(&format!("{short}-")).unwrap();
                    let cs = slot.containers();
                    assert_eq!(cs.len(), 4, "{pod}");
                    assert!(matches!(cs[0].state, State::Terminated(t) if t.code == 0), "{pod}: init not run again");
                    let c = cs[1 + names.iter().position(|n| *n == name).unwrap()];
                    match state {
                        // Seen exited, with its code; restarted at once or after its back-off.
                        RunState::Exited { code, .. } => {
                            assert_eq!(c.last.map(|t| t.code), Some(code), "{pod}/{name}");
                        }
                        _ => {
                            assert_eq!(c.restart_count, count, "{pod}/{name}");
                            assert_eq!(c.state, State::Running { started_at: Instant(started) }, "{pod}/{name}: start time kept");
                        }
                    }
                }
                w.run_for(60);
                let new: Vec<_> = w.rt.starts[starts..].iter().map(|s| (s.pod_name.clone(), s.name.clone())).collect();
                assert_eq!(new.len(), 3, "only the three that exited restart: {new:?}");
                assert!(w.rt.starts[starts..].iter().all(|s| s.name != "setup"), "no init container ran again");
            },
        );
    }
}

sim_test! {
    fn orphans_beyond_the_queue_are_counted_and_reported_and_no_sandbox_goes() {
        // Pods whose files went while the agent was away: more containers and sandboxes to
        // remove than the orphan queues hold.
        let n = MAX_ORPHANS + 4;
        let mut st1 = Storage::new(n, n + 8);
        let mut w1 = World::fake(&mut st1);
        for i in 0..n {
            w1.write(&format!("p{i}.yaml"), P::new(&format!("p{i}"), "img").yaml());
        }
        w1.run_for(5);
        let (mut src, mut rt, now) = w1.into_parts();
        for i in 0..n {
            src.delete(&format!("p{i}.yaml"));
        }
        rt.forget_changes();
        let mut st2 = Storage::new(n, n + 8);
        let mut w2 = World::at(&mut st2, src, rt, Settings::DEFAULT, now + Duration::from_secs(5));
        w2.run_for(30);
        let full = w2.events_where(|e| {
            matches!(e, Event::CapacityFull { limit: keel_core::config::Limit::Orphans })
        });
        assert_eq!(full.len(), 1);
        assert_eq!(w2.rec.counters().orphans_leaked, 4 + 4);
        let removed = w2.events_where(|e| matches!(e, Event::OrphanRemoved));
        assert_eq!(removed.len(), MAX_ORPHANS);
        assert_eq!(w2.rt.containers.len(), 4, "the untracked ones are left running");
        assert_eq!(w2.rt.sandboxes.len(), n, "no sandbox removed under a container");
    }
}

sim_test! {
    fn adoption_keeps_start_times_age_and_the_backoff_clock() {
        restart_agent(
            |w| {
                w.write("p.yaml", P::empty("p").container(C::new("app", "img").post_start("hook")).yaml());
                w.run_for(5);
                w.rt.exit("p", "app", 1, false);
                w.run_for(1);
                // Restarted (restart count 1) at 5 s; it then runs 20 minutes.
                w.run_for(1_200);
                assert_eq!(w.rt.start_times("app"), vec![0, 5_000]);
            },
            |_, _| {},
            |w| {
                w.run_for(1);
                let s = w.pod("p").unwrap().1;
                assert_eq!(s.created_at().0, 0, "the pod's age counts from its sandbox");
                let c = s.containers()[0];
                assert_eq!(c.state, State::Running { started_at: Instant(5_000) }, "not the adoption time");
                assert_eq!(c.restart_count, 1);
                assert_eq!(c.backoff.last_at, Instant(5_000));
                let hooks = w.rt.actions.iter().filter(|a| a.2 == "hook").count();
                assert_eq!(hooks, 2, "postStart is not run again on adoption");
                // It ran 20 minutes since its last restart: its next restart is immediate.
                w.rt.exit("p", "app", 1, false);
                w.run_for(1);
                assert_eq!(w.rt.starts.len(), 3, "{}", w.rt.log.join("\n"));
            },
        );
    }
}
