//! keel-linux: the Linux host of the keel static-pod agent.
//!
//! This library crate deals with everything the `keel` binary needs on Linux; the binary
//! (`src/main.rs`) stays a thin shell over it.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod cni;
pub mod control;
pub mod diag;
pub mod image;
pub mod podstatus;
pub mod probe;
pub mod render;
pub mod runtime;
pub mod timefmt;
pub mod tls;
pub mod wire;

/// The node name keel uses by default: the host name, trimmed and lower-cased (SPEC 2.4).
pub fn node_name() -> String {
    let raw = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string());
    keel_core::manifest::defaults::node_name(&raw).to_string()
}

/// Sorts `v` stably by `cmp`, through one shared instance of the standard library's sort.
///
/// Every element type and comparator given to `slice::sort_by` gets its own copy of the
/// standard sort (about 6 KiB each at the release profile); the agent's and the command
/// line's sorts (listings of a few to a few thousand entries) share this one instead, and
/// keep the static binary within its size budget (docs/benchmarks.md, "The static
/// binary's size"). Same result as `v.sort_by(cmp)`.
pub fn sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) {
    let mut order = sorted_order(v.len(), &mut |a, b| cmp(&v[a], &v[b]));
    // Position k takes the element at `order[k]`: follow each cycle of the permutation,
    // marking the positions done.
    for start in 0..order.len() {
        let mut at = start;
        while order[at] != usize::MAX {
            let from = std::mem::replace(&mut order[at], usize::MAX);
            if from == start {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

/// Sorts `v` stably by the key `key` gives (like `slice::sort_by_key`), through
/// [`sort_by`].
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// The indices `0..n` in the stable order `cmp` gives them: the one instance of the
/// standard sort behind [`sort_by`].
#[inline(never)]
fn sorted_order(n: usize, cmp: &mut dyn FnMut(usize, usize) -> std::cmp::Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    order
}

#[cfg(test)]
mod tests {
    /// `sort_by` orders as the standard stable sort does, equal keys keeping their
    /// order, for every length up to 40 over a scrambled sequence with many repeats.
    #[test]
    fn sort_by_is_the_standard_stable_sort() {
        for n in 0..40usize {
            let v: Vec<(u32, usize)> = (0..n).map(|i| (((i * 7919) % 13) as u32, i)).collect();
            let mut ours = v.clone();
            super::sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
            let mut std_sorted = v.clone();
            std_sorted.sort_by_key(|a| a.0);
            assert_eq!(ours, std_sorted, "n = {n}");
        }
        let mut words = vec!["pear", "apple", "fig", "apple", "kiwi"];
        super::sort_by_key(&mut words, |w| std::cmp::Reverse(w.len()));
        assert_eq!(words, ["apple", "apple", "pear", "kiwi", "fig"]);
    }
}
