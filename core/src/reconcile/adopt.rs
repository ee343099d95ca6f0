//! Adoption: taking over what an earlier agent left running (SPEC 4.6).
//!
//! This module deals with the first poll after start-up, when [`Runtime::adopt`] reports
//! every container and sandbox that exists: a container whose pod UID, name and spec digest
//! match a loaded pod is adopted with its restart count (and its exit, if it ended while the
//! agent was away); anything else is an orphan, stopped gracefully and removed, and no
//! container starts until the orphans are gone (one may be an older instance of a pod,
//! SPEC 3.7). Each report is handled as it comes, so adoption needs no list of its own and
//! cannot lose a container however many there are; only orphans are queued, and one that
//! does not fit is counted and reported, and then no orphan sandbox is removed (it may
//! still hold the untracked container).

use super::observe::apply_state;
use super::slots::{Life, PodSlot, Sandbox};
use super::{Inner, Orphan, Outbox, Scratch, MAX_UID};
use crate::config::Limit;
use crate::machine::{Probes, Settings};
use crate::platform::{Existing, RunState, Runtime, Signal};
use crate::status::Event;
use crate::time::Instant;
use heapless::String;

/// One report of [`Runtime::adopt`] taken into the slots; returns false when it is an
/// orphan (no active pod wants it).
fn take(
    slots: &mut [PodSlot],
    scratch: &mut Scratch,
    out: &mut Outbox,
    settings: &Settings,
    ex: &Existing<'_>,
    now: Instant,
) -> bool {
    let Some(si) = slots
        .iter()
        .position(|s| s.used && s.uid.as_str() == ex.pod_uid() && s.life == Life::Active)
    else {
        return false;
    };
    let s = &mut slots[si];
    let &Existing::Container {
        handle,
        name,
        restart_count,
        digest,
        state,
        started_at,
        ..
    } = ex
    else {
        s.sandbox = Sandbox::Ready;
        if let Existing::Sandbox {
            created_at: Some(at),
            ..
        } = *ex
        {
            s.adopt_created_at(at);
        }
        return true;
    };
    if !s.decode_into(&mut scratch.pod) {
        return false;
    }
    let pod = &scratch.pod;
    let Some(k) = pod
        .all_containers()
        .position(|(_, c)| pod.s(c.name) == name)
    else {
        return false;
    };
    let c = &mut s.containers[k];
    if c.digest != digest || c.handle.is_some() {
        return false;
    }
    c.on_adopted(handle, restart_count, now);
    if let Some(at) = started_at {
        c.on_adopted_start(at.min(now));
    }
    // Containers of earlier inits that completed are not reported by the runtime once
    // removed; an adopted container implies that the init containers before it succeeded
    // and the sidecars before it started (one not found is started again, as after a
    // crash).
    let before = k.min(s.n_init as usize);
    for init in s.containers[..before].iter_mut() {
        if init.sidecar {
            init.init_done = true;
        } else if init.handle.is_none() {
            init.on_assumed_completed(now);
        }
    }
    let id = s.id(si);
    out.emit(Event::ContainerAdopted {
        pod: id,
        container: k as u8,
    });
    if state == RunState::Running {
        // Running since its start: its postStart hook ran then, and is not run again.
        let timings = s.probes.get(k).copied().unwrap_or(Probes([None; 3]));
        s.containers[k].on_adopted_running(&timings);
    } else {
        apply_state(s, id, k, state, now, settings, out);
    }
    true
}

impl Inner<'_> {
    /// Adopts or queues for removal everything the runtime reports (once, at start-up).
    pub(super) fn adopt<R: Runtime>(&mut self, now: Instant, rt: &mut R, scratch: &mut Scratch) {
        let slots = &mut *self.slots;
        let out = &mut self.out;
        let orphans = &mut self.orphans;
        let orphan_sandboxes = &mut self.orphan_sandboxes;
        let settings = &self.settings;
        let mut leaked = 0u32;
        let kill_at = now + settings.min_grace;
        rt.adopt(&mut |ex: Existing<'_>| {
            if take(slots, scratch, out, settings, &ex, now) {
                return;
            }
            let queued = match ex {
                Existing::Container { handle, .. } => orphans
                    .push(Orphan {
                        handle,
                        kill_at,
                        killed: false,
                    })
                    .is_ok(),
                Existing::Sandbox { pod_uid, .. } => String::<MAX_UID>::try_from(pod_uid)
                    .ok()
                    .is_some_and(|u| orphan_sandboxes.push(u).is_ok()),
            };
            if !queued {
                leaked += 1;
            }
        });
        if leaked > 0 {
            self.counters.orphans_leaked = self.counters.orphans_leaked.saturating_add(leaked);
            self.emit(Event::CapacityFull {
                limit: Limit::Orphans,
            });
        }
        // Exited while the agent was away: the exit is recorded; the container goes now, so
        // that a restart does not leave it behind.
        for s in self.slots.iter_mut().filter(|s| s.used) {
            for c in s.containers.iter_mut() {
                if let Some(h) = c.finished_handle() {
                    c.on_removed();
                    // A container the runtime cannot remove is its to report.
                    rt.remove_container(h).ok();
                }
            }
        }
        for o in self.orphans.iter() {
            // An orphan that cannot be signalled is killed and removed at its deadline.
            rt.signal(o.handle, Signal::Stop).ok();
        }
    }

    /// Stops orphans step by step: stop signal (sent at adoption), SIGKILL after the minimum
    /// grace, forced removal after that; removes orphan sandboxes once no orphan is left.
    pub(super) fn advance_orphans<R: Runtime>(&mut self, now: Instant, rt: &mut R) {
        let mut i = 0;
        while i < self.orphans.len() {
            let o = self.orphans[i];
            match rt.state(o.handle) {
                RunState::Exited { .. } | RunState::Gone => {
                    rt.remove_container(o.handle).ok();
                    self.orphans.swap_remove(i);
                    self.emit(Event::OrphanRemoved);
                    continue;
                }
                _ if now >= o.kill_at && !o.killed => {
                    rt.signal(o.handle, Signal::Kill).ok();
                    self.orphans[i] = Orphan {
                        kill_at: now + self.settings.min_grace,
                        killed: true,
                        ..o
                    };
                }
                _ if now >= o.kill_at => {
                    // Killed and still not gone: remove forcibly.
                    rt.remove_container(o.handle).ok();
                    self.orphans.swap_remove(i);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        // A sandbox goes only after its containers (the runtime's contract); with orphans
        // left untracked, which pod they belong to is unknown, so every sandbox stays.
        if self.orphans.is_empty() && self.counters.orphans_leaked == 0 {
            while let Some(uid) = self.orphan_sandboxes.pop() {
                rt.remove_sandbox(&uid).ok();
            }
        }
    }
}
