//! The `reconcile` property: random scripts of file writes (valid, invalid, duplicate),
//! deletes, renames, runtime exits, faults and time steps, with invariants checked after
//! every poll. Shared by the seeded property test and the cargo-fuzz target: a script is
//! decoded from bytes, so both explore the same space.

use super::*;
use keel_core::machine::{Settings, State};
use keel_core::reconcile::{APPLIES_PER_POLL, MAX_POD_CONTAINERS};
use keel_core::status::{Event, FileState};
use std::collections::{BTreeMap, BTreeSet};

const FILES: [&str; 5] = ["a.yaml", "b.yaml", "c.json", "d.yml", "e.yaml"];
const NAMES: [&str; 3] = ["web", "db", "job"];
const IMAGES: [&str; 4] = ["ok", "crash", "done", "slow"];
const POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
/// Pod slots in a scripted world (fewer than names × files, so capacity errors happen).
const SLOTS: usize = 3;
/// Longest a held-back change report waits.
const REPORT_DELAY: Duration = Duration::from_secs(3);

/// Bytes read as a script, one choice at a time; zeros once exhausted.
#[derive(Debug)]
pub struct Script<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Script<'a> {
    /// Over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Script { bytes, pos: 0 }
    }
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn pick(&mut self, n: usize) -> usize {
        self.byte() as usize % n
    }
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

type PropWorld<'s> = World<'s, FaultInjector<FakeSource>, FaultInjector<FakeRuntime>>;

fn manifest(s: &mut Script<'_>) -> String {
    let name = NAMES[s.pick(NAMES.len())];
    let image = IMAGES[s.pick(IMAGES.len())];
    let policy = POLICIES[s.pick(POLICIES.len())];
    let grace = s.pick(6) as i64;
    let mut p = P::new(name, image).policy(policy).grace(grace);
    if s.pick(4) == 0 {
        p = p.init(C::new("setup", IMAGES[s.pick(3)]));
    }
    if s.pick(3) == 0 {
        p = p.container(C::new("side", "ok").liveness("live", 2, 2));
    }
    match s.pick(3) {
        0 => p.json(),
        _ => p.yaml(),
    }
}

/// A deletion whose pod must be gone by a deadline.
struct Gone {
    uid: String,
    grace: Duration,
    deleted_at: Instant,
}

/// Runs the script in `bytes` and checks the invariants after every poll; returns the first
/// violation with the world's trace.
pub fn run_script(bytes: &[u8]) -> Result<u64, String> {
    let mut s = Script::new(bytes);
    let rates = s.byte() as u32;
    let faults = Faults {
        fail_list: (rates & 1) * 50,
        fail_read: ((rates >> 1) & 1) * 100,
        fail_sandbox: ((rates >> 2) & 1) * 100,
        fail_start: ((rates >> 3) & 1) * 100,
        delay_report: ((rates >> 4) & 1) * 200,
        report_delay: REPORT_DELAY,
        slow_stop: ((rates >> 5) & 1) * 300,
    };
    let seed = s.byte() as u64;
    let mut rt = FakeRuntime::new();
    rt.plan("crash", Plan::exits(3, 1));
    rt.plan("done", Plan::exits(2, 0));
    rt.plan(
        "slow",
        Plan {
            ignore_stop: true,
            ..Plan::FOREVER
        },
    );
    let mut st = Storage::new(SLOTS, 16);
    let mut w: PropWorld<'_> = World::new(
        &mut st,
        FaultInjector::new(FakeSource::new(), faults, seed),
        FaultInjector::new(rt, faults, seed + 1),
    );
    let settings = Settings::DEFAULT;
    let mut pending: Vec<Gone> = Vec::new();
    let mut ops = 0;
    while !s.done() && ops < 200 {
        ops += 1;
        match s.pick(10) {
            0..=2 => {
                let f = FILES[s.pick(FILES.len())];
                let text = manifest(&mut s);
                w.src.inner.write(f, text);
                w.touched();
            }
            3 => {
                let f = FILES[s.pick(FILES.len())];
                let bad = [
                    "kind: Pod\n",
                    "{\"kind\": \"Pod\"",
                    "apiVersion: v1\nkind: Deployment\n",
                ];
                w.src.inner.write(f, bad[s.pick(bad.len())]);
                w.touched();
            }
            4 => {
                let f = FILES[s.pick(FILES.len())];
                note_deletion(&mut w, f, &mut pending);
                w.src.inner.delete(f);
                w.touched();
            }
            5 => {
                let (from, to) = (FILES[s.pick(FILES.len())], FILES[s.pick(FILES.len())]);
                if from != to && w.src.inner.content(from).is_some() {
                    note_deletion(&mut w, from, &mut pending);
                    note_deletion(&mut w, to, &mut pending);
                    w.src.inner.rename(from, to);
                    w.touched();
                }
            }
            6 => {
                let live: Vec<u32> =
                    w.rt.inner
                        .containers
                        .iter()
                        .filter(|(_, c)| c.is_live())
                        .map(|(h, _)| *h)
                        .collect();
                if !live.is_empty() {
                    let h = live[s.pick(live.len())];
                    let code = [0, 1, 137][s.pick(3)];
                    w.rt.inner.finish(h, code, code == 137);
                }
            }
            7 => {
                let f = FILES[s.pick(FILES.len())];
                if let Some(b) = w.src.inner.content(f).map(|b| b.to_vec()) {
                    w.src.inner.write(f, b);
                    w.touched();
                }
            }
            _ => {}
        }
        let secs = [0u64, 1, 2, 5, 11, 30, 120, 400][s.pick(8)];
        let until = w.now + Duration::from_secs(secs);
        loop {
            if w.next_at() > until {
                break;
            }
            step_checked(&mut w, &settings, &mut pending)?;
        }
        w.now = until;
    }
    Ok(w.polls)
}

fn note_deletion(w: &mut PropWorld<'_>, f: &str, pending: &mut Vec<Gone>) {
    let Some(state) = w.file_state(f) else { return };
    let pod = match state {
        FileState::Pod(p) => Some(p),
        FileState::Rejected { kept, .. } | FileState::Unreadable { kept, .. } => kept,
        _ => None,
    };
    let Some(p) = pod else { return };
    let slot = &w.rec.slots()[p.slot as usize];
    if !slot.is_used() {
        return;
    }
    let mut pod = Box::<keel_core::manifest::Pod>::default();
    slot.decode_into(&mut pod);
    let grace = Duration::from_secs(pod.spec.termination_grace_period_seconds.unwrap_or(30) as u64);
    pending.push(Gone {
        uid: slot.uid().to_string(),
        grace,
        deleted_at: w.now,
    });
}

fn fail(w: &PropWorld<'_>, what: String) -> Result<(), String> {
    Err(format!(
        "{what}\n--- events ---\n{}\n--- runtime ---\n{}\n--- faults ---\n{}",
        w.trace.join("\n"),
        w.rt.inner.log.join("\n"),
        w.rt.log.join("\n")
    ))
}

fn step_checked(
    w: &mut PropWorld<'_>,
    settings: &Settings,
    pending: &mut Vec<Gone>,
) -> Result<(), String> {
    // Restart deadlines before the poll.
    let mut restart_at: BTreeMap<(String, usize), Instant> = BTreeMap::new();
    for slot in w.rec.slots().iter().filter(|s| s.is_used()) {
        for (k, c) in slot.containers().iter().enumerate() {
            if let State::Waiting { restart_at: at, .. } = c.state {
                if c.last.is_some() {
                    restart_at.insert((slot.uid().to_string(), k), at);
                }
            }
        }
    }
    let first_start = w.rt.inner.starts.len();
    let was_started = w.polls > 0;
    let r = w.step();
    let now = r.at;
    // poll_at() is never in the past.
    if w.rec.poll_at() < now {
        return fail(
            w,
            format!(
                "poll_at {} before the last poll {}",
                t(w.rec.poll_at()),
                t(now)
            ),
        );
    }
    // Never two instances of one full name; never two of one container.
    let mut by_name: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut by_container: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in w.rt.inner.containers.values().filter(|c| c.is_live()) {
        by_name.entry(c.full_name()).or_default().insert(&c.pod_uid);
        *by_container.entry((&c.pod_uid, &c.name)).or_default() += 1;
    }
    if let Some((n, u)) = by_name.iter().find(|(_, u)| u.len() > 1) {
        return fail(w, format!("two instances of {n} at {}: {u:?}", t(now)));
    }
    if let Some((c, n)) = by_container.iter().find(|(_, n)| **n > 1) {
        return fail(w, format!("{n} live copies of {c:?} at {}", t(now)));
    }
    // No restart before its restart_at.
    for st in &w.rt.inner.starts[first_start..] {
        if let Some(at) = restart_at.get(&(st.pod_uid.clone(), st.index)) {
            if *at > now {
                return fail(
                    w,
                    format!("{} restarted at {} before {}", st.name, t(now), t(*at)),
                );
            }
        }
    }
    // Backoff never exceeds its cap.
    for slot in w.rec.slots().iter().filter(|s| s.is_used()) {
        for c in slot.containers() {
            if let State::Waiting { restart_at, .. } = c.state {
                if restart_at != Instant::NEVER && restart_at > now + settings.backoff_max {
                    return fail(
                        w,
                        format!("restart at {} beyond the cap at {}", t(restart_at), t(now)),
                    );
                }
            }
        }
    }
    for (at, e) in &w.events[r.first_event..] {
        if let Event::BackoffScheduled { until, .. } = e {
            if until.since(*at) > settings.backoff_max {
                return fail(w, format!("backoff until {} at {}", t(*until), t(*at)));
            }
        }
    }
    // A deleted file's pod is gone within its grace period (at least the minimum) plus one
    // poll, counted from the first listing that could see the deletion; a held-back exit
    // report adds its delay.
    let seen_at = w.src.inner.last_ok_list;
    let mut i = 0;
    while i < pending.len() {
        let g = &pending[i];
        let present = w.rt.inner.containers.values().any(|c| c.pod_uid == g.uid)
            || w.rt.inner.sandboxes.contains(&g.uid)
            || w.rec
                .slots()
                .iter()
                .any(|s| s.is_used() && s.uid() == g.uid);
        if !present {
            pending.swap_remove(i);
            continue;
        }
        if let Some(seen) = seen_at.filter(|s| *s >= g.deleted_at) {
            let deadline = seen + g.grace.max(settings.min_grace) + REPORT_DELAY + Duration(1);
            if now > deadline {
                return fail(
                    w,
                    format!(
                        "pod {} still present at {}, deadline {}",
                        g.uid,
                        t(now),
                        t(deadline)
                    ),
                );
            }
        }
        i += 1;
    }
    // Work per poll is bounded: one listing and APPLIES_PER_POLL reads (all files at
    // start-up), and per slot a fixed number of runtime calls per container.
    let src_bound = 1 + if was_started {
        APPLIES_PER_POLL
    } else {
        FILES.len()
    } as u64;
    let rt_bound = (2 + SLOTS * (4 + MAX_POD_CONTAINERS * 12)) as u64;
    if r.source_calls > src_bound || r.runtime_calls > rt_bound {
        return fail(
            w,
            format!(
                "poll at {} made {} source and {} runtime calls",
                t(now),
                r.source_calls,
                r.runtime_calls
            ),
        );
    }
    Ok(())
}
