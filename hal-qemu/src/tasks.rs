//! The firmware's container runtime: a table of cooperative tasks, implementing
//! keel-core's [`Runtime`].
//!
//! A container's image selects its program, `task:<name>`:
//!
//! | image | behaviour |
//! |---|---|
//! | `task:forever` | runs until signalled: Stop → exits 143 (unless `ignore-stop`), Kill → 137 |
//! | `task:exit` | exits with `code` (default 0) after `after` ms (default 100) |
//! | `task:crash` | faults after `after` ms (default 100): caught by the table, reported as exit 139 (SIGSEGV); the firmware goes on |
//!
//! Any other image is [`PlatformErrorKind::ImageNotPresent`] (Waiting `ErrImageNeverPull`).
//!
//! Each program is configured by its container's `args` (and `command`) as `key=value`
//! words, or by `env`: `code=N` / `EXIT_CODE`, `after=MS` / `AFTER_MS`,
//! `ignore-stop` / `IGNORE_STOP=true` (Stop is ignored: only Kill ends it),
//! `stop-delay=MS` / `STOP_DELAY_MS` (exits that long after Stop),
//! `unhealthy-after=MS` / `UNHEALTHY_AFTER_MS` (its health call fails from then on) and
//! `HEALTHY=false` (fails from the start).
//!
//! An exec probe or hook (any command) is the task's health call: success while healthy.
//! A `sleep` hook succeeds after its seconds. HTTP, TCP and gRPC actions are not supported
//! (`start_action` fails; the core counts that as a failed probe).
//!
//! The main loop calls [`TaskRuntime::tick`] with the time before each reconciler poll: that
//! runs every task one step (it is cooperative: a step never blocks) and collects exits.
//! Sandboxes are no-ops, except that creating one records the pod's and its containers'
//! names (for status and log lines); `adopt` reports nothing, as after any boot.
//!
//! Plain Rust over keel-core (no board access).

use heapless::String;
use keel_core::manifest::model::Action;
use keel_core::manifest::Pod;
use keel_core::platform::{
    ActionResult, Existing, Handle, PlatformError, PlatformErrorKind, PodRef, RunState, Runtime,
    Signal, Ticket,
};
use keel_core::time::Duration;

/// Tasks that may exist at once (8 pods × 4 containers).
pub const MAX_TASKS: usize = 32;
/// Probe and hook actions in flight at once.
pub const MAX_ACTIONS: usize = 8;
/// Pods whose names are remembered (one per pod slot).
pub const MAX_PODS: usize = 8;
/// Bytes for one pod's names (pod name and container names, NUL-separated).
pub const NAMES_BYTES: usize = 128;

/// Exit code of a task stopped by the stop signal (128 + SIGTERM).
pub const CODE_STOPPED: i32 = 143;
/// Exit code of a killed task (128 + SIGKILL).
pub const CODE_KILLED: i32 = 137;
/// Exit code of a task that faulted (128 + SIGSEGV).
pub const CODE_FAULT: i32 = 139;

const NEVER: u64 = u64::MAX;

/// Why a runtime call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum TaskError {
    /// No such task or ticket.
    NotFound,
    /// The image names no task program.
    UnknownImage,
    /// The task table (or action table) is full.
    TableFull,
    /// The action kind is not supported on the firmware.
    Unsupported,
}

impl PlatformError for TaskError {
    fn kind(&self) -> PlatformErrorKind {
        match self {
            TaskError::NotFound => PlatformErrorKind::NotFound,
            TaskError::UnknownImage => PlatformErrorKind::ImageNotPresent,
            TaskError::TableFull => PlatformErrorKind::Create,
            TaskError::Unsupported => PlatformErrorKind::Config,
        }
    }
}

/// A task program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum Program {
    /// `task:forever`
    Forever,
    /// `task:exit`
    Exit,
    /// `task:crash`
    Crash,
}

impl Program {
    fn of(image: &str) -> Option<Self> {
        match image.strip_prefix("task:")? {
            "forever" => Some(Program::Forever),
            "exit" => Some(Program::Exit),
            "crash" => Some(Program::Crash),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Task {
    used: bool,
    program: Program,
    started_at: u64,
    /// When the program ends by itself (exit or fault), or [`NEVER`].
    ends_at: u64,
    /// Its code then.
    code: i32,
    /// Exit code once exited.
    exited: Option<i32>,
    ignore_stop: bool,
    stop_delay: u64,
    /// Unhealthy from this time on.
    unhealthy_at: u64,
    changed: bool,
}

impl Task {
    const EMPTY: Task = Task {
        used: false,
        program: Program::Forever,
        started_at: 0,
        ends_at: NEVER,
        code: 0,
        exited: None,
        ignore_stop: false,
        stop_delay: 0,
        unhealthy_at: NEVER,
        changed: false,
    };
}

#[derive(Debug, Clone, Copy)]
struct Act {
    used: bool,
    ticket: u32,
    handle: Handle,
    result: ActionResult,
    done_at: u64,
    changed: bool,
}

impl Act {
    const EMPTY: Act = Act {
        used: false,
        ticket: 0,
        handle: Handle(0),
        result: ActionResult::Pending,
        done_at: NEVER,
        changed: false,
    };
}

#[derive(Debug)]
struct Names {
    used: bool,
    /// The sandbox still exists (entries of removed pods are kept until reused, so events
    /// drained after a removal still find names).
    live: bool,
    uid: u64,
    /// Pod name, then each container name (init first), each ending in NUL.
    text: String<NAMES_BYTES>,
}

impl Names {
    const EMPTY: Names = Names {
        used: false,
        live: false,
        uid: 0,
        text: String::new(),
    };
}

/// Says that the names of pod `pod` do not fit [`NAMES_BYTES`] (shown as "?").
#[cfg(target_os = "none")]
fn names_cut(pod: &str) {
    defmt::warn!(
        "names of pod {=str} over {=usize} B: shown as ?",
        pod,
        NAMES_BYTES
    );
}

/// The host's conformance run of this table has no log.
#[cfg(not(target_os = "none"))]
fn names_cut(_pod: &str) {}

/// A task exit the main loop may want to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The task.
    pub handle: Handle,
    /// Its program.
    pub program: Program,
    /// Exit code.
    pub code: i32,
}

/// The task table; see the module docs.
#[derive(Debug)]
pub struct TaskRuntime {
    now: u64,
    tasks: [Task; MAX_TASKS],
    actions: [Act; MAX_ACTIONS],
    next_ticket: u32,
    names: [Names; MAX_PODS],
    started: u32,
}

impl Default for TaskRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn hash(uid: &str) -> u64 {
    // Names are looked up by UID without storing 64-byte UIDs twice.
    keel_core::hash::Fnv64::of(uid.as_bytes())
}

fn parse_ms(v: &str) -> Option<u64> {
    v.trim().parse().ok()
}

fn truthy(v: &str) -> bool {
    matches!(v, "" | "true" | "1" | "yes")
}

impl TaskRuntime {
    /// An empty table (all zeroes: a `static` of it lands in `.bss`).
    pub const fn new() -> Self {
        Self {
            now: 0,
            tasks: [Task::EMPTY; MAX_TASKS],
            actions: [Act::EMPTY; MAX_ACTIONS],
            next_ticket: 1,
            names: [Names::EMPTY; MAX_PODS],
            started: 0,
        }
    }

    /// Runs every task one step at `now_ms`; calls `exited` for each task that ended.
    pub fn tick(&mut self, now_ms: u64, exited: &mut dyn FnMut(Exit)) {
        self.now = now_ms;
        for (i, t) in self.tasks.iter_mut().enumerate() {
            if t.used && t.exited.is_none() && now_ms >= t.ends_at {
                t.exited = Some(t.code);
                t.changed = true;
                exited(Exit {
                    handle: Handle(i as u32),
                    program: t.program,
                    code: t.code,
                });
            }
        }
        for a in self.actions.iter_mut() {
            if a.used && a.result == ActionResult::Pending && now_ms >= a.done_at {
                a.result = ActionResult::Success;
                a.changed = true;
            }
        }
    }

    /// Something for [`Runtime::changed`] to report: poll the reconciler now.
    pub fn has_changes(&self) -> bool {
        self.tasks.iter().any(|t| t.used && t.changed)
            || self.actions.iter().any(|a| a.used && a.changed)
    }

    /// When [`TaskRuntime::tick`] next has something to do (ms), if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        let tasks = self
            .tasks
            .iter()
            .filter(|t| t.used && t.exited.is_none())
            .map(|t| t.ends_at);
        let acts = self
            .actions
            .iter()
            .filter(|a| a.used && a.result == ActionResult::Pending)
            .map(|a| a.done_at);
        tasks.chain(acts).filter(|&d| d != NEVER).min()
    }

    /// Tasks alive (not yet removed).
    pub fn tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.used).count()
    }

    /// Tasks started since boot.
    pub fn started(&self) -> u32 {
        self.started
    }

    fn names_of(&self, uid: &str) -> Option<&str> {
        let h = hash(uid);
        self.names
            .iter()
            .find(|n| n.used && n.uid == h)
            .map(|n| n.text.as_str())
    }

    /// The pod name recorded for `uid` (at sandbox creation), or `"?"`.
    pub fn pod_name(&self, uid: &str) -> &str {
        self.names_of(uid)
            .and_then(|t| t.split('\0').next())
            .unwrap_or("?")
    }

    /// The name of container `index` (init containers first) of pod `uid`, or `"?"`.
    pub fn container_name(&self, uid: &str, index: usize) -> &str {
        self.names_of(uid)
            .and_then(|t| t.split('\0').nth(index + 1))
            .filter(|n| !n.is_empty())
            .unwrap_or("?")
    }

    fn record_names(&mut self, uid: &str, pod: &Pod) {
        let h = hash(uid);
        let i = self
            .names
            .iter()
            .position(|n| n.used && n.uid == h)
            .or_else(|| self.names.iter().position(|n| !n.used))
            .or_else(|| self.names.iter().position(|n| !n.live))
            .unwrap_or(0);
        let n = &mut self.names[i];
        n.used = true;
        n.live = true;
        n.uid = h;
        n.text.clear();
        // Names that do not fit are shown as "?", and said so once per pod.
        let names = core::iter::once(pod.name).chain(pod.all_containers().map(|(_, c)| c.name));
        let mut fits = true;
        for s in names {
            fits &= n.text.push_str(pod.s(s)).is_ok() & n.text.push('\0').is_ok();
        }
        if !fits {
            names_cut(pod.s(pod.name));
        }
    }

    fn task(&mut self, h: Handle) -> Result<&mut Task, TaskError> {
        match self.tasks.get_mut(h.0 as usize) {
            Some(t) if t.used => Ok(t),
            _ => Err(TaskError::NotFound),
        }
    }

    /// The task's health call, as an exec probe sees it.
    fn healthy(&self, h: Handle) -> bool {
        match self.tasks.get(h.0 as usize) {
            Some(t) if t.used && t.exited.is_none() => self.now < t.unhealthy_at,
            _ => false,
        }
    }
}

/// A task's configuration from its container's command, args and env.
fn configure(t: &mut Task, pod: &Pod, c: &keel_core::manifest::model::Container, now: u64) {
    let mut after = 100;
    let mut code = 0;
    let mut set = |key: &str, value: &str, t: &mut Task| match key {
        "code" | "EXIT_CODE" => code = value.trim().parse().unwrap_or(1),
        "after" | "AFTER_MS" => after = parse_ms(value).unwrap_or(after),
        "ignore-stop" | "IGNORE_STOP" => t.ignore_stop = truthy(value),
        "stop-delay" | "STOP_DELAY_MS" => t.stop_delay = parse_ms(value).unwrap_or(0),
        "unhealthy-after" | "UNHEALTHY_AFTER_MS" => {
            t.unhealthy_at = parse_ms(value).map_or(now, |ms| now.saturating_add(ms))
        }
        "HEALTHY" if !truthy(value) => t.unhealthy_at = now,
        _ => {}
    };
    for word in c.command.iter().chain(c.args.iter()) {
        let word = pod.s(*word);
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        set(k, v, t);
    }
    for e in c.env.iter() {
        set(pod.s(e.name), pod.opt(e.value).unwrap_or(""), t);
    }
    t.started_at = now;
    match t.program {
        Program::Forever => {}
        Program::Exit => {
            t.ends_at = now.saturating_add(after);
            t.code = code;
        }
        Program::Crash => {
            t.ends_at = now.saturating_add(after);
            t.code = CODE_FAULT;
        }
    }
}

impl Runtime for TaskRuntime {
    type Error = TaskError;

    fn create_sandbox(&mut self, pod: PodRef<'_>) -> Result<(), TaskError> {
        self.record_names(pod.uid, pod.pod);
        Ok(())
    }

    fn remove_sandbox(&mut self, uid: &str) -> Result<(), TaskError> {
        let h = hash(uid);
        if let Some(n) = self.names.iter_mut().find(|n| n.used && n.uid == h) {
            n.live = false;
        }
        Ok(())
    }

    fn start_container(
        &mut self,
        pod: PodRef<'_>,
        index: usize,
        _restart_count: u32,
        _digest: u64,
    ) -> Result<Handle, TaskError> {
        let p = pod.pod;
        let (_, c) = p.all_containers().nth(index).ok_or(TaskError::NotFound)?;
        let program = Program::of(p.s(c.image)).ok_or(TaskError::UnknownImage)?;
        let slot = self
            .tasks
            .iter()
            .position(|t| !t.used)
            .ok_or(TaskError::TableFull)?;
        let mut t = Task {
            used: true,
            program,
            changed: true, // reports Running at the next `changed`
            ..Task::EMPTY
        };
        configure(&mut t, p, c, self.now);
        self.tasks[slot] = t;
        self.started = self.started.wrapping_add(1);
        Ok(Handle(slot as u32))
    }

    fn state(&mut self, h: Handle) -> RunState {
        match self.task(h) {
            Ok(t) => match t.exited {
                Some(code) => RunState::Exited { code, oom: false },
                None => RunState::Running,
            },
            Err(_) => RunState::Gone,
        }
    }

    fn signal(&mut self, h: Handle, s: Signal) -> Result<(), TaskError> {
        let now = self.now;
        let t = self.task(h)?;
        if t.exited.is_some() {
            return Ok(());
        }
        match s {
            Signal::Kill => {
                t.exited = Some(CODE_KILLED);
                t.changed = true;
            }
            Signal::Stop if t.ignore_stop => {}
            Signal::Stop => {
                let at = now.saturating_add(t.stop_delay);
                if at < t.ends_at {
                    t.ends_at = at;
                    t.code = CODE_STOPPED;
                }
                if at <= now {
                    t.exited = Some(t.code);
                    t.changed = true;
                }
            }
        }
        Ok(())
    }

    fn remove_container(&mut self, h: Handle) -> Result<(), TaskError> {
        // Removal is idempotent (a task not in the table is already gone), and removing a
        // running task ends it.
        if self.task(h).is_err() {
            return Ok(());
        }
        self.tasks[h.0 as usize] = Task::EMPTY;
        for a in self.actions.iter_mut().filter(|a| a.used && a.handle == h) {
            *a = Act::EMPTY;
        }
        Ok(())
    }

    fn start_action(
        &mut self,
        h: Handle,
        _pod: PodRef<'_>,
        _index: usize,
        action: &Action,
        _timeout: Duration,
    ) -> Result<Ticket, TaskError> {
        self.task(h)?;
        let (result, done_at) = match action {
            Action::Exec(_) => {
                let ok = self.healthy(h);
                let r = if ok {
                    ActionResult::Success
                } else {
                    ActionResult::Failure
                };
                (r, self.now)
            }
            Action::Sleep { seconds } => (
                ActionResult::Pending,
                self.now.saturating_add((*seconds).max(0) as u64 * 1000),
            ),
            _ => return Err(TaskError::Unsupported),
        };
        let slot = self
            .actions
            .iter()
            .position(|a| !a.used)
            .ok_or(TaskError::TableFull)?;
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1).max(1);
        self.actions[slot] = Act {
            used: true,
            ticket,
            handle: h,
            result,
            done_at,
            changed: result != ActionResult::Pending,
        };
        Ok(Ticket(ticket))
    }

    fn action_result(&mut self, t: Ticket) -> ActionResult {
        let Some(a) = self.actions.iter_mut().find(|a| a.used && a.ticket == t.0) else {
            return ActionResult::Failure;
        };
        let r = a.result;
        if r != ActionResult::Pending {
            *a = Act::EMPTY;
        }
        r
    }

    fn changed(&mut self, f: &mut dyn FnMut(Handle)) {
        for (i, t) in self.tasks.iter_mut().enumerate() {
            if t.used && core::mem::take(&mut t.changed) {
                f(Handle(i as u32));
            }
        }
        for a in self.actions.iter_mut() {
            if a.used && core::mem::take(&mut a.changed) {
                f(a.handle);
            }
        }
    }

    fn adopt(&mut self, _f: &mut dyn FnMut(Existing<'_>)) {
        // Firmware boot: nothing survives a reset.
    }
}
