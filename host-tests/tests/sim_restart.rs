//! Scenario tests: restarts, backoff, init containers, termination, probes, phases and
//! waiting reasons (SPEC 4.1–4.5, 5.1–5.2).

use keel_core::machine::{State, TermReason, WaitReason};
use keel_core::platform::{ActionResult, Signal};
use keel_core::status::{Event, Phase, ProbeKind};
use keel_host_tests::sim::*;
use keel_host_tests::sim_test;

type W<'s> = World<'s, FakeSource, FakeRuntime>;

fn state(w: &mut W<'_>, pod: &str, k: usize) -> State {
    w.pod(pod).unwrap().1.containers()[k].state
}

fn phase(w: &mut W<'_>, pod: &str) -> Phase {
    w.pod(pod).unwrap().1.phase()
}

fn policy_case(policy: &str, code: i32) -> usize {
    let mut st = Storage::new(8, 64);
    let mut w = World::fake(&mut st);
    w.write("p.yaml", P::new("p", "img").policy(policy).yaml());
    w.run_for(5);
    w.rt.exit("p", "app", code, false);
    w.run_for(100);
    w.rt.starts.len() - 1
}

sim_test! {
    fn always_restarts_any_exit() {
        assert_eq!(policy_case("Always", 0), 1);
        assert_eq!(policy_case("Always", 2), 1);
    }
}

sim_test! {
    fn on_failure_restarts_only_non_zero_exits() {
        assert_eq!(policy_case("OnFailure", 0), 0);
        assert_eq!(policy_case("OnFailure", 2), 1);
    }
}

sim_test! {
    fn never_never_restarts() {
        assert_eq!(policy_case("Never", 0), 0);
        assert_eq!(policy_case("Never", 2), 0);
    }
}

sim_test! {
    fn crash_loop_backoff_two_simulated_hours_exact_sequence() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("crash", Plan::exits(1, 1));
        w.write("c.yaml", P::new("c", "crash").yaml());
        let mut waiting_reasons = Vec::new();
        while w.now < at(7200) {
            w.step();
            if let State::Waiting { reason, .. } = state(&mut w, "c", 0) {
                waiting_reasons.push(reason);
            }
        }
        // Runs 1 s, crashes; restarts after 0, 10, 20, 40, 80, 160, then 300 s for ever
        // (each step is 301 s after the last, so never more than 600 s: no reset).
        let mut want = vec![0, 1, 12, 33, 74, 155, 316, 617];
        while want.last().unwrap() + 301 <= 7200 {
            let next = want.last().unwrap() + 301;
            want.push(next);
        }
        let got: Vec<u64> = w.rt.start_times("app").iter().map(|ms| ms / 1000).collect();
        assert_eq!(got, want);
        assert!(w.rt.start_times("app").iter().all(|ms| ms % 1000 == 0));
        let delays: Vec<u64> = w
            .events_where(|e| matches!(e, Event::BackoffScheduled { .. }))
            .iter()
            .map(|(now, e)| match e { Event::BackoffScheduled { until, .. } => (until.0 - now.0) / 1000, _ => 0 })
            .collect();
        assert_eq!(&delays[..7], &[10, 20, 40, 80, 160, 300, 300]);
        assert!(delays.iter().all(|d| *d <= 300));
        assert!(waiting_reasons.contains(&WaitReason::CrashLoopBackOff));
        let rc: Vec<u32> = w.rt.starts.iter().map(|s| s.restart_count).collect();
        assert_eq!(rc, (0..want.len() as u32).collect::<Vec<_>>());
    }
}

sim_test! {
    fn backoff_resets_after_600s_of_running() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("crash", Plan::exits(1, 1));
        w.write("c.yaml", P::new("c", "crash").yaml());
        w.run_until(at(40)); // starts 0, 1, 12, 33
        w.rt.plan("crash", Plan::exits(700, 1)); // the start at 74 runs 700 s
        w.run_until(at(80));
        w.rt.plan("crash", Plan::exits(1, 1));
        w.run_until(at(800));
        let got: Vec<u64> = w.rt.start_times("app").iter().map(|ms| ms / 1000).collect();
        // Exit at 774 is more than 600 s after the last step (at 34): immediate, then 10 s.
        assert_eq!(got, vec![0, 1, 12, 33, 74, 774, 785]);
    }
}

sim_test! {
    fn an_edit_starts_the_backoff_afresh() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("crash", Plan::exits(1, 1));
        w.rt.plan("crash2", Plan::exits(1, 1));
        w.write("c.yaml", P::new("c", "crash").yaml());
        w.run_until(at(50)); // in a 40 s backoff until 74
        w.write("c.yaml", P::new("c", "crash2").yaml());
        w.run_until(at(65));
        let got: Vec<u64> = w.rt.start_times("app").iter().map(|ms| ms / 1000).collect();
        assert_eq!(got, vec![0, 1, 12, 33, 50, 51, 62]);
    }
}

sim_test! {
    fn init_containers_run_in_order() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("i1", Plan::exits(2, 0));
        w.rt.plan("i2", Plan::exits(3, 0));
        w.write("p.yaml", P::new("p", "app").init(C::new("one", "i1")).init(C::new("two", "i2")).yaml());
        w.run_for(1);
        assert_eq!(phase(&mut w, "p"), Phase::Pending);
        assert!(matches!(state(&mut w, "p", 2), State::Waiting { reason: WaitReason::PodInitializing, .. }));
        w.run_for(10);
        assert_eq!(w.rt.start_times("one"), vec![0]);
        assert_eq!(w.rt.start_times("two"), vec![2_000]);
        assert_eq!(w.rt.start_times("app"), vec![5_000]);
        assert_eq!(phase(&mut w, "p"), Phase::Running);
    }
}

sim_test! {
    fn failed_init_is_retried_with_backoff_under_on_failure() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("i1", Plan::exits(1, 1));
        w.write("p.yaml", P::new("p", "app").policy("OnFailure").init(C::new("one", "i1")).yaml());
        w.run_for(20);
        assert_eq!(w.rt.start_times("one"), vec![0, 1_000, 12_000]);
        assert!(w.rt.start_times("app").is_empty());
        w.rt.plan("i1", Plan::exits(1, 0));
        w.run_for(30);
        assert_eq!(w.rt.start_times("app"), vec![34_000]);
    }
}

sim_test! {
    fn failed_init_under_never_fails_pod() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("i1", Plan::exits(1, 3));
        w.write("p.yaml", P::new("p", "app").policy("Never").init(C::new("one", "i1")).yaml());
        w.run_for(100);
        assert_eq!(w.rt.start_times("one"), vec![0]);
        assert!(w.rt.start_times("app").is_empty());
        assert_eq!(phase(&mut w, "p"), Phase::Failed);
    }
}

sim_test! {
    fn termination_sigterm_then_sigkill_after_grace_min_2s() {
        for (grace, kill_after) in [(0u64, 2_000u64), (1, 2_000), (5, 5_000)] {
            let mut st = Storage::new(8, 64);
            let mut w = World::fake(&mut st);
            w.rt.plan("stubborn", Plan { ignore_stop: true, ..Plan::FOREVER });
            w.write("p.yaml", P::new("p", "stubborn").grace(grace as i64).yaml());
            w.run_for(10);
            w.delete("p.yaml");
            w.run_for(30);
            let sigs: Vec<(u64, Signal)> = w.rt.signals.iter().map(|(t, _, s)| (t.0, *s)).collect();
            assert_eq!(sigs, vec![(10_000, Signal::Stop), (10_000 + kill_after, Signal::Kill)], "grace {grace}");
            assert!(w.rt.containers.is_empty());
        }
    }
}

sim_test! {
    fn prestop_runs_first_and_its_time_comes_off_grace() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("stubborn", Plan { ignore_stop: true, ..Plan::FOREVER });
        w.rt.script_action("drain", &[ActionScript { result: ActionResult::Success, takes: Duration::from_secs(3) }]);
        w.write("p.yaml", P::empty("p").container(C::new("app", "stubborn").pre_stop("drain")).grace(10).yaml());
        w.run_for(10);
        w.delete("p.yaml");
        w.run_for(30);
        assert_eq!(w.rt.actions, vec![(at(10), "app".to_string(), "drain".to_string())]);
        let sigs: Vec<(u64, Signal)> = w.rt.signals.iter().map(|(t, _, s)| (t.0, *s)).collect();
        assert_eq!(sigs, vec![(13_000, Signal::Stop), (20_000, Signal::Kill)]);
    }
}

sim_test! {
    fn liveness_failing_threshold_times_kills_and_restarts() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("live", 2, ActionResult::Success);
        w.rt.script_n("live", 3, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").liveness("live", 5, 3)).yaml());
        w.run_for(19);
        assert_eq!(w.rt.starts.len(), 1);
        w.run_for(15);
        // Probes at 0, 5 pass; 10, 15, 20 fail: killed at 20, restarted at once.
        let probes: Vec<u64> = w.rt.actions.iter().filter(|a| a.2 == "live").map(|a| a.0 .0 / 1000).take(5).collect();
        assert_eq!(probes, vec![0, 5, 10, 15, 20]);
        assert_eq!(w.events_where(|e| matches!(e, Event::ProbeFailed { probe: ProbeKind::Liveness, .. })).len(), 1);
        assert_eq!(w.rt.start_times("app"), vec![0, 20_000]);
        assert_eq!(w.rt.signals[0], (at(20), "app".to_string(), Signal::Stop));
    }
}

sim_test! {
    fn liveness_kill_under_never_does_not_restart() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("live", 3, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").policy("Never").container(C::new("app", "img").liveness("live", 5, 3)).yaml());
        w.run_for(100);
        assert_eq!(w.rt.start_times("app"), vec![0]);
        assert_eq!(phase(&mut w, "p"), Phase::Failed);
    }
}

sim_test! {
    fn readiness_only_sets_ready_and_starts_false() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_action("ready", &[ActionScript { result: ActionResult::Success, takes: Duration::from_secs(1) }]);
        w.rt.script_n("ready", 3, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").readiness("ready", 5, 3).delay(1, 2)).yaml());
        w.run_for(1);
        let c = w.pod("p").unwrap().1.containers()[0];
        assert!(!c.ready && matches!(c.state, State::Running { .. }));
        w.run_for(3); // probe at 2 takes 1 s
        assert!(w.pod("p").unwrap().1.containers()[0].ready);
        w.run_for(15); // fails at 8, 13, 18
        assert!(!w.pod("p").unwrap().1.containers()[0].ready);
        w.run_for(10);
        assert!(w.pod("p").unwrap().1.containers()[0].ready);
        assert_eq!(w.rt.starts.len(), 1, "readiness never restarts");
        assert!(w.rt.signals.is_empty());
    }
}

sim_test! {
    fn startup_probe_gates_liveness_and_readiness() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("boot", 2, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").startup("boot", 2, 5).liveness("live", 10, 3)).yaml());
        w.run_for(3);
        let c = w.pod("p").unwrap().1.containers()[0];
        assert!(!c.started && !c.ready);
        w.run_for(30);
        let words: Vec<(u64, String)> = w.rt.actions.iter().map(|a| (a.0 .0 / 1000, a.2.clone())).take(4).collect();
        assert_eq!(words, vec![(0, "boot".into()), (2, "boot".into()), (4, "boot".into()), (4, "live".into())]);
        let c = w.pod("p").unwrap().1.containers()[0];
        assert!(c.started && c.ready);
        // Deadlines stay sane after the startup probe passed: nothing polls in a loop.
        let polls = w.polls;
        w.run_for(100);
        assert!(w.polls - polls < 40, "{} polls in 100 s", w.polls - polls);
    }
}

sim_test! {
    fn startup_probe_failing_kills_the_container() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("boot", 3, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").startup("boot", 2, 3)).yaml());
        w.run_for(10);
        assert_eq!(w.events_where(|e| matches!(e, Event::ProbeFailed { probe: ProbeKind::Startup, .. })).len(), 1);
        assert_eq!(w.rt.start_times("app"), vec![0, 4_000]);
    }
}

sim_test! {
    fn phases_pending_running_succeeded_failed() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.set_missing("gone", true);
        w.rt.plan("ok", Plan::exits(5, 0));
        w.rt.plan("bad", Plan::exits(5, 1));
        w.write("pending.yaml", P::new("pending", "gone").yaml());
        w.write("ok.yaml", P::new("ok", "ok").policy("Never").yaml());
        w.write("bad.yaml", P::new("bad", "bad").policy("Never").yaml());
        w.write("of.yaml", P::new("of", "ok").policy("OnFailure").yaml());
        w.write("al.yaml", P::new("al", "ok").policy("Always").yaml());
        w.run_for(1);
        assert_eq!(phase(&mut w, "ok"), Phase::Running);
        assert_eq!(phase(&mut w, "pending"), Phase::Pending);
        w.run_for(5);
        assert_eq!(phase(&mut w, "ok"), Phase::Succeeded);
        assert_eq!(phase(&mut w, "of"), Phase::Succeeded);
        assert_eq!(phase(&mut w, "bad"), Phase::Failed);
        assert_eq!(phase(&mut w, "al"), Phase::Running, "restarting under Always counts as Running");
        assert_eq!(phase(&mut w, "pending"), Phase::Pending);
    }
}

sim_test! {
    fn missing_image_waits_err_image_never_pull_and_starts_by_itself() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.set_missing("late", true);
        w.write("p.yaml", P::new("p", "late").yaml());
        w.run_for(1);
        assert!(matches!(state(&mut w, "p", 0), State::Waiting { reason: WaitReason::ErrImageNeverPull, .. }));
        assert_eq!(w.events_where(|e| matches!(e, Event::StartFailed { reason: WaitReason::ErrImageNeverPull, .. })).len(), 1);
        w.rt.set_missing("late", false);
        w.run_for(15);
        assert_eq!(w.rt.start_times("app"), vec![10_000], "retried after the backoff");
    }
}

sim_test! {
    fn retry_waiting_starts_at_once_when_the_image_appears() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.set_missing("late", true);
        w.write("p.yaml", P::new("p", "late").yaml());
        w.run_for(3);
        w.rt.set_missing("late", false);
        let now = w.now;
        w.rec.retry_waiting(now);
        w.run_for(1);
        assert_eq!(w.rt.start_times("app"), vec![3_000]);
    }
}

sim_test! {
    fn retry_waiting_if_starts_only_the_containers_it_names() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.set_missing("late", true);
        w.write("p.yaml", P::new("p", "late").yaml());
        w.write("q.yaml", P::new("q", "late").yaml());
        w.run_for(3);
        w.rt.set_missing("late", false);
        let now = w.now;
        let p_uid = w.pod("p").unwrap().1.uid().to_string();
        let mut asked = Vec::new();
        w.rec.retry_waiting_if(now, &mut |uid, i| {
            asked.push((uid.to_string(), i));
            uid == p_uid && i == 0
        });
        assert_eq!(asked.len(), 2, "every waiting container is offered: {asked:?}");
        w.run_for(1);
        assert_eq!(w.rt.start_times("app"), vec![3_000], "only p started at once");
        w.run_for(10);
        assert_eq!(w.rt.start_times("app"), vec![3_000, 10_000], "q kept its backoff");
    }
}

sim_test! {
    fn oom_kill_is_reported_and_restarted() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.write("p.yaml", P::new("p", "img").yaml());
        w.run_for(3);
        w.rt.exit("p", "app", 137, true);
        w.run_for(1);
        let c = w.pod("p").unwrap().1.containers()[0];
        assert_eq!(c.last.unwrap().reason, TermReason::OOMKilled);
        assert_eq!(c.restart_count, 1);
        assert_eq!(w.events_where(|e| matches!(e, Event::ContainerExited { reason: TermReason::OOMKilled, code: 137, .. })).len(), 1);
    }
}

sim_test! {
    fn delete_during_backoff() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("crash", Plan::exits(1, 1));
        w.write("c.yaml", P::new("c", "crash").yaml());
        w.run_until(at(50)); // waiting until 74
        w.delete("c.yaml");
        w.run_for(1);
        assert!(w.pod("c").is_none());
        assert_eq!(w.events_where(|e| matches!(e, Event::PodRemoved { .. })).len(), 1);
        w.run_for(100);
        assert_eq!(w.rt.start_times("app"), vec![0, 1_000, 12_000, 33_000]);
        assert!(w.rt.sandboxes.is_empty() && w.rt.containers.is_empty());
    }
}

sim_test! {
    fn many_exits_at_once_are_all_seen() {
        let mut st = Storage::new(48, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("batch", Plan::exits(5, 0));
        for i in 0..40 {
            w.write(&format!("p{i:02}.yaml"), P::new(&format!("p{i:02}"), "batch").policy("Never").yaml());
        }
        w.run_for(10);
        for i in 0..40 {
            assert_eq!(phase(&mut w, &format!("p{i:02}")), Phase::Succeeded);
        }
        assert!(w.rt.containers.is_empty(), "exited containers removed");
        for i in 0..40 {
            w.delete(&format!("p{i:02}.yaml"));
        }
        w.run_for(10);
        assert!(w.rt.sandboxes.is_empty(), "{} sandboxes left", w.rt.sandboxes.len());
    }
}

sim_test! {
    fn slow_liveness_probes_run_on_the_ticker_not_a_period_after_each_timeout() {
        // Period 10 s, each probe hangs 15 s (its timeout) and fails; threshold 3. The
        // kubelet's ticker declares it dead at 45 s; a period after each finish gave 75 s.
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        let hung = ActionScript { result: ActionResult::Failure, takes: Duration::from_secs(15) };
        w.rt.script_action("live", &[hung; 3]);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").liveness("live", 10, 3).timeout(0, 15)).yaml());
        w.run_for(60);
        let probes: Vec<u64> = w.rt.actions.iter().filter(|a| a.2 == "live").map(|a| a.0 .0 / 1000).take(3).collect();
        assert_eq!(probes, vec![0, 15, 30]);
        assert_eq!(w.rt.signals[0], (at(45), "app".to_string(), Signal::Stop));
        assert_eq!(w.rt.start_times("app"), vec![0, 45_000]);
    }
}

sim_test! {
    fn liveness_kill_takes_the_probes_grace_period_over_the_pods() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("stubborn", Plan { ignore_stop: true, ..Plan::FOREVER });
        w.rt.script_n("live", 1, ActionResult::Failure);
        let c = C::new("app", "stubborn").liveness("live", 5, 1).probe_grace(0, 4);
        w.write("p.yaml", P::empty("p").container(c).grace(60).yaml());
        w.run_for(20);
        let sigs: Vec<(u64, Signal)> = w.rt.signals.iter().map(|(t, _, s)| (t.0, *s)).collect();
        assert_eq!(sigs, vec![(0, Signal::Stop), (4_000, Signal::Kill)]);
    }
}

sim_test! {
    fn prestop_runs_before_a_liveness_kill_too() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("stubborn", Plan { ignore_stop: true, ..Plan::FOREVER });
        w.rt.script_n("live", 1, ActionResult::Failure);
        w.rt.script_action("drain", &[ActionScript { result: ActionResult::Success, takes: Duration::from_secs(3) }]);
        let c = C::new("app", "stubborn").liveness("live", 5, 1).pre_stop("drain");
        w.write("p.yaml", P::empty("p").container(c).grace(10).yaml());
        w.run_for(12);
        let hooks: Vec<(u64, String)> = w.rt.actions.iter().filter(|a| a.2 == "drain").map(|a| (a.0 .0, a.2.clone())).collect();
        assert_eq!(hooks, vec![(0, "drain".to_string())]);
        let sigs: Vec<(u64, Signal)> = w.rt.signals.iter().map(|(t, _, s)| (t.0, *s)).collect();
        assert_eq!(sigs, vec![(3_000, Signal::Stop), (10_000, Signal::Kill)]);
        assert_eq!(w.rt.start_times("app"), vec![0, 10_000]);
    }
}

sim_test! {
    fn post_start_runs_after_the_start_and_holds_running_until_it_succeeds() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_action("hook", &[ActionScript { result: ActionResult::Success, takes: Duration::from_secs(3) }]);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").post_start("hook")).yaml());
        w.run_for(1);
        assert!(matches!(state(&mut w, "p", 0), State::PostStart { .. }), "{:?}", state(&mut w, "p", 0));
        assert!(!w.pod("p").unwrap().1.containers()[0].ready);
        assert_eq!(phase(&mut w, "p"), Phase::Pending);
        w.run_for(3);
        assert!(matches!(state(&mut w, "p", 0), State::Running { started_at } if started_at.0 == 0));
        assert!(w.pod("p").unwrap().1.containers()[0].ready);
        assert_eq!(w.rt.actions, vec![(at(0), "app".to_string(), "hook".to_string())]);
    }
}

sim_test! {
    fn a_failed_post_start_kills_the_container_which_restarts_by_policy() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("hook", 1, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").post_start("hook")).yaml());
        w.run_for(1);
        assert_eq!(w.events_where(|e| matches!(e, Event::PostStartHookFailed { .. })).len(), 1);
        assert_eq!(w.rt.signals[0], (at(0), "app".to_string(), Signal::Stop));
        // Restarted at once (first restart), the hook run again and passing this time.
        assert_eq!(w.rt.start_times("app"), vec![0, 0]);
        w.run_for(5);
        assert!(matches!(state(&mut w, "p", 0), State::Running { .. }));
        let c = w.pod("p").unwrap().1.containers()[0];
        assert_eq!(c.restart_count, 1);
        // Under Never it stays terminated.
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("hook", 1, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").policy("Never").container(C::new("app", "img").post_start("hook")).yaml());
        w.run_for(10);
        assert_eq!(w.rt.start_times("app"), vec![0]);
        assert_eq!(phase(&mut w, "p"), Phase::Failed);
    }
}

sim_test! {
    fn a_failed_post_start_waits_with_post_start_hook_error_in_backoff() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.script_n("hook", 2, ActionResult::Failure);
        w.write("p.yaml", P::empty("p").container(C::new("app", "img").post_start("hook")).yaml());
        w.run_for(1);
        assert!(
            matches!(state(&mut w, "p", 0), State::Waiting { reason: WaitReason::PostStartHookError, .. }),
            "{:?}",
            state(&mut w, "p", 0)
        );
        assert_eq!(w.rt.start_times("app"), vec![0, 0]);
        w.run_for(15);
        assert_eq!(w.rt.start_times("app"), vec![0, 0, 10_000]);
    }
}

sim_test! {
    fn a_sidecar_starts_in_order_keeps_running_and_stops_after_the_app() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("once", Plan::exits(2, 0));
        w.rt.script_n("boot", 1, ActionResult::Failure);
        let side = C::new("proxy", "img").sidecar().startup("boot", 2, 5);
        let p = P::empty("p").init(side).init(C::new("setup", "once")).container(C::new("app", "img"));
        w.write("p.yaml", p.yaml());
        w.run_for(1);
        // The next init container waits for the sidecar's startup probe (failing at 0).
        assert_eq!(w.rt.start_times("setup"), Vec::<u64>::new());
        w.run_for(5);
        assert_eq!(w.rt.start_times("setup"), vec![2_000]);
        assert_eq!(w.rt.start_times("app"), vec![4_000]);
        assert_eq!(phase(&mut w, "p"), Phase::Running);
        // The sidecar crashes: restarted (pod policy Always or not), the app untouched.
        w.rt.exit("p", "proxy", 0, false);
        w.run_for(2);
        assert_eq!(w.rt.start_times("proxy").len(), 2);
        assert_eq!(w.rt.start_times("app"), vec![4_000]);
        assert_eq!(w.rt.start_times("setup"), vec![2_000], "init containers do not rerun");
        // Deleting the pod stops the app first, the sidecar only once the app is gone.
        w.run_for(10);
        let t0 = w.now.0;
        w.delete("p.yaml");
        w.run_for(30);
        let order: Vec<(u64, String, Signal)> = w.rt.signals.iter().map(|(t, n, s)| (t.0 - t0, n.clone(), *s)).collect();
        assert_eq!(order, vec![(0, "app".to_string(), Signal::Stop), (0, "proxy".to_string(), Signal::Stop)]);
        let i_app = w.rt.log.iter().rposition(|l| l.contains("remove") && l.contains("app")).unwrap();
        let i_proxy = w.rt.log.iter().rposition(|l| l.contains("remove") && l.contains("proxy")).unwrap();
        assert!(i_app < i_proxy, "{:#?}", w.rt.log);
        assert!(w.rt.containers.is_empty());
    }
}

sim_test! {
    fn sidecars_stop_last_first_once_the_app_completes_under_never() {
        let mut st = Storage::new(8, 64);
        let mut w = World::fake(&mut st);
        w.rt.plan("job", Plan::exits(5, 0));
        let p = P::empty("p")
            .policy("Never")
            .init(C::new("a", "img").sidecar())
            .init(C::new("b", "img").sidecar())
            .container(C::new("app", "job"));
        w.write("p.yaml", p.yaml());
        w.run_for(4);
        assert_eq!(phase(&mut w, "p"), Phase::Running);
        // A sidecar restarts even under Never.
        w.rt.exit("p", "a", 1, false);
        w.run_for(1);
        assert_eq!(w.rt.start_times("a").len(), 2);
        w.run_for(10);
        let sigs: Vec<String> = w.rt.signals.iter().map(|(_, n, _)| n.clone()).collect();
        assert_eq!(sigs, vec!["b".to_string(), "a".to_string()]);
        assert_eq!(phase(&mut w, "p"), Phase::Succeeded);
        assert_eq!(w.rt.live_count(), 0);
    }
}
