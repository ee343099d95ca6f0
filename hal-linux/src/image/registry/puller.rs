//! Pulls on behalf of a running agent: each on a thread of its own, so a pull never
//! blocks the reconciler loop or another pod; at most one pull per image reference at a
//! time, however many containers wait for it; the outcome of a reference's last pull kept
//! for the containers that waited for it. When a pull ends, the `ended` callback names
//! the reference, so the agent retries at once the containers waiting for it (and only
//! those) instead of at their next backoff step. Spacing the retries after a failure is
//! the core's business: a start that fails with `ImagePull` is retried after the
//! kubelet's image backoff (10 s, doubling to 300 s, `ErrImagePull` then
//! `ImagePullBackOff`), and each such retry asks for a pull again here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{pull, PullOptions, Quiet, RegistryConfig};
use crate::image::ImageStore;

/// Why a pull failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error, for the container's status message.
    pub message: String,
    /// No registry could be reached (see [`crate::image::ImageError::unreachable`]).
    pub unreachable: bool,
}

/// Where a reference's pull stands, as [`Puller::ensure`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullState {
    /// Whether this call started the pull (else one started earlier still runs).
    pub started: bool,
    /// The error of the last pull of this reference that ended, if it failed.
    pub last_error: Option<String>,
}

#[derive(Debug)]
enum Slot {
    /// Running; the failure of the pull before it, if that failed.
    InFlight(Option<Failure>),
    /// The last pull ended: pulled, or why not.
    Ended(Result<(), Failure>),
}

/// What the agent is told when a pull ends: the reference.
pub type Ended = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs pulls for the agent. Cloning shares the state.
#[derive(Clone)]
pub struct Puller {
    store: Arc<ImageStore>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    ended: Ended,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.slots.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Puller").field("references", &n).finish()
    }
}

impl Puller {
    /// A puller into `store` (registry settings from the store's root dir); `ended` is
    /// called with the reference whenever a pull ends, from the pull's thread.
    pub fn new(store: Arc<ImageStore>, ended: Ended) -> Puller {
        Puller {
            store,
            slots: Arc::new(Mutex::new(HashMap::new())),
            ended,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A poisoned lock only means a pull thread panicked; the map is still whole.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure a pull of `reference` is running: starts one unless one already runs.
    pub fn ensure(&self, reference: &str) -> PullState {
        let mut slots = self.slots();
        let last = match slots.get(reference) {
            Some(Slot::InFlight(e)) => {
                return PullState {
                    started: false,
                    last_error: e.as_ref().map(|f| f.message.clone()),
                }
            }
            Some(Slot::Ended(Err(f))) => Some(f.clone()),
            Some(Slot::Ended(Ok(()))) | None => None,
        };
        let last_error = last.as_ref().map(|f| f.message.clone());
        slots.insert(reference.to_string(), Slot::InFlight(last));
        drop(slots);
        let (store, slots, ended) = (self.store.clone(), self.slots.clone(), self.ended.clone());
        let r = reference.to_string();
        let spawned = std::thread::Builder::new()
            .name("keel-pull".into())
            .spawn(move || {
                let result = RegistryConfig::load(store.root_dir())
                    .and_then(|cfg| pull(&store, &cfg, &r, &PullOptions::default(), &Quiet));
                let outcome = result.map(|_| ()).map_err(|e| Failure {
                    message: e.to_string(),
                    unreachable: e.unreachable(),
                });
                slots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(r.clone(), Slot::Ended(outcome));
                ended(&r);
            });
        if let Err(e) = spawned {
            let failure = Failure {
                message: format!("cannot start a pull thread: {e}"),
                unreachable: false,
            };
            let m = failure.message.clone();
            self.slots()
                .insert(reference.to_string(), Slot::Ended(Err(failure)));
            return PullState {
                started: false,
                last_error: Some(m),
            };
        }
        PullState {
            started: true,
            last_error,
        }
    }

    /// Whether a pull of `reference` is running.
    pub fn in_flight(&self, reference: &str) -> bool {
        matches!(self.slots().get(reference), Some(Slot::InFlight(_)))
    }

    /// The outcome of the last pull of `reference` that ended, while no new one runs.
    pub fn outcome(&self, reference: &str) -> Option<Result<(), Failure>> {
        match self.slots().get(reference) {
            Some(Slot::Ended(o)) => Some(o.clone()),
            _ => None,
        }
    }

    /// The last failure of `reference`'s pull, while no new pull runs.
    pub fn last_error(&self, reference: &str) -> Option<String> {
        match self.outcome(reference) {
            Some(Err(f)) => Some(f.message),
            _ => None,
        }
    }
}
