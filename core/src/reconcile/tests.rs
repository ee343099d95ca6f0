//! Unit tests of what the reconciler derives from pod states: a slot's next deadline.

use super::slots::{Life, PodSlot, Sandbox};
use crate::machine::{Container, Settings, State, WaitReason};
use crate::manifest::model::RestartPolicy;
use crate::platform::Handle;
use crate::status::StopReason;
use crate::time::Instant;

const S: Settings = Settings::DEFAULT;

/// A used slot with `n_init` init containers, all waiting for their first start.
fn slot(n_init: u8, n: usize) -> PodSlot {
    let mut s = PodSlot::EMPTY;
    s.used = true;
    s.n_init = n_init;
    s.sandbox = Sandbox::Ready;
    for _ in 0..n {
        s.containers
            .push(Container::new(1, WaitReason::ContainerCreating))
            .unwrap();
    }
    s
}

fn run(c: &mut Container, h: u32, at: u64) {
    c.on_started(Handle(h), 0, Instant(at));
    c.state = State::Running {
        started_at: Instant(at),
    };
    c.probes = Default::default();
    for p in c.probes.0.iter_mut() {
        p.next_at = Instant::NEVER;
    }
}

#[test]
fn a_new_pod_is_due_at_once_for_its_sandbox_and_then_a_failed_one_at_its_retry() {
    let mut s = slot(0, 1);
    s.sandbox = Sandbox::None;
    assert_eq!(s.deadline(false), Instant::ZERO);
    s.sandbox = Sandbox::Retry(Instant(10_000));
    assert_eq!(s.deadline(false), Instant(10_000));
}

#[test]
fn only_the_init_container_whose_turn_it_is_counts() {
    let mut s = slot(1, 2);
    assert_eq!(
        s.deadline(false),
        Instant::ZERO,
        "the init container starts"
    );
    run(&mut s.containers[0], 1, 5);
    assert_eq!(
        s.deadline(false),
        Instant::NEVER,
        "the app container waits for the init container, not for a time"
    );
    s.containers[0].on_exit(0, false, Instant(9), RestartPolicy::Always, true, &S);
    assert_eq!(
        s.deadline(false),
        Instant::ZERO,
        "the app container starts now"
    );
}

#[test]
fn a_failed_init_container_leaves_nothing_due() {
    let mut s = slot(1, 2);
    run(&mut s.containers[0], 1, 5);
    s.containers[0].on_exit(1, false, Instant(9), RestartPolicy::Never, true, &S);
    assert_eq!(s.deadline(false), Instant::NEVER);
}

#[test]
fn a_crash_loop_is_due_at_restart_at_and_a_running_container_at_its_probe() {
    let mut s = slot(0, 2);
    for (k, c) in s.containers.iter_mut().enumerate() {
        run(c, k as u32, 0);
    }
    s.containers[0].on_exit(1, false, Instant(1), RestartPolicy::Always, false, &S);
    s.containers[0].on_exit(1, false, Instant(2), RestartPolicy::Always, false, &S);
    s.containers[1].probes.0[0].next_at = Instant(50_000);
    assert_eq!(s.deadline(false), Instant(10_002));
    s.containers[0].on_started(Handle(9), 2, Instant(10_002));
    assert_eq!(s.deadline(false), Instant(50_000));
}

#[test]
fn starts_held_back_by_orphans_are_not_due_but_stops_are() {
    let mut s = slot(0, 2);
    assert_eq!(s.deadline(true), Instant::NEVER);
    run(&mut s.containers[1], 1, 0);
    s.containers[1].begin_stop(Instant(30_000), true);
    assert_eq!(s.deadline(true), Instant::ZERO, "the stop signal is due");
}

#[test]
fn a_terminating_pod_is_due_until_each_container_stops_then_at_its_kill() {
    let mut s = slot(0, 2);
    for (k, c) in s.containers.iter_mut().enumerate() {
        run(c, k as u32, 0);
    }
    let kill_at = Instant(30_000);
    s.life = Life::Terminating {
        kill_at,
        reason: StopReason::Deleted,
    };
    assert_eq!(s.deadline(false), Instant::ZERO, "stops to begin");
    for c in s.containers.iter_mut() {
        c.stop_for_pod(kill_at);
        c.on_stop_signalled();
    }
    assert_eq!(s.deadline(false), kill_at);
    for c in s.containers.iter_mut() {
        c.on_exit(143, false, Instant(100), RestartPolicy::Always, false, &S);
        c.on_removed();
    }
    assert_eq!(s.deadline(false), Instant::ZERO, "removal is due");
}

#[test]
fn clearing_a_used_slot_in_place_gives_the_empty_slot_with_its_generation() {
    extern crate std;
    use std::format;
    let mut s = slot(1, 3);
    s.generation = 7;
    s.name_key = 9;
    s.digest = [1; 16];
    s.uid = heapless::String::try_from("u-1").unwrap();
    s.policy = RestartPolicy::Never;
    s.life = Life::Terminating {
        kill_at: Instant(5),
        reason: StopReason::Deleted,
    };
    s.clear(8);
    let mut want = PodSlot::EMPTY;
    want.generation = 8;
    assert_eq!(format!("{s:?}"), format!("{want:?}"));
}
