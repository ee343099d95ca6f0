//! Pulls on behalf of a running agent: each on a thread of its own, so a pull never
//! blocks the reconciler loop or another pod; at most one pull per image reference at a
//! time, however many containers wait for it; the last failure of a reference kept for
//! the containers' status messages. Spacing the retries is the core's business: a start
//! that fails with `ImagePull` is retried after the kubelet's image backoff (10 s,
//! doubling to 300 s, `ErrImagePull` then `ImagePullBackOff`), and each retry asks for a
//! pull again here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{pull, PullOptions, Quiet, RegistryConfig};
use crate::image::ImageStore;

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
    /// Running; the error of the pull before it, if that failed.
    InFlight(Option<String>),
    Failed(String),
}

/// Runs pulls for the agent. Cloning shares the state.
#[derive(Clone)]
pub struct Puller {
    store: Arc<ImageStore>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.slots.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Puller").field("references", &n).finish()
    }
}

impl Puller {
    /// A puller into `store` (registry settings from the store's root dir); `wake` is
    /// called when a pull ends, so the agent's loop looks again.
    pub fn new(store: Arc<ImageStore>, wake: Arc<dyn Fn() + Send + Sync>) -> Puller {
        Puller {
            store,
            slots: Arc::new(Mutex::new(HashMap::new())),
            wake,
        }
    }

    /// Makes sure a pull of `reference` is running: starts one unless one already runs.
    pub fn ensure(&self, reference: &str) -> PullState {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let last_error = match slots.get(reference) {
            Some(Slot::InFlight(e)) => {
                return PullState {
                    started: false,
                    last_error: e.clone(),
                }
            }
            Some(Slot::Failed(m)) => Some(m.clone()),
            None => None,
        };
        slots.insert(reference.to_string(), Slot::InFlight(last_error.clone()));
        drop(slots);
        let (store, slots, wake) = (self.store.clone(), self.slots.clone(), self.wake.clone());
        let r = reference.to_string();
        let spawned = std::thread::Builder::new()
            .name("keel-pull".into())
            .spawn(move || {
                let result = RegistryConfig::load(store.root_dir())
                    .and_then(|cfg| pull(&store, &cfg, &r, &PullOptions::default(), &Quiet));
                let mut s = slots.lock().unwrap_or_else(|p| p.into_inner());
                match result {
                    Ok(_) => {
                        s.remove(&r);
                    }
                    Err(e) => {
                        s.insert(r, Slot::Failed(e.to_string()));
                    }
                }
                drop(s);
                wake();
            });
        if let Err(e) = spawned {
            let m = format!("cannot start a pull thread: {e}");
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(reference.to_string(), Slot::Failed(m.clone()));
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

    /// The last failure of `reference`'s pull, while no new pull runs.
    pub fn last_error(&self, reference: &str) -> Option<String> {
        match self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(reference)
        {
            Some(Slot::Failed(m)) => Some(m.clone()),
            _ => None,
        }
    }
}
